"""NAS-Bench-201 networks rebuilt as ONNX, and the calibrated profiles against the published
device latencies (/work/shared/data/nb201_device_latency_calibration.csv)."""
from __future__ import annotations

import dataclasses

import pytest

from hilnas.agent.sim import calibrate
from hilnas.agent.sim.graph import analyse_onnx
from hilnas.agent.sim.nb201 import nb201_onnx, parse_arch
from hilnas.agent.sim.profile import load_profile

ALL_3X3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def test_parse_arch():
    assert parse_arch(ALL_3X3)[2] == [("nor_conv_3x3", 0), ("nor_conv_3x3", 1), ("nor_conv_3x3", 2)]
    with pytest.raises(ValueError):
        parse_arch("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|")


def test_largest_network_matches_the_benchmark_size():
    g = analyse_onnx(nb201_onnx(ALL_3X3))
    # NAS-Bench-201 reports ~1.53 M parameters (weights + BN affine) and ~220 M multiply-adds
    # for this cell on CIFAR-10; here BN also stores its running statistics.
    assert 1.50e6 < g.params_bytes / 4 < 1.56e6
    assert 2 * 215e6 < g.flops < 2 * 225e6


def test_network_without_a_path_from_the_input_folds_to_a_constant():
    g = analyse_onnx(nb201_onnx("|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|none~2|"))
    assert not any(n.runs for n in g.nodes)


def test_kendall_tau():
    assert calibrate.kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert calibrate.kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert calibrate.kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)


@pytest.fixture(scope="module")
def every_tenth_network():
    """Costed tables of every 10th network of the calibration file (analysed once)."""
    if not calibrate.DEFAULT_CSV.is_file():
        pytest.skip(f"{calibrate.DEFAULT_CSV} not available")
    archs = [a for a, _ in calibrate.read_latencies(calibrate.DEFAULT_CSV, "raspi4_ms")[::10]]
    return calibrate.nb201_tables(archs, workers=1)


@pytest.mark.slow
@pytest.mark.parametrize("profile, column", [("raspi4", "raspi4_ms"), ("pixel3", "pixel3_ms")])
def test_calibrated_profiles_track_the_published_latencies(profile, column, every_tenth_network):
    rows = calibrate.read_latencies(calibrate.DEFAULT_CSV, column)[::10]   # spread over the table
    report = calibrate.evaluate(load_profile(profile), every_tenth_network, rows, column)
    # all 3,125 rows, 5-fold cross-validated: tau 0.884 / 0.893, median APE 5.4 % / 1.7 %
    # (docs/performance.md)
    assert report.kendall_tau > 0.85 and report.median_ape < 0.10


def _cell_convs(arch: str) -> int:
    """3x3 convs that run inside the cells (the network has 5 more: stem and residual blocks)."""
    g = analyse_onnx(nb201_onnx(arch))
    return sum(1 for n in g.nodes if n.runs and n.op_type == "Conv" and n.variant == "" and n.flops == 4718592) - 2


def test_none_edges_follow_the_measured_pipeline():
    # node 2 reaches the output only through none~2 but has a none input: computed (measured 19 ms)
    assert _cell_convs("|skip_connect~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|none~2|") == 15
    # node 2 is a sum of two real terms read only through none~2: dead code (measured 5.3 ms)
    assert _cell_convs("|avg_pool_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|none~2|") == 0
    # node 1 read only through none~1 by a computed node 2: computed
    assert _cell_convs("|nor_conv_3x3~0|+|avg_pool_3x3~0|none~1|+|nor_conv_1x1~0|none~1|nor_conv_1x1~2|") == 15


def test_duplicates_are_marked_only_where_a_runtime_without_cse_computes_them():
    from hilnas.agent.sim.model import DeviceModel

    # node 1 = node 0 (skip): the pool of node 1 (dead) and the pool of node 0 (live) are one
    # computation; without CSE only the live one runs, so nothing may count twice.
    arch = "|skip_connect~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|avg_pool_3x3~0|skip_connect~1|none~2|"
    g = analyse_onnx(nb201_onnx(arch))
    assert not [n for n in g.nodes if n.op_type == "AveragePool" and n.folded == "duplicate"]
    # two pools of one input, both live: one is a duplicate; a no-CSE profile pays for both
    arch2 = "|avg_pool_3x3~0|+|avg_pool_3x3~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
    g2 = analyse_onnx(nb201_onnx(arch2))
    dups = [n for n in g2.nodes if n.op_type == "AveragePool" and n.folded == "duplicate"]
    assert len(dups) == 15
    raspi4 = load_profile("raspi4")
    assert not raspi4.compute.cse
    merged = dataclasses.replace(raspi4, compute=dataclasses.replace(raspi4.compute, cse=True))
    assert DeviceModel(raspi4).latency_ms(g2) > DeviceModel(merged).latency_ms(g2)


def test_costed_tables_are_cached_and_price_like_the_graphs(tmp_path):
    archs = [ALL_3X3, "|avg_pool_3x3~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"]
    first = calibrate.nb201_tables(archs, cache=tmp_path, workers=1)
    files = list(tmp_path.glob("nb201-tables-*.json"))
    assert len(files) == 1
    again = calibrate.nb201_tables(archs, cache=tmp_path, workers=1)
    assert again[1] == first[1]
    p = load_profile("pixel3")
    rows = [(a, 1.0) for a in archs]
    from_tables = calibrate.Design(again[0], [again[1][a] for a in archs], p).latencies_ms(p)
    from hilnas.agent.sim.model import DeviceModel
    assert from_tables.tolist() == pytest.approx([DeviceModel(p).latency_ms(analyse_onnx(nb201_onnx(a))) for a, _ in rows])
