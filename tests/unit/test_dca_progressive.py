"""The progressive decisions' look-ahead to the band (``searchers/dca/progressive.py``), on a constructed cell.

Prices: a 3x3 conv costs 10 on any edge, a 1x1 conv 1, the parameter-free ops nothing, and the
alphas prefer the 3x3 conv on every edge, least surely on edge 0->3, which is decided last.
Deciding greedily, every edge takes the 3x3 conv: after five decisions the cell costs 50 whatever
edge 0->3 takes (``none`` there leaves every other edge live), the last decision has nothing
within budget to choose from, and the cell (60) lands far over the band [20, 30]. Looking ahead,
the decisions that would leave no completion in the band choose among the others, and the cell
lands in the band without repair. A band no cell reaches: the decisions fall back to the cells
nearest it and record it. A device whose costs differ from the prediction (a fake ``measure``):
deciding on the prediction leaves the band, deciding the last edges on the measured cells lands in it.
"""
import pytest
import torch

from hilnas.searchers.cost import CostTables, nb201_cell_costs, nb201_cells
from hilnas.searchers.dca.progressive import Progressive
from hilnas.searchers.genotype import NB201Genotype
from hilnas.searchers.supernet import build_supernet
from testmodels import tiny_space

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPACE = tiny_space("nb201")
PRICE = {"none": 0.0, "skip_connect": 0.0, "nor_conv_1x1": 1.0, "nor_conv_3x3": 10.0, "avg_pool_3x3": 0.0}
PREFERENCE = {"none": 0.0, "skip_connect": 1.0, "nor_conv_1x1": 2.0, "nor_conv_3x3": 3.0, "avg_pool_3x3": 0.5}
BAND = (20.0, 30.0)


def tables() -> CostTables:
    edge = torch.tensor([[PRICE[o] for o in SPACE.ops]] * len(SPACE.edges), dtype=torch.float64)[None]
    return CostTables(cell_types=("cell",), edge=edge, add=torch.zeros(1, dtype=torch.float64),
                      preprocess=torch.zeros(1, 2, dtype=torch.float64), rest=0.0)


def decide_all(band, scale=None, measure=None, on_device=25, margin=0.0, within=BAND[1],
               **settings) -> tuple[Progressive, float]:
    """Decide every edge of a supernet whose alphas are PREFERENCE; returns the decisions and the cell's cost."""
    model = build_supernet(SPACE)
    with torch.no_grad():
        alphas = torch.tensor([[PREFERENCE[o] for o in SPACE.ops]] * len(SPACE.edges))
        alphas[SPACE.edges.index((0, 3))] *= 0.5   # the least certain edge: decided last
        model.alphas["cell"].copy_(alphas)
    p = Progressive(model, tables(), list(range(len(SPACE.edges))), penalty=lambda cost: 0.0,
                    within=lambda cost: cost <= within, scale=scale, measure=measure, band=band, on_device=on_device,
                    margin=margin, **settings)
    p.after_step(len(SPACE.edges) - 1)
    return p, predicted(tuple(SPACE.ops[model.fixed["cell"][e]] for e in range(len(SPACE.edges))))


def predicted(ops: tuple[str, ...]) -> float:
    """The cell's cost under ``tables()`` (dead edges cost nothing)."""
    cells = nb201_cells(SPACE.ops)
    index = [SPACE.ops.index(o) for o in ops]
    (row,) = [i for i, arch in enumerate(cells.arch) if list(arch) == index]
    return float(nb201_cell_costs(cells, tables())[row])


def test_greedy_decisions_strand_the_last_edge_and_the_look_ahead_lands_in_the_band():
    greedy, greedy_cost = decide_all(band=None)
    assert greedy_cost == 60.0 and greedy.decisions[-1]["edge"] == SPACE.edges.index((0, 3))
    assert all(not 20 <= c <= 30 for c in greedy.decisions[-1]["device_costs"].values())   # stranded
    assert not any(d["restricted"] or d["fallback"] for d in greedy.decisions)
    ahead, cost = decide_all(band=BAND)
    assert BAND[0] <= cost <= BAND[1]
    assert len(ahead.decisions) == len(SPACE.edges) and not any(d["fallback"] for d in ahead.decisions)
    # the first decisions were free to take the 3x3 conv; the later ones were restricted, and changed the choice
    restricted = [d for d in ahead.decisions if d["restricted"]]
    assert restricted and any(d["changed"] for d in restricted)
    assert all(d["op"] in d["feasible_ops"] for d in ahead.decisions)
    assert ahead.decisions[0]["op"] == "nor_conv_3x3" and not ahead.decisions[0]["restricted"]


def test_the_look_ahead_uses_the_device_cost_and_the_last_decision_its_measurement():
    # the device is twice as slow as predicted: the band in device cost holds cells predicted at 10-15
    ahead, cost = decide_all(band=BAND, scale=lambda: 2.0,
                             measure=lambda g: 2.0 * predicted(g.ops))
    assert BAND[0] <= 2.0 * cost <= BAND[1]
    last = ahead.decisions[-1]
    assert BAND[0] <= last["device_costs"][last["op"]] <= BAND[1]


def test_a_band_no_cell_reaches_falls_back_to_the_nearest_cells_and_says_so():
    # cells cost 10 per live 3x3 conv + 1 per live 1x1 conv: none costs 24.2-29.5; the nearest is 24 (two 3x3, four
    # 1x1), the next 30
    band = (24.2, 29.5)
    stuck, cost = decide_all(band=band)
    assert cost == 24.0
    assert all(d["fallback"] for d in stuck.decisions)
    assert [d["miss"] for d in stuck.decisions] == pytest.approx([0.2] * len(SPACE.edges))
    greedy, greedy_cost = decide_all(band=None)   # without the look-ahead: 60
    assert greedy_cost == 60.0 and not any(d["fallback"] for d in greedy.decisions)


class Device:
    """A fake device whose cells cost ``ratio`` x the prediction, unknown to the prediction (scale 1); counts calls."""

    def __init__(self, ratio: float):
        self.ratio, self.calls = ratio, []

    def __call__(self, genotype) -> float:
        self.calls.append(genotype.arch_str)
        return self.ratio * predicted(genotype.ops)


def test_the_last_decisions_on_measured_cells_land_in_the_band_where_the_prediction_leaves_it():
    device = Device(1.2)   # 20 % slower than predicted
    lut, lut_cost = decide_all(band=BAND)   # no device: decided on the prediction
    assert BAND[0] <= lut_cost <= BAND[1] and not BAND[0] <= 1.2 * lut_cost <= BAND[1]   # 30 predicted, 36 measured
    assert not any(d["on_device"] for d in lut.decisions)
    ahead, cost = decide_all(band=BAND, measure=device)
    assert BAND[0] <= 1.2 * cost <= BAND[1]
    assert [d["on_device"] for d in ahead.decisions] == [False] * 4 + [True] * 2
    penultimate, last = ahead.decisions[-2:]
    assert 5 < len(penultimate["measured"]) <= 25 and len(last["measured"]) <= 5
    assert set(last["measured"]) <= set(penultimate["measured"])   # the same cells, measured once each
    assert sorted(device.calls) == sorted(penultimate["measured"]) == sorted(ahead.measured)   # each once
    assert all(v == pytest.approx(1.2 * predicted(NB201Genotype.from_arch_str(a).ops))
               for a, v in penultimate["measured"].items())   # the decision saw the device's costs, not the LUT's
    assert BAND[0] <= last["device_costs"][last["op"]] <= BAND[1]


def test_measuring_the_penultimate_decisions_cells_too_reaches_the_band_the_last_alone_cannot():
    # the device is twice as fast as predicted: after four decisions on the prediction, the last edge alone cannot
    # bring the cell (30 predicted, 15 measured) up to the band; deciding the last two edges on the device can
    last_only, cost_last = decide_all(band=BAND, measure=Device(0.5), on_device=5)
    assert [d["on_device"] for d in last_only.decisions] == [False] * 5 + [True]
    assert not BAND[0] <= 0.5 * cost_last <= BAND[1] and last_only.decisions[-1]["fallback"]
    two, cost_two = decide_all(band=BAND, measure=Device(0.5))
    assert BAND[0] <= 0.5 * cost_two <= BAND[1] and not any(d["fallback"] for d in two.decisions)
    assert [d["on_device"] for d in two.decisions] == [False] * 4 + [True] * 2


def test_on_device_zero_decides_on_the_prediction_and_measures_nothing():
    device = Device(1.2)
    p, cost = decide_all(band=BAND, measure=device, on_device=0)
    assert not device.calls and not any(d["on_device"] for d in p.decisions) and cost == 30.0
    with pytest.raises(ValueError, match="on_device must be >= 0"):
        Progressive(build_supernet(SPACE), tables(), [0], penalty=lambda c: 0.0, on_device=-1)


def test_on_the_device_the_decisions_aim_inside_the_margin_when_a_measured_cell_lies_there():
    # twice as fast as predicted: without a margin the measured decisions take a cell on the band's edge (30: the next
    # measurement leaves the band about half the time); with a margin of 2, one measured inside (22, 28)
    edge, cost_edge = decide_all(band=BAND, measure=Device(0.5))
    assert 0.5 * cost_edge == BAND[1] and not any(d["aimed_inside"] for d in edge.decisions)
    inside, cost_inside = decide_all(band=BAND, measure=Device(0.5), margin=2.0)
    assert BAND[0] + 2.0 <= 0.5 * cost_inside <= BAND[1] - 2.0
    assert [d["aimed_inside"] for d in inside.decisions] == [False] * 4 + [True] * 2


def test_an_op_that_would_cut_the_cell_off_is_never_decided_even_when_the_alphas_want_it():
    # node 3 fed by none from nodes 0 and 1: `none` on the last edge 2->3 leaves no path from the input. The alphas
    # prefer `none` there and nothing else counts (penalty 0, no band): it must still not be chosen (the expected
    # cost of that trial is finite, as it conditions on the cell being connected)
    model = build_supernet(SPACE)
    last = SPACE.edges.index((2, 3))
    with torch.no_grad():
        alphas = torch.zeros(len(SPACE.edges), len(SPACE.ops))
        alphas[last, SPACE.ops.index("none")] = 5.0
        model.alphas["cell"].copy_(alphas)
    model.fixed["cell"] = {SPACE.edges.index(e): SPACE.ops.index(o) for e, o in
                           (((0, 1), "nor_conv_3x3"), ((0, 2), "none"), ((1, 2), "skip_connect"),
                            ((0, 3), "none"), ((1, 3), "none"))}
    p = Progressive(model, tables(), [0], penalty=lambda c: 0.0)
    p.after_step(0)
    decision = p.decisions[-1]
    assert decision["edge"] == last and decision["op"] != "none"
    assert "none" not in decision["device_costs"]


class Scattering(Device):
    """A fake device whose k-th measurement of a cell is ``pattern[k]`` x its cost (the last factor thereafter): the
    first measurement of every cell lucky, the later ones true."""

    def __init__(self, ratio: float, pattern: tuple[float, ...]):
        super().__init__(ratio)
        self.pattern = pattern

    def __call__(self, genotype) -> float:
        k = min(self.calls.count(genotype.arch_str), len(self.pattern) - 1)
        return super().__call__(genotype) * self.pattern[k]


def decide_confirmed(device, repeats: int, window: float = 5.0) -> tuple[Progressive, float]:
    return decide_all(BAND, measure=device, repeats=repeats, window=window)


def test_a_cell_kept_for_one_lucky_measurement_leaves_the_band_and_confirming_it_keeps_a_true_one():
    # the device is 20 % slower than predicted but every cell's first measurement 20 % fast: measured once, the
    # decisions keep a cell measured at 28.8 that costs 36; measured again near the band, the median is the truth
    once, cost_once = decide_confirmed(Scattering(1.2, (0.8, 1.0, 1.0)), repeats=1)
    assert BAND[0] <= once.decisions[-1]["device_costs"][once.decisions[-1]["op"]] <= BAND[1]   # as the loop saw it
    assert not BAND[0] <= 1.2 * cost_once <= BAND[1]   # the truth
    assert not any(d["repeats"] for d in once.decisions)
    device = Scattering(1.2, (0.8, 1.0, 1.0))
    confirmed, cost = decide_confirmed(device, repeats=3)
    assert BAND[0] <= 1.2 * cost <= BAND[1]
    assert confirmed.decisions[-1]["device_costs"][confirmed.decisions[-1]["op"]] == pytest.approx(1.2 * cost)
    # bounded: only the cells first measured within the window of the band again, at most 3 measurements in all
    first = {a: s[0] for a, s in confirmed.samples.items()}
    again = {a for a, s in confirmed.samples.items() if len(s) > 1}
    assert again == {a for a, v in first.items() if BAND[0] - 5.0 <= v <= BAND[1] + 5.0} and again != set(first)
    assert max(len(s) for s in confirmed.samples.values()) <= 3
    assert len(device.calls) == sum(len(s) for s in confirmed.samples.values()) < 3 * len(first)
    recorded = confirmed.decisions[-2]["repeats"]
    assert recorded and all(len(s) > 1 and confirmed.measured[a] == pytest.approx(sorted(s)[len(s) // 2])
                            for a, s in recorded.items())


def test_repeats_one_measures_each_cell_once_and_bad_settings_are_refused():
    device = Scattering(1.2, (0.8, 1.0, 1.0))
    p, _ = decide_confirmed(device, repeats=1)
    assert sorted(device.calls) == sorted(set(device.calls)) == sorted(p.samples)
    for kw, match in (({"repeats": 0}, "repeats must be >= 1"), ({"window": -1.0}, "must be >= 0"),
                      ({"tolerance": 1.0}, r"tolerance must be in \[0, 1\)")):
        with pytest.raises(ValueError, match=match):
            Progressive(build_supernet(SPACE), tables(), [0], penalty=lambda c: 0.0, **kw)


def decide_tolerant(ratio: float, tolerance: float, band: tuple[float, float]) -> tuple[Progressive, float]:
    """Decided on the prediction (the ratio believed: 1) until only the last edge is left, that one on the device."""
    p, cost = decide_all(band, scale=lambda: 1.0, measure=Device(ratio), on_device=5, within=band[1],
                         tolerance=tolerance)
    return p, ratio * cost


def test_decisions_robust_to_the_ratio_are_not_stranded_when_the_device_differs_from_it():
    # the device is 20 % slower than the ratio the decisions on the prediction believe: taken at that ratio alone they
    # leave the last edge no cell in the band [25, 30]; preferring the ops whose completions land in it at ratios
    # within +-20 % of it, the last decision (on the device) finds one
    band = (25.0, 30.0)
    exact, cost_exact = decide_tolerant(1.2, 0.0, band)
    assert not band[0] <= cost_exact <= band[1] and exact.decisions[-1]["fallback"]
    assert all(d["coverage"] is None for d in exact.decisions)
    robust, cost = decide_tolerant(1.2, 0.2, band)
    assert band[0] <= cost <= band[1] and not any(d["fallback"] for d in robust.decisions)
    assert [d["coverage"] is not None for d in robust.decisions] == [True] * 5 + [False]   # the last: measured
    assert any(d["restricted"] for d in robust.decisions[:5])
