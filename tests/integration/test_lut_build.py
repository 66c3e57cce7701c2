"""LUT building over real gRPC on loopback: simulated and host agents, lost agents, resume."""
from __future__ import annotations

import threading
import time

import pytest

from loopback import start_agent
from hilnas.agent.config import MeasureConfig
from hilnas.server.client import AgentClient, ClientConfig
from hilnas.server.lut.builder import BuildIncomplete, LutBuildConfig, LutBuilder
from hilnas.server.lut.micromodels import MicroModels
from hilnas.server.store import Store

pytestmark = pytest.mark.integration
QUICK = MeasureConfig(warmup_runs=2, min_runs=5, min_seconds=0.01)


@pytest.fixture(scope="module")
def nb201_keys_and_models(tmp_path_factory):
    from hilnas.searchers.spaces import create_space

    space = create_space("nb201", C=8, N=1, input_size=16)
    micro = MicroModels(tmp_path_factory.mktemp("micro"))
    keys = MicroModels.keys_for_space(space)
    models = {k: micro.onnx(k) for k in keys}
    return keys, models


def _client(running, retries=2) -> AgentClient:
    return AgentClient(ClientConfig(address=f"127.0.0.1:{running.port}", retries=retries, backoff_s=0.05))


def _rows(store, lut_id):
    return store.lut_dict(lut_id)


@pytest.mark.parametrize("simulate", ["raspi4", None], ids=["simulated", "host"])
def test_build_measures_every_key_once_and_resumes_with_nothing(tmp_path, nb201_keys_and_models, simulate):
    keys, models = nb201_keys_and_models
    running = start_agent(tmp_path, simulate=simulate)
    try:
        with Store.open(tmp_path / "ws") as store, _client(running) as c:
            builder = LutBuilder(store, "dev", [c], LutBuildConfig(measure=QUICK, batch_size=4))
            seen = []
            report = builder.build(keys, models.__getitem__, progress=lambda d, t, k: seen.append(k))
            assert report.requested == len(keys) and report.measured + len(report.failed) == len(keys)
            assert not report.failed, report.failed
            assert set(seen) == set(keys) and len(seen) == len(keys) + report.remeasured  # unstable rows once more
            rows = _rows(store, report.lut_id)
            assert set(rows) == set(keys) and all(r.median_ms > 0 for r in rows.values())
            assert all(r.simulated == (simulate is not None) for r in rows.values())
            assert report.model_run_s > 0
            again = builder.build(keys, models.__getitem__)
            assert again.already_present == len(keys) and again.measured == 0
    finally:
        running.stop(0)


def test_killed_build_resumes_without_loss_or_double_measurement(tmp_path, nb201_keys_and_models):
    keys, models = nb201_keys_and_models
    running = start_agent(tmp_path, simulate="raspi4")
    try:
        with Store.open(tmp_path / "ws") as store, _client(running) as c:
            builder = LutBuilder(store, "dev", [c], LutBuildConfig(measure=QUICK, batch_size=3))

            class Killed(Exception):
                pass

            def kill_after_7(done, total, key):
                if done == 7:
                    raise Killed  # the process dies right after row 7 was committed
            with pytest.raises(Killed):
                builder.build(keys, models.__getitem__, progress=kill_after_7)
            lut_id = builder.lut_id(c.describe())
            assert len(_rows(store, lut_id)) == 7
            report = builder.build(keys, models.__getitem__)
            assert report.already_present == 7 and report.measured == len(keys) - 7
            assert set(_rows(store, lut_id)) == set(keys)
    finally:
        running.stop(0)


def test_agent_lost_mid_build_then_restarted_finishes(tmp_path, nb201_keys_and_models):
    """The agent dies mid-build; the builder retries; a new agent on the same port takes over."""
    keys, models = nb201_keys_and_models
    running = start_agent(tmp_path, simulate="raspi4")
    port = running.port
    restarted = []
    try:
        with Store.open(tmp_path / "ws") as store, _client(running, retries=8) as c:
            cfg = LutBuildConfig(measure=QUICK, batch_size=2, agent_retries=8, retry_backoff_s=0.2)
            builder = LutBuilder(store, "dev", [c], cfg)

            def restart():
                time.sleep(0.5)
                restarted.append(start_agent(tmp_path / "second", simulate="raspi4", port=port))

            def crash_at_5(done, total, key):
                if done == 5 and not restarted:
                    running.server.stop(None)  # abrupt: in-flight streams fail with UNAVAILABLE
                    threading.Thread(target=restart).start()
            report = builder.build(keys, models.__getitem__, progress=crash_at_5)
            rows = _rows(store, report.lut_id)
            assert set(rows) == set(keys)  # every key exactly once (the LUT is keyed by op key)
            assert report.measured == len(keys) and not report.failed
    finally:
        running.stop(0)
        for r in restarted:
            r.stop(0)


def test_all_agents_lost_raises_then_resume_finishes(tmp_path, nb201_keys_and_models):
    keys, models = nb201_keys_and_models
    running = start_agent(tmp_path, simulate="raspi4")
    port = running.port
    with Store.open(tmp_path / "ws") as store:
        c = _client(running, retries=0)
        # reply_timeout_s: gRPC has been seen (rarely) to leave the stream waiting after the stop's GOAWAY
        builder = LutBuilder(store, "dev", [c], LutBuildConfig(measure=QUICK, batch_size=2, agent_retries=1,
                                                               retry_backoff_s=0.05, reply_timeout_s=10.0))
        lut_id = builder.lut_id(c.describe())

        def crash_at_4(done, total, key):
            if done == 4:
                running.server.stop(None)
        with pytest.raises(BuildIncomplete, match="run the same command again"):
            builder.build(keys, models.__getitem__, progress=crash_at_4)
        partial = len(_rows(store, lut_id))
        assert 4 <= partial < len(keys)
        c.close()
        again = start_agent(tmp_path / "again", simulate="raspi4", port=port)
        try:
            with _client(again) as c2:
                report = LutBuilder(store, "dev", [c2], LutBuildConfig(measure=QUICK)).build(keys, models.__getitem__)
            assert report.already_present == partial and report.measured == len(keys) - partial
            assert set(_rows(store, lut_id)) == set(keys)
        finally:
            again.stop(0)


def test_an_agent_that_stops_replying_is_lost_after_the_reply_timeout_then_resume_finishes(
        tmp_path, nb201_keys_and_models, monkeypatch):
    """An agent whose connection stays open but which never answers (a hung device, a half-dead link) does not
    hold the build for the stream's whole deadline: after ``reply_timeout_s`` without a reply the stream is
    cancelled, the agent counts as lost, and what was measured is kept for the resume."""
    from hilnas.agent.results import BenchmarkRequest, ModelFormat
    from hilnas.agent.servicer import DeviceAgentServicer
    from hilnas.server.client import AgentUnavailable
    from hilnas.server.lut.builder import sha256_hex

    def silent(self, request_iterator, context):   # takes a request, never answers
        next(request_iterator, None)
        while context.is_active():
            time.sleep(0.05)
        yield from ()

    with pytest.raises(ValueError, match="reply_timeout_s must be > 0"):
        LutBuildConfig(reply_timeout_s=0)
    keys, models = nb201_keys_and_models
    monkeypatch.setattr(DeviceAgentServicer, "BenchmarkStream", silent)
    running = start_agent(tmp_path, simulate="raspi4")
    port = running.port
    with Store.open(tmp_path / "ws") as store:
        with _client(running, retries=0) as c:
            started = time.monotonic()
            with pytest.raises(BuildIncomplete, match="run the same command again"):
                LutBuilder(store, "dev", [c], LutBuildConfig(measure=QUICK, agent_retries=1, retry_backoff_s=0.05,
                                                             reply_timeout_s=1.0)).build(keys, models.__getitem__)
            assert time.monotonic() - started < 60   # two streams of ~1 s each, not the hour of stream_timeout_s
            lut_id = LutBuilder(store, "dev", [c], LutBuildConfig(measure=QUICK)).lut_id(c.describe())
            assert len(_rows(store, lut_id)) == 0   # nothing was answered, nothing stored
            with pytest.raises(AgentUnavailable, match="no reply within 0.5 s"):
                list(c.benchmark_stream([BenchmarkRequest(sha256=sha256_hex(models[keys[0]]), model=models[keys[0]],
                                                          format=ModelFormat.ONNX, backend=lut_id.runtime,
                                                          config=QUICK, op_key=keys[0], request_id=keys[0])],
                                        reply_timeout_s=0.5))
        running.stop(0)
        monkeypatch.undo()
        again = start_agent(tmp_path / "again", simulate="raspi4", port=port)
        try:
            with _client(again) as c2:
                report = LutBuilder(store, "dev", [c2], LutBuildConfig(measure=QUICK)).build(keys, models.__getitem__)
            assert report.measured == len(keys) and set(_rows(store, lut_id)) == set(keys)
        finally:
            again.stop(0)


def test_two_agents_share_the_work_and_one_may_die(tmp_path, nb201_keys_and_models):
    keys, models = nb201_keys_and_models
    a = start_agent(tmp_path / "a", simulate="raspi4")
    b = start_agent(tmp_path / "b", simulate="raspi4")
    try:
        with Store.open(tmp_path / "ws") as store, _client(a, retries=0) as ca, _client(b, retries=0) as cb:
            per_agent = {"a": 0}
            orig = ca.benchmark_stream

            def counting(reqs, **kw):
                for r in orig(reqs, **kw):
                    per_agent["a"] += 1
                    if per_agent["a"] == 3:
                        a.server.stop(None)
                    yield r
            ca.benchmark_stream = counting
            builder = LutBuilder(store, "dev", [ca, cb], LutBuildConfig(measure=QUICK, batch_size=2, agent_retries=0,
                                                                        retry_backoff_s=0.01))
            report = builder.build(keys, models.__getitem__)
            assert set(_rows(store, report.lut_id)) == set(keys)
            assert report.agents_lost == [f"127.0.0.1:{a.port}"]
            assert per_agent["a"] >= 1
    finally:
        a.stop(0)
        b.stop(0)


def test_agents_of_different_devices_under_one_key_are_refused(tmp_path, nb201_keys_and_models):
    keys, models = nb201_keys_and_models
    a = start_agent(tmp_path / "a", simulate="raspi4")
    b = start_agent(tmp_path / "b")  # this host: another device entirely
    try:
        with Store.open(tmp_path / "ws") as store, _client(a) as ca, _client(b) as cb:
            with pytest.raises(ValueError, match="different fingerprints"):
                LutBuilder(store, "dev", [ca, cb]).build(keys, models.__getitem__)
    finally:
        a.stop(0)
        b.stop(0)


@pytest.mark.parametrize("statistic", ["min", "median"])
def test_repeated_passes_keep_the_chosen_pass_of_each_key(tmp_path, nb201_keys_and_models, statistic):
    keys, models = nb201_keys_and_models
    running = start_agent(tmp_path, simulate="raspi4")
    try:
        with Store.open(tmp_path / "ws") as store, _client(running) as c:
            seen: dict[str, list[float]] = {}
            orig = c.benchmark_stream

            def spying(reqs, **kw):
                for r in orig(reqs, **kw):
                    seen.setdefault(r.op_key, []).append((r.latency.median_ms, r.latency.min_ms))
                    yield r
            c.benchmark_stream = spying
            report = LutBuilder(store, "dev", [c], LutBuildConfig(measure=QUICK, repeats=3, statistic=statistic,
                                                                  remeasure_unstable=False)).build(keys, models.__getitem__)
            assert report.measured == len(keys) and report.repeated == 2 * len(keys)
            rows = _rows(store, report.lut_id)
            import statistics
            combine = min if statistic == "min" else statistics.median
            assert any(len(set(v)) > 1 for v in seen.values())  # the passes really differ
            for k in keys:
                assert len(seen[k]) == 3
                assert rows[k].median_ms == pytest.approx(combine([m for m, _ in seen[k]]))
                assert rows[k].ci95_low_ms <= rows[k].median_ms <= rows[k].ci95_high_ms
                assert rows[k].min_ms == min(f for _, f in seen[k])   # the fastest run of all passes
                assert rows[k].min_ms <= rows[k].median_ms
        with pytest.raises(ValueError, match="repeats"):
            LutBuildConfig(repeats=0)
        with pytest.raises(ValueError, match="latency statistic"):
            LutBuildConfig(statistic="mean")
    finally:
        running.stop(0)
