"""The energy protocol on a simulated meter with a fake clock: gross/net per inference, the
t-interval, and the failures that must never come back as energy."""
from __future__ import annotations

import math
import statistics

import pytest
from fixtures.energy_sysfs import FakeClock, rapl_package, write

from hilnas.agent.energy.base import (ABSURD_READING, BELOW_RESOLUTION, COUNTER_BACKWARDS,
                                      COUNTER_WRAPPED, ESTIMATED, IDLE_DRIFT, METER_UNAVAILABLE,
                                      METER_VANISHED, NO_INFERENCES, NOT_ABOVE_IDLE, NoneMeter,
                                      PowerSample, SampledMeter, SamplingInsideWindowError,
                                      measurement_window, window_open)
from hilnas.agent.energy.protocol import energy_valid, measure_energy, t_quantile_975
from hilnas.agent.energy.rapl import RaplMeter
from hilnas.agent.energy.simulated import SimulatedMeter, UtilisationEstimateMeter

IDLE_W = 2.0


class Bench:
    """A fake device: idle power, and ``active_w[i]`` while window i runs (10 ms/inference)."""

    def __init__(self, clock: FakeClock, active_w, inference_s: float = 0.01):
        self.clock = clock
        self.active_w = list(active_w)
        self.inference_s = inference_s
        self.spans: list[tuple[float, float, float]] = []
        self.calls = 0

    def power(self, t: float) -> float:
        for t0, t1, p in self.spans:
            if t0 <= t < t1:
                return p
        return IDLE_W

    def run_for(self, seconds: float) -> int:
        assert window_open()
        p = self.active_w[min(self.calls, len(self.active_w) - 1)]
        self.spans.append((self.clock.t, self.clock.t + seconds, p))
        self.calls += 1
        self.clock.advance(seconds)
        return round(seconds / self.inference_s)


def run(bench: Bench, meter=None, **kw):
    clock = bench.clock
    meter = meter or SimulatedMeter(bench.power, clock=clock, step_s=0.01)
    return measure_energy(meter, bench.run_for, clock=clock, sleep=clock.advance, **kw)


def test_gross_and_net_per_inference():
    bench = Bench(FakeClock(), [5.0] * 5)
    r = run(bench)
    # 5 W for 1 s over 100 inferences = 50 mJ gross; 3 W above idle = 30 mJ net.
    assert r.gross_mj == pytest.approx(50.0, rel=1e-3)
    assert r.net_mj == pytest.approx(30.0, rel=1e-3)
    assert r.idle_power_mw == pytest.approx(2000.0, rel=1e-3)
    assert r.active_power_mw == pytest.approx(5000.0, rel=1e-3)
    assert r.windows == 5 and bench.calls == 5
    assert r.net_ci95_low_mj <= r.net_mj <= r.net_ci95_high_mj
    assert r.net_ci95_high_mj - r.net_ci95_low_mj < 0.1
    assert r.flags == () and not r.estimated and energy_valid(r)
    assert (r.meter, r.meter_kind) == ("simulated", "simulated")


def test_confidence_interval_is_the_t_interval_over_windows():
    active = [4.0, 4.5, 5.0, 5.5, 6.0, 5.0]
    r = run(Bench(FakeClock(), active), windows=6)
    net = [(p - IDLE_W) * 1.0 / 100 * 1e3 for p in active]
    half = 2.571 * statistics.stdev(net) / math.sqrt(6)          # t(0.975, df=5)
    assert r.net_mj == pytest.approx(statistics.fmean(net), rel=1e-3)
    assert r.net_ci95_low_mj == pytest.approx(statistics.fmean(net) - half, rel=1e-3)
    assert r.net_ci95_high_mj == pytest.approx(statistics.fmean(net) + half, rel=1e-3)


def test_t_quantiles():
    assert t_quantile_975(4) == pytest.approx(2.776)
    assert t_quantile_975(60) == pytest.approx(2.0003, abs=1e-3)
    assert t_quantile_975(120) == pytest.approx(1.9799, abs=1e-3)
    qs = [t_quantile_975(df) for df in range(1, 200)]
    assert all(a > b for a, b in zip(qs, qs[1:]))


@pytest.mark.parametrize("window_s, windows", [(0.5, 5), (1.0, 4)])
def test_windows_must_be_long_and_many(window_s, windows):
    with pytest.raises(ValueError):
        run(Bench(FakeClock(), [5.0]), window_s=window_s, windows=windows)


@pytest.mark.parametrize("watts", [-5.0, 1e6])      # negative power, 1 MW
def test_absurd_power_is_flagged_not_reported(watts):
    clock = FakeClock()
    bench = Bench(clock, [watts])
    r = run(bench)
    assert ABSURD_READING in r.flags
    assert math.isnan(r.net_mj) and math.isnan(r.gross_mj) and not energy_valid(r)


def test_meter_vanishing_mid_measurement():
    clock = FakeClock(0.0)
    bench = Bench(clock, [5.0] * 5)
    meter = SimulatedMeter(bench.power, clock=clock, vanish_at_s=3.5)   # during window 3
    r = run(bench, meter)
    assert METER_VANISHED in r.flags and math.isnan(r.net_mj)
    assert r.windows == 2


def test_counter_backwards_on_a_real_rapl_tree(tmp_path):
    clock = FakeClock()
    path = rapl_package(tmp_path, energy_uj=10_000_000, subzones=())
    state = {"uj": 10_000_000, "window": 0}

    def sleep(s):
        clock.advance(s)
        state["uj"] += int(IDLE_W * s * 1e6)
        path.write_text(f"{state['uj']}\n")

    def run_for(s):
        clock.advance(s)
        state["window"] += 1
        state["uj"] += int(5.0 * s * 1e6)
        if state["window"] == 3:
            state["uj"] -= 20_000_000      # the counter jumps back (reset, bad firmware)
        path.write_text(f"{state['uj']}\n")
        return 100

    r = measure_energy(RaplMeter(root=tmp_path, clock=clock), run_for, clock=clock, sleep=sleep)
    assert COUNTER_BACKWARDS in r.flags and not energy_valid(r) and math.isnan(r.net_mj)


def test_counter_wrap_inside_a_window_is_still_energy(tmp_path):
    clock = FakeClock()
    rng = 100_000_000                       # 100 J range: wraps during the measurement
    path = rapl_package(tmp_path, energy_uj=0, subzones=(), max_range_uj=rng)
    state = {"uj": 0}

    def add(watts, s):
        clock.advance(s)
        state["uj"] = (state["uj"] + int(watts * s * 1e6)) % rng
        path.write_text(f"{state['uj']}\n")

    def run_for(s):
        add(5.0, s)
        return 100

    r = measure_energy(RaplMeter(root=tmp_path, clock=clock), run_for, clock=clock,
                       sleep=lambda s: add(IDLE_W, s), windows=30)
    assert COUNTER_WRAPPED in r.flags and energy_valid(r)
    assert r.net_mj == pytest.approx(30.0, rel=1e-6)


def test_coarse_meter_gives_an_estimate_that_says_so():
    bench = Bench(FakeClock(), [2.01] * 5)      # 10 mW above idle: 10 mJ per window
    meter = SimulatedMeter(bench.power, clock=bench.clock, step_s=0.01, resolution_mj=5.0)
    r = run(bench, meter)
    assert BELOW_RESOLUTION in r.flags and r.estimated
    assert math.isfinite(r.net_mj) and energy_valid(r)


def test_net_not_above_idle_is_flagged():
    bench = Bench(FakeClock(), [1.9, 2.1, 1.95, 2.05, 2.0])
    r = run(bench)
    assert NOT_ABOVE_IDLE in r.flags
    assert r.net_ci95_low_mj < 0 < r.net_ci95_high_mj


def test_idle_drift_is_flagged():
    clock = FakeClock()
    bench = Bench(clock, [5.0] * 5)
    t_end_of_windows = clock.t + 1.0 + 5.0
    meter = SimulatedMeter(lambda t: bench.power(t) if t < t_end_of_windows else 3.0,
                           clock=clock, step_s=0.01)
    r = run(bench, meter)
    assert IDLE_DRIFT in r.flags and energy_valid(r)
    assert r.idle_power_mw == pytest.approx(2500.0, rel=1e-3)


def test_window_without_inference_is_invalid():
    clock = FakeClock()

    def run_for(s):
        clock.advance(s)
        return 0

    r = measure_energy(SimulatedMeter(lambda t: 3.0, clock=clock), run_for, clock=clock,
                       sleep=clock.advance)
    assert NO_INFERENCES in r.flags and not energy_valid(r)


def test_no_meter_runs_nothing():
    calls = []
    r = measure_energy(NoneMeter(), lambda s: calls.append(s) or 1)
    assert calls == [] and METER_UNAVAILABLE in r.flags and r.windows == 0
    assert r.meter_kind == "none" and math.isnan(r.net_mj)


def test_refuses_to_run_inside_a_window():
    with measurement_window():
        with pytest.raises(SamplingInsideWindowError):
            measure_energy(SimulatedMeter(lambda t: 1.0), lambda s: 1)


class ConstantRail(SampledMeter):
    def __init__(self, clock):
        super().__init__(period_s=0.01, clock=clock)

    def info(self):
        from hilnas.agent.results import EnergyMeterInfo
        return EnergyMeterInfo("const", "sampled_rail", "board", 0.001, True)

    def _sample(self):
        return PowerSample(total_w=2.0)


def test_run_for_failure_propagates_and_the_sampler_stops():
    clock = FakeClock()
    meter = ConstantRail(clock)

    def run_for(s):
        raise RuntimeError("worker crashed")

    with pytest.raises(RuntimeError, match="worker crashed"):
        measure_energy(meter, run_for, clock=clock, sleep=clock.advance)
    assert meter._thread is None and not window_open()


def test_utilisation_estimate_is_marked_estimated(tmp_path):
    clock = FakeClock()
    jiffies = {"busy": 1000, "idle": 9000}

    def stat():
        write(tmp_path, "proc/stat",
              f"cpu  {jiffies['busy']} 0 0 {jiffies['idle']} 0 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0\n")

    def advance(s, busy_fraction):
        clock.advance(s)
        jiffies["busy"] += int(100 * s * busy_fraction)
        jiffies["idle"] += int(100 * s * (1 - busy_fraction))
        stat()

    def run_for(s):
        advance(s, 1.0)
        return 100

    stat()
    meter = UtilisationEstimateMeter(2.0, 6.0, root=tmp_path, clock=clock)
    r = measure_energy(meter, run_for, clock=clock, sleep=lambda s: advance(s, 0.0))
    assert r.estimated and ESTIMATED in r.flags and r.meter_kind == "estimate"
    assert r.net_mj == pytest.approx(40.0, rel=1e-6)       # (6 - 2) W x 1 s / 100
