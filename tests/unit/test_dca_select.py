"""``DcaConfig.select = "auto"`` (the default): NB201's edges decided by the supernet's score, every other space by
the alphas; an explicit rule wins; the search records the rule it ran."""
import pytest

from hilnas.searchers.cost import extremes
from hilnas.searchers.data import DatasetConfig, loaders_for
from hilnas.searchers.dca import DcaConfig, search
from hilnas.searchers.dca.architect import ArchConfig
from hilnas.searchers.dca.select import SELECT_CHOICES, resolve_select
from hilnas.searchers.result import Budget
from hilnas.searchers.spaces import create_space
from hilnas.searchers.supernet import SupernetOptions
from testmodels import tiny_space
from test_dca_search import lut_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NB201, DARTS = tiny_space("nb201"), tiny_space("darts")
FAST = dict(epochs=2, options=SupernetOptions(bottleneck=2), arch=ArchConfig(lr=0.05), select_batches=2)


def fresh_data():   # new loaders per search: their shuffling generators advance with every pass
    return loaders_for(DatasetConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_classes=4,
                                     synthetic_train=192, synthetic_test=32, val_fraction=0.5, batch_size=16))[1]


def searched(space, seed, **select):
    """A small search of ``space`` at the middle of its cost range, with ``select`` if given (else the default)."""
    model = lut_model(space)
    ex = extremes(space, model)
    budget = Budget("latency_ms", ex.cheapest_cost + 0.5 * (ex.dearest_cost - ex.cheapest_cost))
    return search(space, model, DcaConfig(budget=budget, **FAST, **select), seed=seed, data=fresh_data())


def test_auto_resolves_per_space_and_an_explicit_rule_wins():
    assert DcaConfig(budget=Budget("latency_ms", 1.0)).select == "auto"
    assert resolve_select("auto", NB201) == "perturbation"
    assert resolve_select("auto", create_space("nb201")) == "perturbation"   # the full-size space alike
    assert resolve_select("auto", DARTS) == "alpha"
    for space in (NB201, DARTS):
        assert [resolve_select(s, space) for s in ("alpha", "perturbation")] == ["alpha", "perturbation"]
    assert SELECT_CHOICES == ("auto", "alpha", "perturbation")
    with pytest.raises(ValueError, match="select must be one of auto, alpha, perturbation, got 'magnitude'"):
        resolve_select("magnitude", NB201)


@pytest.mark.slow
def test_the_default_on_nb201_runs_the_perturbation_rule_and_records_it():
    auto, explicit, alpha = searched(NB201, 1), searched(NB201, 1, select="perturbation"), \
        searched(NB201, 1, select="alpha")
    assert (auto.extra["select"], auto.extra["select_requested"]) == ("perturbation", "auto")
    assert (explicit.extra["select"], explicit.extra["select_requested"]) == ("perturbation", "perturbation")
    assert (alpha.extra["select"], alpha.extra["select_requested"]) == ("alpha", "alpha")
    # the mechanism, not only the label: the default's decisions are the explicit rule's, scores and all
    assert auto.extra["select_evals"] > 0 and alpha.extra["select_evals"] == 0
    assert [(d["edge"], d["op"], d["select"], d.get("perturbation")) for d in auto.extra["decisions"]] == \
        [(d["edge"], d["op"], d["select"], d.get("perturbation")) for d in explicit.extra["decisions"]]
    assert auto.genotype == explicit.genotype
    assert any(d["select"] == "perturbation" for d in auto.extra["decisions"])
    assert all(d["select"] == "alpha" for d in alpha.extra["decisions"])
    assert auto.to_dict()["extra"]["select"] == "perturbation"   # in the record a run stores


@pytest.mark.slow
def test_the_default_elsewhere_is_the_alphas():
    auto, alpha = searched(DARTS, 0), searched(DARTS, 0, select="alpha")
    assert (auto.extra["select"], auto.extra["select_requested"]) == ("alpha", "auto")
    assert auto.genotype == alpha.genotype and auto.multiplier_history == alpha.multiplier_history
