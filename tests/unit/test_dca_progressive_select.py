"""The edges decided by the supernet's accuracy (``Progressive(select="perturbation")``, DARTS-PT), on the constructed
cell of ``test_dca_progressive``: the alphas prefer the 3x3 conv on every edge, the band [20, 30] holds cells of two
3x3 convs and some 1x1 convs. A supernet whose validation score rises with the 1x1 convs fixed in the cell (the op
with the lower alpha fits better): the perturbation rule takes them, the alpha rule does not; a supernet that scores
the 3x3 conv best everywhere: the look-ahead still keeps the cell in the band (an infeasible op is never taken)."""
import pytest
import torch

from hilnas.searchers.dca.progressive import Progressive
from hilnas.searchers.genotype import NB201Genotype
from hilnas.searchers.supernet import build_supernet
from test_dca_progressive import BAND, PREFERENCE, SPACE, predicted, tables

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CONV1, CONV3 = SPACE.ops.index("nor_conv_1x1"), SPACE.ops.index("nor_conv_3x3")


class Scorer:
    """A supernet's validation (log-likelihood, accuracy) with the given edges fixed: ``gain`` per edge fixed to
    ``op``; records every call."""

    def __init__(self, op: int, gain: float = 0.1):
        self.op, self.gain, self.calls = op, gain, []

    def __call__(self, fixed: dict[int, int]) -> tuple[float, float]:
        self.calls.append(dict(fixed))
        n = sum(o == self.op for o in fixed.values())
        return -2.3 + self.gain * n, 0.1 + 0.05 * n


def decide(select: str, scorer=None, seed: int = 0) -> tuple[Progressive, tuple[str, ...]]:
    torch.manual_seed(seed)
    model = build_supernet(SPACE)
    with torch.no_grad():
        model.alphas["cell"].copy_(torch.tensor([[PREFERENCE[o] for o in SPACE.ops]] * len(SPACE.edges)))
    p = Progressive(model, tables(), list(range(len(SPACE.edges))), penalty=lambda cost: 0.0,
                    within=lambda cost: cost <= BAND[1], band=BAND, select=select, supernet_score=scorer)
    p.after_step(len(SPACE.edges) - 1)
    return p, tuple(SPACE.ops[model.fixed["cell"][e]] for e in range(len(SPACE.edges)))


def test_the_op_that_fits_better_with_the_lower_alpha_is_taken_by_perturbation_not_by_alpha():
    by_alpha, alpha_cell = decide("alpha")
    scorer = Scorer(CONV1)
    by_score, score_cell = decide("perturbation", scorer)
    assert by_alpha.decisions[0]["op"] == "nor_conv_3x3" and by_alpha.decisions[0]["select"] == "alpha"
    first = by_score.decisions[0]
    assert first["select"] == "perturbation" and first["op"] == "nor_conv_1x1"
    # every feasible op of every undecided edge was scored with that edge fixed to it, the others mixed
    assert set(first["perturbation"]) == set(range(len(SPACE.edges)))
    n = sum(len(ops) for ops in first["perturbation"].values())
    assert n > len(SPACE.edges) and all(len(c) == 1 for c in scorer.calls[:n]) and len(scorer.calls[n]) == 2
    assert max(first["perturbation"][first["edge"]].items(), key=lambda kv: kv[1])[0] == "nor_conv_1x1"
    assert score_cell.count("nor_conv_1x1") > alpha_cell.count("nor_conv_1x1")
    assert BAND[0] <= predicted(score_cell) <= BAND[1] and BAND[0] <= predicted(alpha_cell) <= BAND[1]
    assert by_score.select_evals == len(scorer.calls) > 0 and by_score.select_s > 0
    assert by_alpha.select_evals == 0


def test_an_op_the_look_ahead_excludes_is_never_taken_however_well_it_scores():
    scorer = Scorer(CONV3, gain=5.0)   # the 3x3 conv on all six edges (60) would be far over the band
    p, cell = decide("perturbation", scorer)
    assert BAND[0] <= predicted(cell) <= BAND[1]
    assert all(d["op"] in d["feasible_ops"] for d in p.decisions)
    excluded = [d for d in p.decisions if "nor_conv_3x3" not in d["feasible_ops"]]
    assert excluded and all(d["op"] != "nor_conv_3x3" for d in excluded)
    # the chosen edge's scored ops are its feasible ops, no others
    scored = [d for d in p.decisions if d["edge"] in d.get("perturbation", {})]
    assert scored and all(set(d["perturbation"][d["edge"]]) == set(d["feasible_ops"]) for d in scored)


def test_the_decisions_are_deterministic_given_the_seed():
    a, cell_a = decide("perturbation", Scorer(CONV1), seed=3)
    b, cell_b = decide("perturbation", Scorer(CONV1), seed=3)
    assert cell_a == cell_b
    assert [(d["edge"], d["op"], d.get("perturbation")) for d in a.decisions] == \
        [(d["edge"], d["op"], d.get("perturbation")) for d in b.decisions]


def test_perturbation_without_a_scorer_or_an_unknown_rule_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="needs supernet_score"):
        Progressive(build_supernet(SPACE), tables(), [0], penalty=lambda c: 0.0, select="perturbation")
    with pytest.raises(ValueError, match="select must be one of alpha, perturbation"):
        Progressive(build_supernet(SPACE), tables(), [0], penalty=lambda c: 0.0, select="magnitude")
    from hilnas.searchers.dca.search import DcaConfig
    from hilnas.searchers.result import Budget
    with pytest.raises(ValueError, match="select must be 'auto', 'alpha' or 'perturbation'"):
        DcaConfig(budget=Budget("latency_ms", 1.0), select="pt")
    with pytest.raises(ValueError, match="select_batches must be >= 1"):
        DcaConfig(budget=Budget("latency_ms", 1.0), select_batches=0)


def test_the_real_scorer_is_the_supernets_validation_log_likelihood_with_the_edges_fixed_and_restores_them():
    from hilnas.searchers.data import DatasetConfig, loaders_for
    from hilnas.searchers.dca.bilevel import _perturbation
    from hilnas.searchers.train import evaluate

    _, data = loaders_for(DatasetConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_classes=4,
                                        synthetic_train=128, synthetic_test=32, val_fraction=0.5, batch_size=16))
    torch.manual_seed(0)
    model = build_supernet(SPACE)
    model.fixed["cell"][2] = 1
    assert _perturbation(model, data, 0) is None
    score = _perturbation(model, data, 2)
    loglik, acc = score({2: 1, 0: CONV3})
    assert model.fixed["cell"] == {2: 1}   # the decided edges as they were
    assert score({2: 1, 0: CONV3}) == (loglik, acc)   # the same fixed batches each time
    model.fixed["cell"][0] = CONV3
    from torch.utils.data import DataLoader
    loss, acc2 = evaluate(model, DataLoader(data.val.dataset, batch_size=16), max_batches=2)   # the first batches
    assert loglik == pytest.approx(-loss) and acc == acc2
    del model.fixed["cell"][0]
    assert score({2: 1, 0: SPACE.ops.index("none")}) != (loglik, acc)   # the op on the edge matters


@pytest.mark.slow
def test_a_search_with_perturbation_records_its_scores_and_is_reproducible():
    import zlib

    from hilnas.searchers.cost import LutLatencyCost, extremes
    from hilnas.searchers.data import DatasetConfig, loaders_for
    from hilnas.searchers.dca import DcaConfig, search
    from hilnas.searchers.dca.architect import ArchConfig
    from hilnas.searchers.op_key import enumerate_op_keys
    from hilnas.searchers.result import Budget
    from hilnas.searchers.supernet import SupernetOptions

    def data():   # new loaders per search: their shuffling generators advance with every pass
        return loaders_for(DatasetConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_classes=4,
                                         synthetic_train=192, synthetic_test=32, val_fraction=0.5, batch_size=16))[1]
    cost = LutLatencyCost({k.encode(): 0.05 + zlib.crc32(k.encode().encode()) % 1000 / 1000.0
                           for k in enumerate_op_keys(SPACE)})
    ex = extremes(SPACE, cost)
    budget = Budget("latency_ms", ex.cheapest_cost + 0.5 * (ex.dearest_cost - ex.cheapest_cost))
    cfg = DcaConfig(budget=budget, epochs=2, options=SupernetOptions(bottleneck=2), arch=ArchConfig(lr=0.05),
                    select="perturbation", select_batches=2)
    runs = [search(SPACE, cost, cfg, seed=1, data=data()) for _ in range(2)]
    a, b = runs
    assert a.genotype == b.genotype and a.extra["select"] == "perturbation" and a.extra["select_evals"] > 0
    scored = [d for d in a.extra["decisions"] if d["select"] == "perturbation"]
    assert scored and all(d["op"] in d["feasible_ops"] for d in a.extra["decisions"])
    assert [d["perturbation"] for d in scored] == [d["perturbation"] for d in b.extra["decisions"]
                                                   if d["select"] == "perturbation"]
    assert NB201Genotype.from_arch_str(a.genotype.arch_str) == a.genotype


def test_the_parsers_select_values_are_the_searchs():
    from hilnas.searchers.dca.progressive import SELECT
    from hilnas.searchers.dca.select import SELECT_CHOICES
    from hilnas.server.cli.search import dca as cli
    assert cli.SELECT == SELECT and cli.SELECT_CHOICES == SELECT_CHOICES
