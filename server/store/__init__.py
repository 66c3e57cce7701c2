"""The run store: one SQLite file per workspace (``database.Store``), its records, schema and file checks.

``from hilnas.server.store import ...`` is the one import callers need.
"""
from hilnas.server.store.database import *  # noqa: F401,F403
from hilnas.server.store.database import __all__  # noqa: F401
