"""Backtracking on the device, the margin from the measured spread and the one-shot choice among confirmed cells
(``searchers/dca/progressive.py``), on the constructed cell of ``test_dca_progressive`` (3x3 conv 10, 1x1 conv 1,
the rest 0; band [20, 30]).

The fake device adds 12 to every cell's prediction: the decisions on the prediction (ratio 1) fix four edges whose 25
completions measure 22 + 12 .. and none in the band, so the decision on the device has nothing to choose from and the
cell measures 32. Reopening the previous decision, predicted through the correction refitted on those 25 cells
(exactly +12 here), finds another op whose completions land in the band, measures them, and the cell lands.
"""
import math

import pytest

from hilnas.searchers.dca.progressive import Progressive
from hilnas.searchers.genotype import NB201Genotype
from hilnas.searchers.supernet import build_supernet
from test_dca_progressive import BAND, SPACE, Device, Scattering, decide_all, predicted, tables

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Offset(Device):
    """A fake device 12 slower than predicted on every cell: a per-cell error no ratio of one network captures."""

    def __call__(self, genotype) -> float:
        self.calls.append(genotype.arch_str)
        return predicted(genotype.ops) + 12.0


def final(p: Progressive) -> NB201Genotype:
    return NB201Genotype(tuple(SPACE.ops[p.model.fixed["cell"][e]] for e in range(len(SPACE.edges))))


def test_measured_completions_with_none_in_the_band_strand_the_decision_and_reopening_the_previous_one_lands():
    stuck, cost = decide_all(BAND, measure=Offset(1.0), reopen=0)
    assert cost + 12 > BAND[1] and stuck.decisions[-2]["fallback"] and not stuck.reopened
    device = Offset(1.0)
    p, cost = decide_all(BAND, measure=device, reopen=3, reopen_measurements=75)
    assert BAND[0] <= cost + 12 <= BAND[1] and not any(d["fallback"] for d in p.decisions)
    (tried,) = p.reopened
    reopened = [d for d in p.decisions if "reopened_to" in d]
    assert tried["landed"] and len(reopened) == 1 and reopened[0]["edge"] == tried["edge"]
    assert reopened[0] is p.decisions[3]   # the previous decision, not an earlier one
    assert final(p).ops[tried["edge"]] == tried["to"] != tried["from"]
    assert tried["refit"] == pytest.approx([1.0, 12.0])   # the correction refitted on the 25 cells measured
    assert p.decisions[-2]["reopened"] == [tried]
    # bounded and counted: the reopening's measurements are device calls beyond the first 25
    assert tried["measurements"] == p.reopen_used == len(device.calls) - 25 <= 75


def test_reopening_is_bounded_by_its_measurements():
    # a try needs 24 new measurements at the penultimate decision (two undecided edges), at most 5 at the last
    p, _ = decide_all(BAND, measure=Offset(1.0), reopen=3, reopen_measurements=20)
    assert p.decisions[-2]["fallback"] and not p.decisions[-2]["reopened"]   # 24 > 20: not tried
    assert all(t["arch_step"] == 5 and t["measurements"] <= 5 for t in p.reopened)
    assert p.reopen_used == sum(t["measurements"] for t in p.reopened) <= 20
    none, cost = decide_all(BAND, measure=Offset(1.0), reopen=3, reopen_measurements=0)
    assert not none.reopened and none.reopen_used == 0 and cost + 12 > BAND[1]


def test_the_margin_follows_the_measured_spread_of_the_confirmations():
    # every cell's measurements run 1.0, 1.04, 0.96 x its cost: one measurement's sd is 4 % of it
    device = Scattering(0.5, (1.0, 1.04, 0.96))
    p, _ = decide_all(BAND, measure=device, repeats=3, window=5.0, margin=1.0, margin_sigmas=1.5)
    assert p.spread() == pytest.approx(0.04)
    assert p.decisions[-1]["margin"] == pytest.approx(1.5 * 0.04 * math.sqrt(1 + 1 / 3) * BAND[1])
    fixed, _ = decide_all(BAND, measure=Scattering(0.5, (1.0, 1.04, 0.96)), repeats=3, window=5.0, margin=1.0)
    assert fixed.decisions[-1]["margin"] == 1.0   # margin_sigmas 0: the fixed margin
    once, _ = decide_all(BAND, measure=Device(0.5), margin=1.0, margin_sigmas=1.5)
    assert once.spread() is None and once.decisions[-1]["margin"] == 1.0   # nothing confirmed: the fixed margin


def test_among_the_confirmed_cells_in_the_band_the_last_decisions_choose_by_one_shot_accuracy():
    def accuracy(g: NB201Genotype) -> float:   # a supernet that likes 1x1 convs, then pooling
        return g.ops.count("nor_conv_1x1") + 0.1 * g.ops.count("avg_pool_3x3")

    by_cost, _ = decide_all(BAND, measure=Device(0.5))
    p, cost = decide_all(BAND, measure=Device(0.5), accuracy=accuracy)
    assert BAND[0] <= 0.5 * cost <= BAND[1]
    penultimate = p.decisions[-2]["oneshot"]
    assert len(penultimate) > 1
    assert all(BAND[0] <= p.measured[a] <= BAND[1] for a in penultimate)   # only cells measured in the band
    assert accuracy(final(p)) == max(penultimate.values())
    assert accuracy(final(p)) > accuracy(final(by_cost))   # the Lagrangian alone took another cell


def test_bad_settings_are_refused():
    for kw in ({"reopen": -1}, {"reopen_measurements": -1}, {"margin_sigmas": -0.5}):
        with pytest.raises(ValueError, match="must be >= 0"):
            Progressive(build_supernet(SPACE), tables(), [0], penalty=lambda c: 0.0, **kw)


def test_the_one_shot_scorer_evaluates_the_cell_on_the_validation_loader_and_leaves_the_decided_edges_as_they_were():
    import torch

    from hilnas.searchers.data import DatasetConfig, loaders_for
    from hilnas.searchers.dca.bilevel import _oneshot

    _, data = loaders_for(DatasetConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_classes=4,
                                        synthetic_train=64, synthetic_test=32, val_fraction=0.5, batch_size=16))
    model = build_supernet(SPACE)
    model.fixed["cell"][2] = 1
    assert _oneshot(model, data, 0) is None   # 0 batches: the choice stays the Lagrangian's
    score = _oneshot(model, data, 2)
    a = NB201Genotype(("nor_conv_3x3",) * 6)
    b = NB201Genotype(("skip_connect",) * 6)
    acc_a, acc_b = score(a), score(b)
    assert 0.0 <= acc_a <= 1.0 and model.fixed["cell"] == {2: 1}
    # the same batches each time, the cell's ops alone: a cell scores what the supernet with its ops fixed scores
    assert score(a) == acc_a
    model.fixed["cell"].clear()
    model.fixed["cell"].update({e: SPACE.ops.index(o) for e, o in enumerate(b.ops)})
    from hilnas.searchers.train import evaluate
    assert evaluate(model, data.val, max_batches=2)[1] == acc_b
    assert torch.is_grad_enabled()


def test_the_new_device_flags_refuse_bad_values_with_the_fix():
    import argparse

    from hilnas.server.cli.common import CliError
    from hilnas.server.cli.search.dca import DEVICE_DEFAULTS, check_device_options

    for flag, value in (("device_reopen", -1), ("device_reopen_measurements", -5), ("device_margin_sigmas", -1.0),
                        ("device_oneshot_batches", -1)):
        args = argparse.Namespace(**{**DEVICE_DEFAULTS, flag: value})
        with pytest.raises(CliError, match=f"--{flag.replace('_', '-')} {DEVICE_DEFAULTS[flag]}"):
            check_device_options(args)
    check_device_options(argparse.Namespace(**DEVICE_DEFAULTS))
