"""Room for the choice (``Progressive(widen=N)``), on the constructed cell of ``test_dca_progressive`` (3x3 conv 10,
1x1 conv 1, the rest 0; band [20, 30]) with a device 0.9 x the prediction.

Today's look-ahead aims at the band's middle (the band shrunk by 0.4, then 0.25 of its width, the first some completion
reaches) and keeps, per edge, only the ops whose completions land there at the most of five device ratios within
+-``tolerance`` of the measured one: at the first decision some edges keep one op although other ops' completions
land in the aimed band at the measured ratio too, so the score has nothing to choose. A decision taken while at least
N edges are undecided keeps every op some completion of which lands in the aimed band at the measured ratio; the later
decisions are taken as before; an op with no completion there is never kept.
"""
import pytest
import torch

from hilnas.searchers.cost import nb201_cell_costs, nb201_cells
from hilnas.searchers.dca.progressive import Progressive
from hilnas.searchers.supernet import build_supernet
from test_dca_progressive import BAND, SPACE, decide_all, predicted, tables

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RATIO = 0.9   # the device's cost / the prediction
TODAY = dict(middle=True, tolerance=0.1, scale=lambda: RATIO)   # the look-ahead as the benchmark runs it


def in_band_ops(fixed: dict[int, int], band: tuple[float, float]) -> set[tuple[int, int]]:
    """(edge, op) of the undecided edges some connected completion of ``fixed`` has within ``band`` (device cost, at
    the measured ratio; enumerated)."""
    cells = nb201_cells(SPACE.ops)
    costs = nb201_cell_costs(cells, tables()) * RATIO
    out = set()
    for arch, valid, cost in zip(cells.arch, cells.valid, costs):
        if valid and all(arch[e] == o for e, o in fixed.items()) and band[0] <= float(cost) <= band[1]:
            out |= {(e, int(arch[e])) for e in range(len(SPACE.edges)) if e not in fixed}
    return out


def fixed_before(p: Progressive, k: int) -> dict[int, int]:
    """The edges decided before the k-th decision, as they were decided."""
    return {d["edge"]: SPACE.ops.index(d["op"]) for d in p.decisions[:k]}


def aimed(band: tuple[float, float], share: float) -> tuple[float, float]:
    """The band shrunk by ``share`` of its width on each side (``aimed_middle``)."""
    return band[0] + share * (band[1] - band[0]), band[1] - share * (band[1] - band[0])


def first_decision(widen: int) -> tuple[Progressive, torch.Tensor]:
    """The first decision's feasible (edge, op) mask under the rule, and the Progressive it was taken by."""
    model = build_supernet(SPACE)
    p = Progressive(model, tables(), [0], penalty=lambda c: 0.0, within=lambda c: c <= BAND[1], band=BAND,
                    widen=widen, **TODAY)
    with torch.no_grad():
        feasible, miss, _ = p._aim({}, None, p.costs * RATIO, False)
    assert miss == 0
    return p, feasible


def test_a_decision_with_two_ops_reaching_the_band_keeps_both_when_widened_one_today():
    today, old = first_decision(0)
    wide, new = first_decision(4)
    assert today._aimed_middle == wide._aimed_middle > 0 and wide._widened and not today._widened
    reach = in_band_ops({}, aimed(BAND, wide._aimed_middle))
    # an edge where today's rule keeps one op although two or more ops' completions land in the aimed band
    edges = [e for e in range(len(SPACE.edges)) if int(old[e].sum()) == 1 and sum(e2 == e for e2, _ in reach) >= 2]
    assert edges
    for e in edges:
        assert {o for o in range(len(SPACE.ops)) if new[e, o]} == {o for e2, o in reach if e2 == e}
        assert bool((old[e] <= new[e]).all())   # the widened set holds today's op
    assert {(e, o) for e, o in new.nonzero().tolist()} == reach   # exactly the ops some completion lands with


@pytest.mark.parametrize("band", [BAND, (30.0, 40.0), (11.0, 13.0)])
def test_a_widened_decision_keeps_exactly_the_ops_with_a_completion_in_the_band(band):
    p, _ = decide_all(band, within=band[1], widen=3, **TODAY)
    widened = [k for k, d in enumerate(p.decisions) if d["widened"]]
    assert widened == [0, 1, 2, 3]   # the four decisions with >= 3 edges undecided; the last two aim as before
    for k in widened:
        d = p.decisions[k]
        reach = in_band_ops(fixed_before(p, k), aimed(band, d["aimed_middle"]))
        if not reach:   # nothing reaches the band: the fallback (nearest completions), said so
            assert d["fallback"]
            continue
        assert d["feasible_pairs"] == len(reach) and not d["fallback"]   # no op without a completion in the band
        assert {(d["edge"], SPACE.ops.index(o)) for o in d["feasible_ops"]} <= reach and d["op"] in d["feasible_ops"]


def test_the_decisions_on_the_device_and_the_last_are_never_widened():
    p, _ = decide_all(BAND, measure=lambda g: predicted(g.ops), widen=1, **TODAY)
    assert any(d["on_device"] for d in p.decisions) and any(d["widened"] for d in p.decisions)
    assert all(not d["widened"] for d in p.decisions if d["on_device"])
    assert not p.decisions[-1]["widened"]


def test_widened_decisions_are_deterministic():
    runs = [decide_all(BAND, widen=4, **TODAY)[0].decisions for _ in range(2)]
    assert [(d["edge"], d["op"], d["feasible_ops"]) for d in runs[0]] == \
        [(d["edge"], d["op"], d["feasible_ops"]) for d in runs[1]]


def test_widen_zero_is_today_s_rule():
    a, cost_a = decide_all(BAND, **TODAY)
    b, cost_b = decide_all(BAND, widen=0, **TODAY)
    assert cost_a == cost_b and [d["feasible_ops"] for d in a.decisions] == [d["feasible_ops"] for d in b.decisions]
    assert not any(d["widened"] for d in b.decisions)


@pytest.mark.parametrize("kw", [{"widen": -1}])
def test_bad_settings_are_refused(kw):
    with pytest.raises(ValueError, match="widen must be >= 0"):
        Progressive(build_supernet(SPACE), tables(), [0], penalty=lambda c: 0.0, band=BAND, **kw)


def test_the_config_and_the_flag_refuse_bad_values_with_the_fix():
    import argparse

    from hilnas.searchers.dca.search import DcaConfig
    from hilnas.searchers.result import Budget
    from hilnas.server.cli.common import CliError
    from hilnas.server.cli.search.dca import DEVICE_DEFAULTS, check_device_options

    with pytest.raises(ValueError, match="lookahead_widen must be >= 0"):
        DcaConfig(budget=Budget("latency_ms", 10.0), lookahead_widen=-1)
    for value in (-1, 7):
        with pytest.raises(CliError, match=f"--lookahead-widen {value}: use 0 \\(off\\) or 1-6"):
            check_device_options(argparse.Namespace(**{**DEVICE_DEFAULTS, "lookahead_widen": value}))
