"""The device model: roofline latency, fusion, cache and overhead effects, energy."""
from __future__ import annotations

import dataclasses

import pytest

from hilnas.agent.sim import toy
from hilnas.agent.sim.graph import analyse_onnx
from hilnas.agent.sim.model import DeviceModel
from hilnas.agent.sim.profile import load_profile


@pytest.fixture(scope="module")
def model() -> DeviceModel:
    return DeviceModel(load_profile("raspi4"))


def test_latency_grows_with_flops(model):
    lat = [model.latency_ms(analyse_onnx(toy.conv_block(16, c, 32, 3))) for c in (8, 16, 64, 128)]
    assert lat == sorted(lat) and lat[-1] > 4 * lat[1]


def test_roofline_compute_vs_memory(model):
    conv = model.node_times(analyse_onnx(toy.conv_block(64, 64, 32, 3)))[0]
    relu = model.node_times(analyse_onnx(toy.unary("Relu", (1, 64, 32, 32))))[0]
    assert conv.compute_us > conv.memory_us      # a 3x3 conv is compute-bound
    assert relu.memory_us > relu.compute_us      # an activation is memory-bound
    assert conv.total_us == pytest.approx(max(conv.compute_us, conv.memory_us) + conv.dispatch_us)


def test_fusion_is_not_additive(model):
    """conv+bn+relu in one graph costs less than its separately exported parts, even after
    removing the per-model overhead of each part (fused epilogues skip dispatch and memory)."""
    fused = analyse_onnx(toy.conv_block(32, 32, 32, 3, bn=True, relu=True))
    parts = [analyse_onnx(toy.conv_block(32, 32, 32, 3)), analyse_onnx(toy.batchnorm(32, 32)),
             analyse_onnx(toy.unary("Relu", (1, 32, 32, 32)))]
    overhead = model.overhead_us
    kernels = lambda g: model.latency_ms(g) - overhead(g) / 1e3  # noqa: E731
    assert model.latency_ms(fused) < sum(model.latency_ms(p) for p in parts)
    assert kernels(fused) < sum(kernels(p) for p in parts)
    # the fused BN costs nothing; the fused ReLU only its arithmetic
    times = {t.name: t for t in model.node_times(fused)}
    assert times["bn"].total_us == 0 and times["relu"].memory_us == 0 and times["relu"].dispatch_us == 0


def test_per_model_overhead_is_paid_once(model):
    one = analyse_onnx(toy.small_cnn(width=8, hw=8, depth=1))
    assert model.latency_ms(one) * 1e3 > model.profile.compute.model_overhead_us
    assert model.overhead_us(one) >= model.profile.compute.model_overhead_us


def test_working_sets_beyond_the_cache_are_slower():
    profile = load_profile("raspi4")
    big_cache = DeviceModel(dataclasses.replace(profile, compute=dataclasses.replace(profile.compute, cache_bytes=1 << 30)))
    small_cache = DeviceModel(dataclasses.replace(profile, compute=dataclasses.replace(profile.compute, cache_bytes=1 << 10)))
    g = analyse_onnx(toy.unary("Relu", (1, 64, 64, 64)))   # 2 MiB read + written
    assert small_cache.latency_ms(g) > 1.5 * big_cache.latency_ms(g)
    # weights: resident while the whole model's weights fit, streamed from DRAM otherwise
    g = analyse_onnx(toy.gemm(1, 1024, 1024))
    streamed = small_cache.node_times(g)[0].memory_us
    resident = big_cache.node_times(g)[0].memory_us
    assert streamed > resident


def test_throttled_clock_and_fewer_threads_are_slower(model):
    g = analyse_onnx(toy.conv_block(64, 64, 32, 3))
    base = model.latency_ms(g)
    assert model.latency_ms(g, freq_scale=0.5) > 1.8 * base
    assert model.latency_ms(g, threads=1) > 3 * base          # 1 of 4 cores


def test_energy(model):
    small, big = (analyse_onnx(toy.conv_block(16, c, 32, 3)) for c in (16, 128))
    e_small, e_big = model.energy_mj(small), model.energy_mj(big)
    assert 0 < e_small < e_big
    e = model.profile.energy
    lat = model.latency_ms(big)
    assert e_big > e.static_power_w * lat                          # dynamic part on top of static
    assert model.energy_mj(big, latency_ms=2 * lat) == pytest.approx(e_big + e.static_power_w * lat)


@pytest.mark.parametrize("profile", ["raspi4", "pixel4-gpu"])
def test_vectorised_kernel_times_match_node_times(profile):
    """The calibration's vectorised pricing is the device model's, node for node."""
    from hilnas.agent.sim.calibrate import Design, _as_tables
    from hilnas.agent.sim.nb201 import nb201_onnx

    p = load_profile(profile)
    graphs = {"a": analyse_onnx(nb201_onnx("|nor_conv_3x3~0|+|avg_pool_3x3~0|none~1|+|nor_conv_1x1~0|none~1|nor_conv_3x3~2|")),
              "b": analyse_onnx(toy.small_cnn(width=8, hw=8, depth=2)),
              "c": analyse_onnx(nb201_onnx("|avg_pool_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|skip_connect~0|avg_pool_3x3~1|skip_connect~2|"))}
    nodes, tables = _as_tables(graphs)
    design = Design(nodes, [tables[k] for k in graphs], p)
    model = DeviceModel(p)
    assert design.latencies_ms(p).tolist() == pytest.approx([model.latency_ms(g) for g in graphs.values()], rel=1e-9)
