"""A search reports its progress through the training loop: every weight step, with the epoch, the
loss, and what its hooks know (DCA's multiplier and cost against the budget; the hypernetwork's lambda)."""
from __future__ import annotations

import zlib

import pytest

from hilnas.searchers.cost import LutLatencyCost, extremes
from hilnas.searchers.data import DatasetConfig, loaders_for
from hilnas.searchers.dca import DcaConfig, search
from hilnas.searchers.hypernet import HypernetConfig
from hilnas.searchers.hypernet import search as hypernet_search
from hilnas.searchers.op_key import enumerate_op_keys
from hilnas.searchers.result import Budget
from hilnas.searchers.train import reporting_to
from testmodels import tiny_space

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SPACE = tiny_space("nb201")


@pytest.fixture(scope="module")
def data():
    return loaders_for(DatasetConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_classes=4,
                                     synthetic_train=96, synthetic_test=32, val_fraction=0.5, batch_size=16))[1]


def lut():
    return LutLatencyCost({k.encode(): 0.05 + zlib.crc32(k.encode().encode()) % 1000 / 1000.0
                           for k in enumerate_op_keys(SPACE)})


def test_dca_reports_every_step_with_its_multiplier_and_cost_against_the_budget(data) -> None:
    model = lut()
    ex = extremes(SPACE, model)
    budget = Budget("latency_ms", ex.cheapest_cost + 0.2 * (ex.dearest_cost - ex.cheapest_cost))
    events = []
    with reporting_to(events.append):
        search(SPACE, model, DcaConfig(budget=budget, epochs=2), data=data)
    steps = [e for e in events if e.kind == "step"]
    per_epoch = len(data.train)
    assert len(steps) == 2 * per_epoch and [e.global_step for e in steps] == list(range(1, 2 * per_epoch + 1))
    assert all(e.epochs == 2 and e.steps_per_epoch == per_epoch for e in events)
    assert [e.kind for e in events].count("epoch") == 2
    last = steps[-1].metrics
    assert set(last) == {"multiplier", "cost", "budget"} and last["budget"] == budget.value and last["multiplier"] >= 0
    assert ex.cheapest_cost <= last["cost"] <= ex.dearest_cost
    events.clear()
    search(SPACE, model, DcaConfig(budget=budget, epochs=1), data=data)  # outside the block: nothing reported
    assert events == []


def test_the_hypernetwork_reports_its_lambda_once_the_warm_up_ends(data) -> None:
    events = []
    with reporting_to(events.append):
        result = hypernet_search(SPACE, lut(), HypernetConfig(epochs=2, Lambda=0.5), data=data)
    scales = [e.metrics for e in events if e.kind == "step" and e.metrics]
    assert scales and all(m["Lambda"] == result.Lambda and 0 <= m["scale"] <= result.Lambda for m in scales)
    assert not events[0].metrics  # the warm-up trains the weights alone
