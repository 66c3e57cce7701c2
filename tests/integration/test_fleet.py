"""Realtime simulated agents over real gRPC, and a LUT build spread over a fleet of them."""
from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from loopback import client_for, start_agent
from hilnas.agent.backends.onnx_builder import build_mlp_model
from hilnas.agent.config import MeasureConfig
from hilnas.agent.results import BenchmarkRequest, BenchmarkResult, Status
from hilnas.server.client import sha256_hex
from hilnas.server.lut.builder import LutBuildConfig, LutBuilder
from hilnas.server.lut.micromodels import MicroModels
from hilnas.server.store import Store

pytestmark = pytest.mark.integration
# ~0.25 s per measurement on a realtime agent: time that can be seen, short enough for CI.
QUARTER = MeasureConfig(warmup_runs=2, min_runs=5, min_seconds=0.25, cv_threshold=5.0)


@pytest.fixture(scope="module")
def keys_and_models(tmp_path_factory):
    from hilnas.searchers.spaces import create_space

    space = create_space("nb201", C=8, N=1, input_size=16)
    micro = MicroModels(tmp_path_factory.mktemp("micro"))
    keys = MicroModels.keys_for_space(space)
    return keys, {k: micro.onnx(k) for k in keys}


@pytest.fixture
def realtime_agents(tmp_path):
    started = []

    def start(n: int):
        started.extend(start_agent(tmp_path / f"a{len(started) + i}", simulate="raspi4", seed=i, realtime=True)
                       for i in range(n))
        return started[-n:]
    yield start
    for running in started:
        running.stop(0)


def test_a_realtime_agent_holds_its_slot_while_it_takes_the_time(realtime_agents):
    (running,) = realtime_agents(1)
    model = build_mlp_model()
    results: list[BenchmarkResult] = []

    def one():
        with client_for(running) as c:
            results.append(c.benchmark(model, config=QUARTER))
    threads = [threading.Thread(target=one) for _ in range(3)]
    t = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    elapsed = time.monotonic() - t
    assert [r.status for r in results] == [Status.OK] * 3
    assert elapsed >= sum(r.measure_wall_s for r in results)    # one board: one after the other
    windows = sorted((r.conditions_before.timestamp_s, r.conditions_after.timestamp_s) for r in results)
    for (_, end), (start, _) in zip(windows, windows[1:]):
        assert start >= end                                       # no two measurements overlap
    for (start, end), r in zip(windows, sorted(results, key=lambda r: r.conditions_before.timestamp_s)):
        assert end - start >= r.measure_wall_s


def test_a_deadline_shorter_than_the_measurement_times_out_as_on_a_board(realtime_agents):
    (running,) = realtime_agents(1)
    long = MeasureConfig(warmup_runs=2, min_runs=5, min_seconds=30.0, max_runs=10 ** 8)
    with client_for(running) as c:
        t = time.monotonic()
        result = c.benchmark(build_mlp_model(), config=long, timeout_s=1.0)
        assert result.status is Status.TIMEOUT and time.monotonic() - t < 10.0
        assert c.benchmark(build_mlp_model(), config=QUARTER).status is Status.OK   # and it answers afterwards


def test_a_reader_that_stops_frees_the_agent(realtime_agents):
    """The client cancels a stream its caller stops reading: the agent does not measure the
    remaining models for nobody (a build that stopped must not keep the board busy)."""
    (running,) = realtime_agents(1)
    model = build_mlp_model()
    one_second = MeasureConfig(warmup_runs=2, min_runs=5, min_seconds=1.0, max_runs=10 ** 8, cv_threshold=5.0)
    reqs = [BenchmarkRequest(sha256=sha256_hex(model), model=model, config=one_second, request_id=str(i))
            for i in range(8)]
    with client_for(running) as c:
        t = time.monotonic()
        stream = c.benchmark_stream(reqs)
        assert next(stream).status is Status.OK
        stream.close()
        result = c.benchmark(model, config=QUARTER)
        assert result.status is Status.OK
        assert time.monotonic() - t < 6.0   # not the 8 s the whole stream would hold the board


def test_every_agent_of_a_fleet_gets_work_even_with_fewer_keys_than_a_batch(tmp_path, keys_and_models,
                                                                          realtime_agents):
    """Fixed batches of 16 once gave 12 keys to one agent of four (benchmarks/bench_fleet.py)."""
    keys, models = keys_and_models
    keys = keys[:12]
    agents = realtime_agents(4)
    clients = [client_for(a) for a in agents]
    try:
        with Store.open(tmp_path / "ws") as store:
            report = LutBuilder(store, "pi", clients, LutBuildConfig(measure=QUARTER, batch_size=16)).build(
                keys, models.__getitem__)
            assert not report.failed and set(store.lut_dict(report.lut_id)) == set(keys)
    finally:
        for c in clients:
            c.close()
    assert sorted(report.by_agent) == sorted(c.config.address for c in clients)
    assert min(report.by_agent.values()) >= 2 and sum(report.by_agent.values()) == 12


def test_passes_run_on_several_agents_at_once_and_a_failed_first_pass_does_not_hide_a_measured_one(
        tmp_path, keys_and_models, realtime_agents):
    """Passes are not separated by a barrier: pass 2 of a key may run on one agent while pass 1
    fails on another. The measured pass becomes the row (not the failure), and the key is
    reported failed so the next build measures the pass it lacks."""
    keys, models = keys_and_models
    key = keys[0]
    a, b = realtime_agents(2)
    ca, cb = client_for(a), client_for(b)
    b_took_its_pass = threading.Event()
    orig_a, orig_b = ca.benchmark_stream, cb.benchmark_stream

    def a_fails(reqs, **kw):
        for r in reqs:
            assert b_took_its_pass.wait(10)
            # what the simulated agent itself answers when a deadline passes
            yield dataclasses.replace(BenchmarkResult.failure(Status.TIMEOUT, "simulated timeout", r), simulated=True)

    def b_measures(reqs, **kw):
        def noting():
            for r in reqs:
                b_took_its_pass.set()
                yield r
        yield from orig_b(noting(), **kw)
    ca.benchmark_stream, cb.benchmark_stream = a_fails, b_measures
    cfg = LutBuildConfig(measure=QUARTER, repeats=2, remeasure_unstable=False)
    try:
        with Store.open(tmp_path / "ws") as store:
            report = LutBuilder(store, "pi", [ca, cb], cfg).build([key], models.__getitem__)
            assert key in report.failed and report.measured == 1
            row = store.get_lut_row(report.lut_id, key)
            assert row.measured and row.passes == 1
            ca.benchmark_stream = orig_a
            again = LutBuilder(store, "pi", [ca, cb], cfg).build([key], models.__getitem__)
            assert again.resumed == 1 and again.repeated == 1 and not again.failed
            assert store.get_lut_row(report.lut_id, key).passes == 2
    finally:
        ca.close()
        cb.close()


def test_realtime_needs_simulate_on_the_command_line(capsys):
    from hilnas.agent.cli import main

    assert main(["serve", "--realtime", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "--realtime needs --simulate" in err and "hilnas-agent serve --simulate raspi4 --realtime" in err
