"""Build a device's lookup table: measure every missing op instance on the device's agents.

Incremental and resumable: every pass of every key is committed as its result arrives, and a row
records how many passes it combines (``passes.py``), so a killed build loses at most the models
in flight and a re-run measures exactly what is still missing: keys without a row, and rows with
fewer passes than ``repeats`` asks for, which get only the passes they lack. Several agents
serving one device key share the work through one queue; an agent that is lost is retried with
backoff, and its unfinished keys go back to the queue for the others. Unstable rows are measured
once more at the end.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

from hilnas.agent.config import MeasureConfig
from hilnas.agent.results import BenchmarkRequest, BenchmarkResult, DeviceInfo, ModelFormat
from hilnas.server.client import AgentClient, AgentUnavailable, sha256_hex
from hilnas.server.lut.passes import chosen_index, combine, passes_of
from hilnas.server.lut.rounds import DEFAULT_STATISTIC, check_statistic
from hilnas.server.lut.schedule import AgentFeed, WorkQueue
from hilnas.server.store import LutId, LutRow, Store, config_hash

log = logging.getLogger("hilnas.lut")

# Fields of MeasureConfig that do not change what is measured, so they do not split LUTs.
_NOT_HASHED = ("timeout_s", "cooldown_seconds", "remeasure_unstable")


@dataclass(frozen=True)
class LutBuildConfig:
    """How to build a LUT. The measurement config is part of the LUT's identity."""

    measure: MeasureConfig = MeasureConfig(warmup_runs=5, min_runs=20, min_seconds=0.1)
    backend: str = ""              # "" = the device's default backend
    batch_size: int = 16           # models per BenchmarkStream call at most; the agent's slot is free between streams
    stream_depth: int = 2          # models in flight per agent: one measuring, the next already sent
    remeasure_unstable: bool = True  # a final pass re-measures rows flagged unstable
    retry_failed: bool = False     # also re-measure rows stored with a failure status
    repeats: int = 1               # interleaved passes over the new keys, so a noisy minute on a shared
                                   # device does not skew the keys that happened to be measured in it
    statistic: str = DEFAULT_STATISTIC  # which pass's median a row keeps: "median" or "min" (rounds.py);
                                        # a row's min_ms is always the fastest run over all passes
    agent_retries: int = 3         # consecutive failures before an agent is given up on
    retry_backoff_s: float = 1.0   # first back-off after losing an agent; doubles
    stream_timeout_s: float = 3600.0
    reply_timeout_s: float = 900.0   # no reply for this long while models are in flight: the agent counts as lost

    def __post_init__(self) -> None:
        if self.reply_timeout_s <= 0:
            raise ValueError(f"reply_timeout_s must be > 0, got {self.reply_timeout_s}")
        if self.repeats < 1 or self.batch_size < 1 or self.stream_depth < 1 or self.agent_retries < 0:
            raise ValueError("repeats, batch_size and stream_depth must be >= 1, agent_retries >= 0")
        check_statistic(self.statistic)


def lut_id_for(info: DeviceInfo, backend: str, measure: MeasureConfig) -> LutId:
    """The LUT identity of measurements taken on ``info`` with ``backend`` and ``measure``."""
    version = info.runtime_versions.get(backend)
    if not version:
        raise ValueError(f"device {info.hostname or info.fingerprint} has no backend {backend!r}; "
                         f"it has: {', '.join(info.backends) or 'none'}")
    return LutId(info.fingerprint, backend, version, config_hash(measure, exclude=_NOT_HASHED))


@dataclass
class BuildReport:
    lut_id: LutId | None = None
    requested: int = 0
    already_present: int = 0           # keys whose row is complete (every pass, or a stored failure)
    resumed: int = 0                   # keys with some passes stored but fewer than ``repeats``
    measured: int = 0                  # keys measured for the first time in this build
    remeasured: int = 0                # unstable rows measured again
    repeated: int = 0                  # measurements of further passes (LutBuildConfig.repeats), resumed ones included
    failed: dict[str, str] = field(default_factory=dict)  # op key -> "STATUS: error"
    unstable: list[str] = field(default_factory=list)
    agents_lost: list[str] = field(default_factory=list)
    by_agent: dict[str, int] = field(default_factory=dict)  # agent address -> measurements it answered
    model_run_s: float = 0.0           # the models' own run time on the device (warm-up + timed)
    wall_s: float = 0.0                # wall time of the measuring phase

    @property
    def efficiency(self) -> float:
        """Share of the build's wall time the device spent running models."""
        return self.model_run_s / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["lut_id"] = self.lut_id.as_dict() if self.lut_id else None
        d["efficiency"] = self.efficiency
        return d


class BuildIncomplete(RuntimeError):
    """Every agent of the device was lost before the build finished (re-run to resume)."""


ProgressFn = Callable[[int, int, str], None]  # (done, total, op key)


class _Tally:
    """Progress over the whole build (every pass and re-measure), not one round."""

    def __init__(self, total: int, progress: ProgressFn | None):
        self.total, self.done, self.progress = total, 0, progress
        self._lock = threading.Lock()

    def advance(self, key: str) -> None:
        with self._lock:
            self.done += 1
            done, total = self.done, self.total
        if self.progress:
            self.progress(done, total, key)


class LutBuilder:
    """Measures missing op keys of one device on all its agents and stores the rows."""

    def __init__(self, store: Store, device_key: str, clients: Sequence[AgentClient],
                 config: LutBuildConfig = LutBuildConfig()):
        if not clients:
            raise ValueError(f"device {device_key!r} has no agents")
        self.store, self.device_key, self.clients, self.config = store, device_key, list(clients), config
        self._lock = threading.Lock()

    # -- identity -------------------------------------------------------------------------
    def describe(self) -> tuple[DeviceInfo, list[AgentClient]]:
        """Describe every agent; they must agree on the fingerprint (the same kind of device)."""
        infos, live = [], []
        errors = []
        for c in self.clients:
            try:
                infos.append(c.describe())
                live.append(c)
            except (AgentUnavailable, Exception) as err:  # noqa: BLE001 - reported below
                errors.append(f"{c.config.address}: {err}")
        if not live:
            raise AgentUnavailable(f"no agent of device {self.device_key!r} answers: " + "; ".join(errors))
        prints = {i.fingerprint for i in infos}
        if len(prints) > 1:
            raise ValueError(f"agents of device {self.device_key!r} report different fingerprints {sorted(prints)}: "
                             "they are not the same kind of device; give each its own device key")
        for e in errors:
            log.warning("skipping agent %s", e)
        return infos[0], live

    def lut_id(self, info: DeviceInfo) -> LutId:
        backend = self.config.backend or info.default_backend
        return lut_id_for(info, backend, self.config.measure)

    # -- build ----------------------------------------------------------------------------
    def build(self, keys: Iterable[str], model_for_key: Callable[[str], bytes], *,
              fmt: ModelFormat = ModelFormat.ONNX, progress: ProgressFn | None = None) -> BuildReport:
        """Measure the keys missing from the device's LUT; ``model_for_key`` gives the micro-model."""
        keys = list(dict.fromkeys(keys))
        wanted = set(keys)
        info, live = self.describe()
        lut_id = self.lut_id(info)
        self.store.upsert_device(self.device_key, fingerprint=info.fingerprint, info=info)
        repeats = self.config.repeats
        stored = self.store.lut_dict(lut_id)
        passes: dict[str, list[LutRow]] = {}   # key -> its measured passes (stored, then this build's)
        todo = []
        for k in keys:
            row = stored.get(k)
            if row is None or (not row.measured and self.config.retry_failed):
                passes[k] = []
                todo.append(k)
            elif row.measured and row.passes_done < repeats:   # a build killed between passes
                passes[k] = passes_of(row)
                todo.append(k)
        report = BuildReport(lut_id=lut_id, requested=len(keys), already_present=len(keys) - len(todo),
                             resumed=sum(1 for k in todo if passes[k]))
        # Prepare every micro-model before measuring: exporting costs CPU that would disturb a
        # measurement running on this same host.
        models = {k: model_for_key(k) for k in todo}
        tally = _Tally(total=sum(repeats - len(passes[k]) for k in todo), progress=progress)
        start = time.monotonic()
        # Every pass of every key in one queue, pass-major: a pass still interleaves over all
        # keys (a slow minute on a shared device touches many keys a little rather than a few
        # fully), but no pass waits for the slowest agent of the one before (schedule.py). A key
        # whose pass failed is not measured further in this build (its passes stay stored).
        lacking = {k: repeats - len(passes[k]) for k in todo}
        items = [k for p in range(max(lacking.values(), default=0)) for k in todo if lacking[k] > p]
        if items:
            self._measure(items, models, fmt, lut_id, live, report, tally, passes, unstable=False)
        if self.config.remeasure_unstable:
            again = [k for k, row in self.store.lut_dict(lut_id).items() if k in wanted and row.status == "unstable"]
            if again:
                for k in again:
                    models.setdefault(k, model_for_key(k))
                    if k not in passes:
                        passes[k] = passes_of(stored[k])
                tally.total += len(again)
                self._measure(again, models, fmt, lut_id, live, report, tally, passes, unstable=True)
        report.wall_s = time.monotonic() - start
        report.unstable = sorted(k for k, row in self.store.lut_dict(lut_id).items()
                                 if k in wanted and row.status == "unstable")
        return report

    def _measure(self, items: list[str], models: Mapping[str, bytes], fmt: ModelFormat, lut_id: LutId,
                 clients: list[AgentClient], report: BuildReport, tally: "_Tally",
                 passes: dict[str, list[LutRow]], *, unstable: bool) -> None:
        """Measure each item (an op key, once per pass it is listed) on ``clients``: a pass
        (``unstable=False``) adds a pass to its key; the unstable re-measure replaces the pass a
        row's value came from."""
        queue = WorkQueue(items, agents=len(clients), skip=lambda k: not unstable and k in report.failed)
        total = len(items)
        stop = threading.Event()
        errors: list[BaseException] = []
        statistic = self.config.statistic
        failure_rows: set[str] = set()   # keys whose failure row this build wrote

        def request(k: str) -> BenchmarkRequest:
            return BenchmarkRequest(sha256=sha256_hex(models[k]), model=models[k], format=fmt, backend=lut_id.runtime,
                                    config=self.config.measure, op_key=k, request_id=k)

        def record(result: BenchmarkResult, key: str, agent: str) -> None:
            # A stale fingerprint or runtime (agent upgraded mid-build) must not land in this LUT.
            if result.status.measured and (result.device_fingerprint != lut_id.fingerprint
                                           or result.runtime_version != lut_id.runtime_version):
                raise ValueError(f"agent answered with fingerprint {result.device_fingerprint} / "
                                 f"{result.runtime_version}, not {lut_id.fingerprint} / {lut_id.runtime_version}")
            new = LutRow.from_result(result, device_key=self.device_key, op_key=key)
            row, replace = None, True
            with self._lock:
                have = passes[key]
                report.by_agent[agent] = report.by_agent.get(agent, 0) + 1
                if not result.status.measured:
                    report.failed[key] = f"{result.status.name}: {result.error}"
                    if not have:   # nothing measured yet: the failure is the row
                        row, replace = new, self.config.retry_failed
                        failure_rows.add(key)
                    # else keep the passes measured so far; the next build measures the rest
                else:
                    if unstable:
                        have[chosen_index(have, statistic)] = new
                        report.remeasured += 1
                    else:
                        if have:
                            report.repeated += 1
                        else:
                            report.measured += 1
                            # Passes of one key may run on two agents at once: a measured pass
                            # replaces the failure row another pass of this build wrote.
                            replace = self.config.retry_failed or key in failure_rows
                        have.append(new)
                    row = combine(have, statistic)
            if row is not None:
                self.store.put_lut_row(lut_id, row, replace=replace)
            with self._lock:
                report.model_run_s += result.measure_wall_s
            tally.advance(key)

        def work(client: AgentClient) -> None:
            try:
                work_on(client)
            except BaseException as err:  # noqa: BLE001 - re-raised in the calling thread
                errors.append(err)
                stop.set()
                queue.stop()

        def work_on(client: AgentClient) -> None:
            failures, delay = 0, self.config.retry_backoff_s
            address = client.config.address
            while not stop.is_set() and queue.wait_for_work():
                feed = AgentFeed(client, queue, request, depth=self.config.stream_depth,
                                 max_models=self.config.batch_size, stop=stop)
                try:
                    for key, result in feed.run(self.config.stream_timeout_s, self.config.reply_timeout_s):
                        if stop.is_set():
                            return
                        record(result, key, address)
                        queue.done(key)
                    failures, delay = 0, self.config.retry_backoff_s
                    feed.give_back_unanswered()   # none, unless the agent ended the stream early
                except AgentUnavailable as err:
                    back = feed.give_back_unanswered()
                    failures += 1
                    log.warning("agent %s lost (%s); %d key(s) back in the queue", address, err, back)
                    if failures > self.config.agent_retries:
                        with self._lock:
                            report.agents_lost.append(address)
                        queue.agent_lost()
                        return
                    time.sleep(delay)
                    delay *= 2

        threads = [threading.Thread(target=work, args=(c,), name=f"lut-{c.config.address}", daemon=True)
                   for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        if len(queue):
            raise BuildIncomplete(f"all agents of device {self.device_key!r} were lost with {len(queue)} of "
                                  f"{total} key(s) unmeasured; the rows measured so far are saved — run the same "
                                  "command again to resume")
