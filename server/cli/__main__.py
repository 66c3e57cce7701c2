"""``python -m hilnas.server.cli``: the same as ``hilnas``."""
import sys

from hilnas.server.cli import main

sys.exit(main())
