"""``hilnas run``: one hardware-validated search described in a file, resumable.

- ``config``: ``RunConfig`` and its parts (devices, budgets), as typed data;
- ``file``: the run file (TOML) -> ``RunConfig``, every problem reported at once with its line;
- ``methods``: the registry of search methods and the steps each takes;
- ``context``: what the steps share (``RunContext``, ``Step``, ``Chain``);
- ``device_steps`` / ``network_steps``: a device's LUT and budgets; a found network's training and validation;
- ``agents``: the agents a run starts or reaches; ``lock``: one run per workspace at a time;
- ``execute``: carrying out a ``RunConfig``, resuming from the store's record of finished steps.
"""
from hilnas.server.run.config import BudgetSpec, DeviceSpec, RunConfig
from hilnas.server.run.execute import RunOutcome, execute, summary_lines
from hilnas.server.run.file import RunFileError, load_run_file, parse_run_file
from hilnas.server.run.lock import WorkspaceBusy, workspace_lock

__all__ = ["BudgetSpec", "DeviceSpec", "RunConfig", "RunFileError", "RunOutcome", "WorkspaceBusy", "execute",
           "load_run_file", "parse_run_file", "summary_lines", "workspace_lock"]
