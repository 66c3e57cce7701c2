"""Defect 2: a `lut build --repeats N` killed between passes resumes with every pass, not as complete."""
from __future__ import annotations

import statistics
from collections import Counter

import pytest

from loopback import start_agent
from hilnas.agent.config import MeasureConfig
from hilnas.server.client import AgentClient, ClientConfig
from hilnas.server.lut.builder import LutBuildConfig, LutBuilder
from hilnas.server.lut.micromodels import MicroModels
from hilnas.server.store import Store

pytestmark = pytest.mark.integration
QUICK = MeasureConfig(warmup_runs=1, min_runs=5, min_seconds=0.01)


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def keys_and_models(tmp_path_factory):
    from hilnas.searchers.spaces import create_space

    space = create_space("nb201", C=4, N=1, input_size=8)
    micro = MicroModels(tmp_path_factory.mktemp("micro"))
    keys = MicroModels.keys_for_space(space)
    return keys, {k: micro.onnx(k) for k in keys}


def _spy(client, seen: dict[str, list[float]]):
    orig = client.benchmark_stream

    def spying(reqs, **kw):
        for r in orig(reqs, **kw):
            seen.setdefault(r.op_key, []).append(r.latency.median_ms)
            yield r
    client.benchmark_stream = spying


@pytest.mark.parametrize("statistic", ["median", "min"])
def test_killed_multi_pass_build_resumes_every_missing_pass(tmp_path, keys_and_models, statistic):
    keys, models = keys_and_models
    running = start_agent(tmp_path, simulate="raspi4", seed=3)
    cfg = LutBuildConfig(measure=QUICK, repeats=3, statistic=statistic, remeasure_unstable=False, batch_size=3)
    kill_at = len(keys) + 4          # during the second pass
    try:
        with Store.open(tmp_path / "ws") as store, AgentClient(ClientConfig(f"127.0.0.1:{running.port}")) as c:
            seen: dict[str, list[float]] = {}
            _spy(c, seen)

            def kill(done, total, key):
                if done == kill_at:
                    raise Killed  # the process dies right after this row was committed
            with pytest.raises(Killed):
                LutBuilder(store, "dev", [c], cfg).build(keys, models.__getitem__, progress=kill)
            lut_id = LutBuilder(store, "dev", [c], cfg).lut_id(c.describe())
            after_kill = {k: r.passes for k, r in store.lut_dict(lut_id).items()}
            assert set(after_kill) == set(keys)
            assert Counter(after_kill.values()) == {2: 4, 1: len(keys) - 4}

            first_run = {k: len(v) for k, v in seen.items()}
            report = LutBuilder(store, "dev", [c], cfg).build(keys, models.__getitem__)
            assert report.resumed == len(keys) and report.already_present == 0 and not report.failed
            rows = store.lut_dict(lut_id)
            combine = statistics.median if statistic == "median" else min
            for k in keys:
                assert len(seen[k]) == 3, (k, first_run[k], len(seen[k]))  # every pass, none twice
                assert rows[k].passes == 3
                assert rows[k].median_ms == pytest.approx(combine(seen[k]))
            # complete now: a third build measures nothing
            again = LutBuilder(store, "dev", [c], cfg).build(keys, models.__getitem__)
            assert again.already_present == len(keys) and again.measured == again.repeated == 0
            # a build asking for more passes adds only the missing one
            more = LutBuilder(store, "dev", [c], LutBuildConfig(measure=QUICK, repeats=4, statistic=statistic,
                                                                remeasure_unstable=False)).build(keys, models.__getitem__)
            assert more.repeated == len(keys) and more.measured == 0
            assert all(r.passes == 4 for r in store.lut_dict(lut_id).values())
            assert store.missing_keys(lut_id, keys, min_passes=4) == []
            assert store.missing_keys(lut_id, keys, min_passes=5) == keys
    finally:
        running.stop(0)


def test_a_failed_later_pass_keeps_the_measured_passes(tmp_path, keys_and_models):
    """A pass that fails (agent hiccup, timeout) must not overwrite the passes already stored."""
    keys, models = keys_and_models
    running = start_agent(tmp_path, simulate="raspi4", seed=4)
    key = keys[0]
    try:
        with Store.open(tmp_path / "ws") as store, AgentClient(ClientConfig(f"127.0.0.1:{running.port}")) as c:
            one = LutBuilder(store, "dev", [c], LutBuildConfig(measure=QUICK, repeats=1, remeasure_unstable=False))
            one.build([key], models.__getitem__)
            lut_id = one.lut_id(c.describe())
            kept = store.get_lut_row(lut_id, key)
            assert kept.passes == 1
            orig = c.benchmark_stream

            def failing(reqs, **kw):
                from hilnas.agent.results import BenchmarkResult, Status

                for r in reqs:
                    yield BenchmarkResult.failure(Status.TIMEOUT, "simulated timeout", r)
            c.benchmark_stream = failing
            report = LutBuilder(store, "dev", [c], LutBuildConfig(measure=QUICK, repeats=3,
                                                                  remeasure_unstable=False)).build([key], models.__getitem__)
            assert key in report.failed
            row = store.get_lut_row(lut_id, key)
            assert row.status == "ok" and row.passes == 1 and row.median_ms == kept.median_ms
            c.benchmark_stream = orig
            report = LutBuilder(store, "dev", [c], LutBuildConfig(measure=QUICK, repeats=3,
                                                                  remeasure_unstable=False)).build([key], models.__getitem__)
            assert not report.failed and store.get_lut_row(lut_id, key).passes == 3
    finally:
        running.stop(0)
