"""Carry out one ``RunConfig``, resumably: ``execute(config, store, ...) -> RunOutcome``.

For each device in turn: reach or start its agent, build its LUT, resolve its budgets; then for
each method and seed, the method's chains of steps (``methods.METHODS``). Every step is recorded
in the store (``steps``) as it starts and ends, so re-running the same configuration (the same
``RunConfig.fingerprint``) resumes the same run: steps already done are skipped, the rest run.

Failures stay local: a step that fails stops its chain only (its error is recorded, the other
chains go on); a device that does not answer after the retries, or is lost mid-step, stops that
device only. A budget no network of the space can meet is reported with the cheapest cost and
costs no search. The run ends ``done``, or ``failed`` with every failure listed and the command
that resumes it; Ctrl-C (or SIGTERM) leaves it ``interrupted``, resumable the same way.

The caller holds the workspace lock (``lock.workspace_lock``) and passes the store; a sweep can
call ``execute`` once per cell with its own store.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hilnas.server.progress import Progress, format_duration
from hilnas.server.run.agents import DeviceDown, RunAgents
from hilnas.server.run.config import RunConfig
from hilnas.server.run.context import Chain, DeviceState, RunContext, Step
from hilnas.server.run.device_steps import budgets_step, lut_step
from hilnas.server.run.methods import METHODS
from hilnas.server.search.common import latest_run_with_fingerprint, torch_threads
from hilnas.server.store import Store

log = logging.getLogger("hilnas.run")
RUN_KIND = "run"


@dataclass
class RunOutcome:
    """What a run produced so far (also the run's stored result)."""
    run_id: int
    status: str                          # "done" | "failed" | "interrupted"
    resumed: bool
    planned: int                         # steps the run has in all
    done_before: int                     # steps skipped: done by an earlier attempt
    ran: int                             # steps run now (failed ones included)
    networks: list[dict[str, Any]] = field(default_factory=list)    # validate steps' results
    failures: list[dict[str, str]] = field(default_factory=list)    # {"step", "error"}
    infeasible: list[dict[str, Any]] = field(default_factory=list)  # budgets no network meets
    report: dict[str, str] = field(default_factory=dict)            # what report files were written
    wall_s: float = 0.0
    resume_command: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def find_run(store: Store, config: RunConfig) -> int | None:
    """The latest run of this configuration (same fingerprint), to resume; None if there is none."""
    return latest_run_with_fingerprint(store, RUN_KIND, config.fingerprint())


def execute(config: RunConfig, store: Store, *, workspace: Path, progress: Progress | None = None,
            resume_command: str = "hilnas run FILE", new: bool = False, report: bool = True) -> RunOutcome:
    """Run (or resume) ``config``; see the module docstring. Raises KeyboardInterrupt after recording it."""
    progress = progress or Progress("off")
    workspace = Path(workspace).resolve()  # files the run records stay findable from anywhere
    started = time.monotonic()
    previous = None if new else find_run(store, config)
    if previous is not None:
        run_id = store.resume_run(previous).id
    else:
        run_id = store.start_run(RUN_KIND, {**config.to_dict(), "fingerprint": config.fingerprint()})
    ctx = RunContext(store, run_id, config, workspace, progress)
    runner = _Runner(ctx, resume_command)
    outcome = RunOutcome(run_id, "running", previous is not None, planned=runner.planned,
                         done_before=runner.done_before, ran=0, resume_command=resume_command)
    if previous is not None:
        progress.say(f"resuming run {run_id} ({config.name}): {runner.done_before} of {runner.planned} steps "
                     "already done")
    else:
        progress.say(f"run {run_id} ({config.name}): {runner.planned} steps on {len(config.devices)} device(s)")
    with torch_threads(config.torch_threads):
        try:
            ctx.space  # the data and the space first: a missing dataset fails once, before any agent starts
            with RunAgents(config, workspace, resume_command=resume_command) as agents:
                for spec in config.devices:
                    runner.device(agents, spec)
            outcome.status = "failed" if runner.failures else "done"
        except KeyboardInterrupt:
            outcome.status = "interrupted"
            raise
        except BaseException as err:
            outcome.status = "failed"
            runner.failures.append({"step": "run", "error": f"{type(err).__name__}: {err}"})
            raise
        finally:
            outcome.ran, outcome.failures = runner.ran, runner.failures
            outcome.infeasible = runner.infeasible
            outcome.planned = runner.planned
            outcome.networks = [s.result for s in store.steps(run_id) if s.status == "done" and "/validate" in s.key]
            outcome.wall_s = time.monotonic() - started
            store.finish_run(run_id, status=outcome.status, result=outcome.to_dict())
            if report and outcome.status != "interrupted" and runner.done:  # after finish_run: it shows the run as it ended
                outcome.report = _write_report(ctx, runner)
                outcome.failures = runner.failures
                outcome.status = "failed" if runner.failures else outcome.status
                store.finish_run(run_id, status=outcome.status, result=outcome.to_dict())
    return outcome


class _Runner:
    """Walks the devices' chains, skipping done steps, recording each step, containing failures."""

    def __init__(self, ctx: RunContext, resume_command: str) -> None:
        self.ctx, self.resume_command = ctx, resume_command
        self.done = {s.key for s in ctx.store.steps(ctx.run_id) if s.status == "done"}
        self.planned_keys = self.plan()
        self.done_before = len(self.done & self.planned_keys)
        self.ran = 0
        self.attempted: set[str] = set()
        self.failures: list[dict[str, str]] = []
        self.infeasible: list[dict[str, Any]] = []
        self.failed_now: dict[str, str] = {}

    @property
    def planned(self) -> int:
        return len(self.planned_keys)

    def plan(self) -> set[str]:
        """Every step key of the run (chains built with placeholder devices: only their keys are used)."""
        keys: set[str] = set()
        for spec in self.ctx.config.devices:
            device = DeviceState(spec, [], None)  # type: ignore[arg-type]
            keys |= {s.key for s in self.device_chain(device).steps}
            for chain in self.method_chains(device):
                keys |= {s.key for s in chain.steps}
        return keys

    def device_chain(self, device: DeviceState) -> Chain:
        ctx = self.ctx
        return Chain(device.key, "", 0, None, (
            Step(f"{device.key}/lut", f"{device.key} · LUT", lambda: lut_step(ctx, device)),
            Step(f"{device.key}/budgets", f"{device.key} · budgets", lambda: budgets_step(ctx, device))))

    def method_chains(self, device: DeviceState) -> list[Chain]:
        return [chain for method in self.ctx.config.methods for seed in self.ctx.config.seeds
                for chain in METHODS[method].chains(self.ctx, device, seed)]

    def device(self, agents: RunAgents, spec) -> None:
        ctx = self.ctx
        try:
            clients, info = agents.connect(spec)
        except DeviceDown as err:
            self.fail(spec.key, str(err))
            return
        ctx.store.upsert_device(spec.key, fingerprint=info.fingerprint, info=info)
        device = DeviceState(spec, clients, info)
        what = f"simulated {info.profile}" if info.simulated else info.cpu_model or info.hostname
        ctx.progress.say(f"{spec.key}: {what} (agent {clients[0].config.address})")
        if not self.chain(device.key, self.device_chain(device)):
            return
        budgets = ctx.result(f"{device.key}/budgets")["budgets"]
        for entry in budgets.values():
            if not entry["feasible"]:
                self.infeasible.append({"device": device.key, **entry})
                ctx.progress.say(f"{device.key}: {entry['error']}")
        chains = self.method_chains(device)
        feasible = [c for c in chains if c.budget is None or budgets[c.budget]["feasible"]]
        kept = {s.key for c in feasible for s in c.steps}
        self.planned_keys -= {s.key for c in chains for s in c.steps} - kept  # no search for an infeasible budget
        for chain in feasible:
            if not self.chain(device.key, chain):
                if device.key in self.failed_now:  # the device was lost: its other chains would wait in vain
                    return

    def chain(self, device_key: str, chain: Chain) -> bool:
        """Run the chain's steps in order; False when one failed (the rest of the chain is skipped)."""
        for step in chain.steps:
            if step.key in self.done:
                continue
            if step.key in self.failed_now:  # a shared step that failed in another chain just now
                return False
            self.ran += 1
            self.attempted.add(step.key)
            counter = len((self.done | self.attempted) & self.planned_keys)
            self.ctx.progress.say(f"[{counter}/{self.planned}] {step.label}")
            if not self.step(device_key, step):
                return False
        return True

    def step(self, device_key: str, step: Step) -> bool:
        from hilnas.server.client import AgentUnavailable
        from hilnas.server.lut.builder import BuildIncomplete

        store, run_id = self.ctx.store, self.ctx.run_id
        store.start_step(run_id, step.key)
        t0 = time.monotonic()
        try:
            result = step.run()
        except (AgentUnavailable, BuildIncomplete) as err:
            message = (f"device {device_key!r} was lost during {step.key}: {err}; everything finished is kept: bring "
                       f"the agent back, then run `{self.resume_command}` again to continue")
            store.finish_step(run_id, step.key, status="failed", result={"error": message})
            self.fail(step.key, message)
            self.failed_now[device_key] = message
            return False
        except Exception as err:  # noqa: BLE001 - recorded, and the other chains go on
            log.debug("step %s failed", step.key, exc_info=True)
            message = f"{type(err).__name__}: {err}"
            store.finish_step(run_id, step.key, status="failed", result={"error": message})
            self.fail(step.key, message)
            return False
        store.finish_step(run_id, step.key, result=result)
        self.done.add(step.key)
        log.info("step %s done in %.1f s", step.key, time.monotonic() - t0)
        return True

    def fail(self, key: str, message: str) -> None:
        self.failed_now[key] = message
        self.failures.append({"step": key, "error": message})
        self.ctx.progress.say(f"  failed: {message}")


def _write_report(ctx: RunContext, runner: _Runner) -> dict[str, str]:
    from hilnas.server.report import write_report

    try:
        paths = write_report(ctx.store, [ctx.run_id], ctx.out_dir / "report")
    except Exception as err:  # noqa: BLE001 - the searches are kept; say what went wrong
        log.debug("report failed", exc_info=True)
        runner.fail("report", f"writing the report failed: {type(err).__name__}: {err} (retry: hilnas report "
                    f"{ctx.run_id})")
        return {}
    return {k: str(v) for k, v in paths.items()}


def _network_line(n: dict[str, Any]) -> str:
    """method, budget, accuracy, predicted and measured in the budget's metric, verdict."""
    from hilnas.server.validation import UNITS

    metric, unit = n["budget_metric"], UNITS[n["budget_metric"]]
    if metric == "energy_mj":
        predicted, measured, ci = n.get("predicted_energy_mj"), n.get("measured_energy_mj"), n.get("energy_ci95_mj")
    elif metric == "latency_ms":
        predicted, measured, ci = n.get("predicted_ms"), n.get("measured_ms"), n.get("ci95_ms")
    else:
        predicted = measured = n.get("measured_for_budget")
        ci = None
    fmt = (lambda v: "n/a" if v is None else f"{v:.3g}")
    shown = fmt(measured) + (f" ({ci[0]:.3g}-{ci[1]:.3g})" if ci else "") + f" {unit}"
    verdict = {True: "met", False: "OVER", None: "not checked"}[n["met"]]
    budget = f"{n['budget']} ({n['budget_value']:.3g})" if n["budget"].endswith("%") else n["budget"]
    from hilnas.server.report.tables import accuracy

    return f"{n['method']:<10} {budget:<22} {accuracy(n):>8} {fmt(predicted):>10} {shown:>24}  {verdict}"


def summary_lines(outcome: RunOutcome) -> list[str]:
    """What a run found, per device: one line per network, then failures and where the report is."""
    lines = [f"run {outcome.run_id}: {outcome.status} in {format_duration(outcome.wall_s)} "
             f"({outcome.ran} step(s) run now, {outcome.done_before} done before, {outcome.planned} in all)"]
    by_device: dict[str, list[dict]] = {}
    for n in outcome.networks:
        by_device.setdefault(n["device"], []).append(n)
    for device, nets in by_device.items():
        lines.append(f"  {device}:")
        lines.append(f"    {'method':<10} {'budget':<22} {'accuracy':>8} {'predicted':>10} {'measured (95% CI)':>24}  budget")
        for n in sorted(nets, key=lambda n: (n["budget"], n["method"], n["seed"])):
            lines.append("    " + _network_line(n))
    for entry in outcome.infeasible:
        lines.append(f"  {entry['error']}")
    for f in outcome.failures:
        lines.append(f"  failed: {f['step']}: {f['error']}")
    if outcome.failures and outcome.status != "interrupted":
        lines.append(f"  everything finished is kept; fix the cause and run `{outcome.resume_command}` again to continue")
    if outcome.report.get("html"):
        lines.append(f"  report: {outcome.report['html']}")
    return lines
