"""Which exceptions are the user's to fix (printed as one line) and which are bugs (traceback)."""
from __future__ import annotations


def is_user_error(err: BaseException) -> bool:
    from hilnas.server.client import AgentUnavailable
    from hilnas.server.fleet import FleetError
    from hilnas.server.run.lock import WorkspaceBusy
    from hilnas.server.store import StoreError

    user = (ValueError, FileNotFoundError, PermissionError, KeyError, FleetError, StoreError, AgentUnavailable,
            WorkspaceBusy, ImportError)  # ImportError: an optional extra is missing; the message says which
    try:
        from hilnas.server.cli import CliError
        user += (CliError,)
    except ImportError:
        pass
    try:
        from hilnas.searchers.data import DatasetError  # a missing or malformed dataset: the message says which
        user += (DatasetError,)
    except ImportError:
        pass
    try:
        from hilnas.server.lut.builder import BuildIncomplete
        user += (BuildIncomplete,)
    except ImportError:
        pass
    return isinstance(err, user)
