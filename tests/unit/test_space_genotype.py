"""Genotypes: validation, JSON, NB201 arch_str and benchmark index, cell liveness."""
import csv
import json
import os
from pathlib import Path

import pytest

from hilnas.searchers.genotype import (DARTS_V2, NB201_NUM_ARCHS, Genotype, GenotypeError, NB201Genotype,
                                       genotype_from_json, wire_cell)

# HW-NAS-Bench / HELP latency table (HayeonLee/HELP, data/nasbench201/latency; see shared/data/PROVENANCE.md)
CSV = Path(os.environ.get("HILNAS_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")) \
    / "nb201_device_latency_calibration.csv"


@pytest.mark.skipif(not CSV.exists(), reason=f"{CSV} not present")
def test_nb201_index_and_arch_str_match_every_csv_row():
    with open(CSV, newline="") as f:
        rows = [(int(r["index"]), r["arch_str"]) for r in csv.DictReader(f)]
    assert len(rows) == 3125
    for index, arch_str in rows:
        g = NB201Genotype.from_arch_str(arch_str)
        assert g.arch_str == arch_str
        assert g.index == index, arch_str
        assert NB201Genotype.from_index(index) == g


def test_nb201_index_is_a_bijection():
    seen = {NB201Genotype.from_index(i).arch_str for i in range(NB201_NUM_ARCHS)}
    assert len(seen) == NB201_NUM_ARCHS == 15625
    assert NB201Genotype.from_index(0).arch_str == \
        "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"


def test_nb201_arch_str_accepts_any_input_order_and_formats_canonically():
    g = NB201Genotype.from_arch_str("|none~0|+|skip_connect~1|nor_conv_1x1~0|+|a|".replace(
        "|a|", "|avg_pool_3x3~2|none~0|nor_conv_3x3~1|"))
    assert g.ops == ("none", "nor_conv_1x1", "skip_connect", "none", "nor_conv_3x3", "avg_pool_3x3")
    assert g.arch_str == "|none~0|+|nor_conv_1x1~0|skip_connect~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|"


@pytest.mark.parametrize("bad, match", [
    ("|none~0|+|none~0|none~1|", "3 nodes"),
    ("|none~0|+|none~0|none~1|+|none~0|none~1|conv_7x7~2|", "unknown op 'conv_7x7'"),
    ("|none~0|+|none~0|none~0|+|none~0|none~1|none~2|", "appears twice"),
    ("|none~0|+|none~0|none~2|+|none~0|none~1|none~2|", r"inputs \[0, 1\]"),
    ("|none0|+|none~0|none~1|+|none~0|none~1|none~2|", "bad edge"),
    ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "node 1"),
])
def test_nb201_bad_arch_str_says_what_is_wrong(bad, match):
    with pytest.raises(GenotypeError, match=match):
        NB201Genotype.from_arch_str(bad)


def test_nb201_bad_ops_and_index():
    with pytest.raises(GenotypeError, match="6 edges, got 5 ops"):
        NB201Genotype(("none",) * 5)
    with pytest.raises(GenotypeError, match="edge 0->1: unknown op 'sep_conv_3x3'"):
        NB201Genotype(("sep_conv_3x3",) + ("none",) * 5)
    for bad in (-1, 15625, "3"):
        with pytest.raises(GenotypeError, match="0..15624"):
            NB201Genotype.from_index(bad)


def test_json_round_trip_both_kinds():
    nb = NB201Genotype.from_index(1234)
    for g in (DARTS_V2, nb):
        text = g.to_json()
        assert type(g).from_json(text) == g
        assert genotype_from_json(text) == g
        json.loads(text)  # plain JSON
    assert json.loads(nb.to_json()) == {"space": "nb201", "arch_str": nb.arch_str}


def test_darts_genotype_accepts_lists_and_freezes_them():
    d = json.loads(DARTS_V2.to_json())
    g = Genotype(d["normal"], d["normal_concat"], d["reduce"], d["reduce_concat"])
    assert g == DARTS_V2 and hash(g) == hash(DARTS_V2)
    assert g.steps == 4 and isinstance(g.normal[0], tuple)
    import numpy as np  # argmax-derived genotypes carry numpy ints
    g2 = Genotype([(op, np.int64(i)) for op, i in DARTS_V2.normal], np.arange(2, 6), DARTS_V2.reduce, [2, 3, 4, 5])
    assert g2 == DARTS_V2 and type(g2.normal[0][1]) is int


@pytest.mark.parametrize("change, match", [
    ({"normal": [["sep_conv_7x7", 0], ["skip_connect", 1]]}, "unknown op 'sep_conv_7x7'"),
    ({"normal": [["sep_conv_3x3", 2], ["skip_connect", 1]]}, "node 2 cannot take input 2"),
    ({"normal": [["sep_conv_3x3", 0]]}, "two edges per node"),
    ({"normal": [["sep_conv_3x3", "0"], ["skip_connect", 1]]}, "must be ints"),
    ({"normal": [["sep_conv_3x3", 0.0], ["skip_connect", 1]]}, "must be ints"),
    ({"reduce_concat": [2, 2, 3]}, "distinct node numbers in 2..5"),
    ({"reduce_concat": [1, 2]}, "distinct node numbers"),
    ({"normal_concat": "x"}, "normal_concat"),
])
def test_darts_genotype_rejects_bad_fields(change, match):
    d = {**DARTS_V2.to_dict(), **change}
    with pytest.raises(GenotypeError, match=match):
        Genotype.from_dict(d)


def test_genotype_json_errors():
    with pytest.raises(GenotypeError, match="does not parse"):
        genotype_from_json("{nope")
    with pytest.raises(GenotypeError, match="needs 'space'"):
        genotype_from_json('{"arch_str": "x"}')
    with pytest.raises(GenotypeError, match="expected a 'darts' genotype"):
        Genotype.from_json(NB201Genotype.from_index(0).to_json())
    with pytest.raises(GenotypeError, match="missing"):
        Genotype.from_json('{"space": "darts", "normal": []}')


def test_wire_cell_drops_none_and_dead_edges():
    # NB201 numbering: 0 input, 3 output. Edge 0->1 conv, but node 1 only feeds node 2 via none: dead.
    edges = [(0, 1, "nor_conv_3x3"), (0, 2, "none"), (1, 2, "none"), (0, 3, "skip_connect"),
             (1, 3, "none"), (2, 3, "avg_pool_3x3")]
    w = wire_cell(edges, 1, (3,))
    assert w.live == (False, False, False, True, False, False)
    assert w.zero_nodes == {2}
    # output cut off entirely
    w = wire_cell([(0, 1, "nor_conv_3x3"), (0, 2, "skip_connect"), (1, 2, "none"), (0, 3, "none"),
                   (1, 3, "none"), (2, 3, "none")], 1, (3,))
    assert w.live == (False,) * 6 and 3 in w.zero_nodes
    # DARTS-style: input 0 unused, node 2 feeds the concat
    w = wire_cell([(1, 2, "sep_conv_3x3"), (1, 2, "skip_connect")], 2, (2,))
    assert w.live == (True, True) and w.used_inputs == {1}
