"""The fleet file: which devices exist and which agents serve each (``file.Fleet``, ``entries``, ``toml``).

``from hilnas.server.fleet import ...`` is the one import callers need.
"""
from hilnas.server.fleet.file import *  # noqa: F401,F403
from hilnas.server.fleet.file import __all__  # noqa: F401
