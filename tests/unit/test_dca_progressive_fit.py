"""The device predictor fitted before the decisions narrow the cell (``Progressive.fit_sample``,
``searchers/dca/progressive.py``), on the constructed cell of ``test_dca_progressive`` (3x3 conv 10, 1x1 conv 1,
the rest 0; band [20, 30]).

The fake device runs a live 3x3 conv at 16, not 10: a per-op error no ratio of one network captures. Deciding on
the prediction (ratio 1) fixes four edges whose 25 completions all measure out of the band, and reopening one
earlier decision (today's backtracking) finds none either: the cell lands at 32. Measuring 12 cells near the band
before the first decision and fitting the per-(edge, op) correction on them, the decisions on the prediction see
the 3x3 conv's true price and the cell lands in the band, with no reopening.
"""
import math

import pytest
import torch

from hilnas.searchers.cost import nb201_cells
from hilnas.searchers.dca.progressive import Progressive
from hilnas.searchers.genotype import NB201Genotype
from hilnas.searchers.supernet import build_supernet
from test_dca_progressive import BAND, SPACE, Device, decide_all, predicted

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CELLS = nb201_cells(SPACE.ops)
ROW = {tuple(a): i for i, a in enumerate(CELLS.arch.tolist())}


class PerOp(Device):
    """A fake device on which each live edge of an op costs ``extra[op]`` more than the LUT says."""

    def __init__(self, extra: dict[str, float]):
        super().__init__(1.0)
        self.extra = extra

    def __call__(self, genotype) -> float:
        self.calls.append(genotype.arch_str)
        live = CELLS.live[ROW[tuple(SPACE.ops.index(o) for o in genotype.ops)]]
        return predicted(genotype.ops) + sum(self.extra.get(o, 0.0) for o, ok in zip(genotype.ops, live) if ok)


def final(p: Progressive) -> NB201Genotype:
    return NB201Genotype(tuple(SPACE.ops[p.model.fixed["cell"][e]] for e in range(len(SPACE.edges))))


SLOW_3X3 = {"nor_conv_3x3": 6.0}


def test_a_per_op_error_strands_the_ratio_and_the_reopening_and_the_fitted_predictor_lands_in_the_band():
    device = PerOp(SLOW_3X3)
    today, _ = decide_all(BAND, measure=device, reopen=3, reopen_measurements=75)
    stranded = device(final(today))
    assert stranded > BAND[1] and today.decisions[-2]["fallback"]   # stranded, and no reopening landed
    assert not any(t["landed"] for t in today.reopened)
    assert not today.fits and all(d["predictor"] == "ratio" for d in today.decisions)

    device = PerOp(SLOW_3X3)
    p, _ = decide_all(BAND, measure=device, fit_sample=12)
    assert BAND[0] <= device(final(p)) <= BAND[1]
    assert not any(d["fallback"] for d in p.decisions) and not p.reopened
    first = p.fits[0]
    assert first["used"] and first["cells"] == 12 and first["loo_rel_rmse"] < first["ratio_rel_rmse"]
    assert all(d["predictor"] == "fitted" for d in p.decisions[:4])
    # bounded and recorded: 12 cells before the first decision, then the 25 + 5 cells of the decisions on the device
    assert len(p.fit_sampled) == 12 == len(set(p.fit_sampled))
    assert device.calls[:12] == p.fit_sampled
    assert len(set(device.calls[:-1])) <= 12 + 25 + 5


def test_the_fit_learns_the_op_s_price_and_predicts_unmeasured_cells():
    device = PerOp(SLOW_3X3)
    p = Progressive(build_supernet(SPACE), tables_(), [0], penalty=lambda c: 0.0, measure=device, band=BAND,
                    fit_sample=12)
    with torch.no_grad():
        p._sample({})
        p.fit_device(0)
    assert p._fit is not None
    arch, live = torch.as_tensor(CELLS.arch), torch.as_tensor(CELLS.live)
    truth = p.costs + 6.0 * ((arch == SPACE.ops.index("nor_conv_3x3")) & live).sum(1)   # the device, every cell
    unmeasured = torch.as_tensor(CELLS.valid).clone()
    for a in p.fit_sampled:
        unmeasured[ROW[tuple(SPACE.ops.index(o) for o in NB201Genotype.from_arch_str(a).ops)]] = False
    fit_error = (p._fit - truth)[unmeasured].abs().median()
    ratio_error = (p.costs - truth)[unmeasured].abs().median()   # the prediction at ratio 1
    assert ratio_error == 6.0 and fit_error < 1.0   # a 3x3 conv's error is 6: the fit learned most of it


def test_the_fit_is_not_used_where_it_predicts_no_better_than_the_ratio():
    device = Device(1.3)   # a pure ratio: the per-op terms add nothing, the ratio (scale) is exact
    p = Progressive(build_supernet(SPACE), tables_(), [0], penalty=lambda c: 0.0, measure=device, band=BAND,
                    fit_sample=12, scale=lambda: 1.3)
    with torch.no_grad():
        p._sample({})
        p.fit_device(0)
    assert p._fit is None and p.fits and not p.fits[0]["used"]


def test_reopening_when_the_measured_cells_lie_only_within_the_spread_of_the_band_s_edge():
    p = Progressive(build_supernet(SPACE), tables_(), [0], penalty=lambda c: 0.0, band=BAND, reopen_sigmas=1.0)
    p.samples = {"a": [10.0, 10.4, 9.6], "b": [20.0, 20.8, 19.2], "c": [5.0, 5.2, 4.8]}
    lo, hi = p._reopen_band()
    m = 1.0 * p.spread() * BAND[1]
    assert (lo, hi) == pytest.approx((BAND[0] + m, BAND[1] - m)) and m > 0
    assert p._in_band({"x": 20.5}, BAND) and not p._in_band({"x": 20.5}, (lo, hi))   # near the edge: reopen
    off = Progressive(build_supernet(SPACE), tables_(), [0], penalty=lambda c: 0.0, band=BAND)
    off.samples = p.samples
    assert off._reopen_band() == BAND


@pytest.mark.parametrize("kw", [{"fit_sample": -1}, {"reopen_sigmas": -0.5}])
def test_bad_settings_are_refused(kw):
    with pytest.raises(ValueError, match="fit_sample and reopen_sigmas must be >= 0"):
        Progressive(build_supernet(SPACE), tables_(), [0], penalty=lambda c: 0.0, **kw)


def tables_():
    from test_dca_progressive import tables
    return tables()


def test_no_device_no_fit():
    p, cost = decide_all(BAND, fit_sample=12)
    assert not p.fit_sampled and not p.fits and math.isfinite(cost)


@pytest.mark.parametrize("flag,value", [("device_fit_sample", -1), ("device_reopen_sigmas", -0.5)])
def test_the_flags_refuse_bad_values_with_the_fix(flag, value):
    import argparse

    from hilnas.server.cli.common import CliError
    from hilnas.server.cli.search.dca import DEVICE_DEFAULTS, check_device_options

    with pytest.raises(CliError, match=f"--{flag.replace('_', '-')} {value}: use .* e.g. "
                                       f"--{flag.replace('_', '-')} {DEVICE_DEFAULTS[flag]}"):
        check_device_options(argparse.Namespace(**{**DEVICE_DEFAULTS, flag: value}))


@pytest.mark.parametrize("field", ["device_fit_sample", "device_reopen_sigmas"])
def test_the_config_refuses_negative_values(field):
    from hilnas.searchers.dca.search import DcaConfig
    from hilnas.searchers.result import Budget

    with pytest.raises(ValueError, match="device_fit_sample and device_reopen_sigmas must be >= 0"):
        DcaConfig(budget=Budget("latency_ms", 10.0), **{field: -1})
