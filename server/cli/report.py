"""``hilnas report RUN_ID... | --all``: what runs found, as an HTML page, Markdown, PNGs, CSV and JSON."""
from __future__ import annotations

from pathlib import Path

from hilnas.server.cli.common import CliError, _emit, _open_store, _workspace, add, json_flag


def cmd_report(args) -> int:
    from hilnas.server.report import reportable_runs, write_report

    if bool(args.run_ids) == bool(args.all):
        raise CliError("give run ids (hilnas report 3) or --all; `hilnas runs` lists the runs")
    ws = _workspace(args)
    with _open_store(args, create=False) as store:
        ids = reportable_runs(store) if args.all else args.run_ids
        if not ids:
            raise CliError(f"the store in {ws} has no runs with networks yet; run `hilnas demo`, `hilnas run FILE` "
                           "or `hilnas search ...` first")
        out = Path(args.out) if args.out else (
            ws / "reports" / "all" if args.all else
            ws / "runs" / str(ids[0]) / "report" if len(ids) == 1 else ws / "reports" / "-".join(map(str, ids)))
        paths = write_report(store, ids, out)
    text = (f"report of run(s) {', '.join(map(str, ids))}:\n  {paths['html']}  (open in a browser; self-contained)\n"
            f"  {paths['markdown']}\n  {paths['csv']}\n  {paths['json']}")
    _emit(args, {k: str(v) for k, v in paths.items()}, text)
    return 0


def register(sub) -> None:
    p = add(sub, "report", cmd_report, "write a report of runs: a self-contained HTML page, Markdown with PNG "
            "plots, CSV and JSON (accuracy vs measured latency per device, the Pareto front and budgets, the "
            "hypernetwork's trade-off, LUT-predicted vs measured latency, a table of every network)")
    p.add_argument("run_ids", nargs="*", type=int, metavar="RUN_ID", help="runs to report (`hilnas runs` lists them)")
    p.add_argument("--all", action="store_true", help="every run of the workspace that found networks")
    p.add_argument("--out", help="folder for the report (default: <workspace>/runs/<id>/report, or "
                   "<workspace>/reports/all with --all)")
    json_flag(p)
