"""``hilnas sweep``: many ``hilnas run``-style searches (devices × methods × budgets × seeds) at once,
in a process pool here or as Ray tasks on a cluster; only the head writes the store.

- ``config``: ``SweepConfig``, its ``Cell``s and the engine ``SweepOptions``, as typed data;
- ``file``: the sweep file (a run file plus ``[sweep]`` and ``[[cells]]``), every problem at once;
- ``cell``: one cell on a worker, in a scratch workspace, returning JSON;
- ``record``: the head writing a cell's result into its store;
- ``engines``: the process pool and the Ray cluster, one interface;
- ``execute``: scheduling the cells (slots, the per-device limit, retries), resuming, the table and report.
"""
from hilnas.server.sweep.config import Cell, SweepConfig, SweepOptions
from hilnas.server.sweep.execute import SweepOutcome, run_sweep, summary_lines
from hilnas.server.sweep.file import SweepFileError, load_sweep_file, parse_sweep_file, with_options

__all__ = ["Cell", "SweepConfig", "SweepFileError", "SweepOptions", "SweepOutcome", "load_sweep_file",
           "parse_sweep_file", "run_sweep", "summary_lines", "with_options"]
