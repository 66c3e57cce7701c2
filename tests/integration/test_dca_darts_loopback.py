"""DCA-NAS on the DARTS space with a simulated Raspberry Pi 4 in the loop (real gRPC over loopback, real ONNX).

The tiny DARTS space's LUT is measured on the agent; the networks it derives are exported and
benchmarked on the same agent during the search. The nodes are decided in turn, the last on
confirmed measurements: the cell the search returns is the one the last decision measured in the
band, no repair; a fresh export measured in a new call agrees with it within the device's spread.
"""
import random

import numpy as np

import pytest

from loopback import FAST, build_lut, client_for
from hilnas.searchers.cost import CorrectedCost, extremes
from hilnas.searchers.data import DatasetConfig, loaders_for
from hilnas.searchers.dca import DcaConfig, search
from hilnas.searchers.dca.architect import ArchConfig
from hilnas.searchers.dca.darts_nodes import genotype_key
from hilnas.searchers.genotype import Genotype
from hilnas.searchers.result import Budget
from hilnas.searchers.supernet import SupernetOptions
from hilnas.server.model_meta import export_network
from hilnas.server.search.common import cost_model_for
from hilnas.server.store import Store
from testmodels import tiny_space

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
SPACE = tiny_space("darts")


def random_genotype(rng: random.Random) -> Genotype:
    def cell():
        out = []
        for node in range(2, SPACE.steps + 2):
            for src in sorted(rng.sample(range(node), 2)):
                out.append((rng.choice([o for o in SPACE.ops if o != "none"]), src))
        return tuple(out)
    full = tuple(range(2, SPACE.steps + 2))
    return Genotype(cell(), full, cell(), full)


def test_the_nodes_decided_with_the_device_in_the_loop_land_in_the_band_without_repair(tmp_path, sim_agent):
    client = client_for(sim_agent)
    with Store.open(tmp_path / "ws") as store:
        build_lut(store, client, SPACE)
        base, _ = cost_model_for(store, "pi", "latency_ms")

    def measure(g, seed=0) -> float:
        r = client.benchmark(export_network(SPACE, g, seed=seed), config=FAST)
        assert r.status.measured, r.error
        return r.latency.median_ms
    # the tiny networks measure far from their LUT sum on the simulated Pi: a correction, as `hilnas fidelity` fits
    rng = random.Random(0)
    sample = [random_genotype(rng) for _ in range(8)]
    fit = np.polyfit([base.genotype_cost(SPACE, g) for g in sample], [measure(g) for g in sample], 1)
    cost = CorrectedCost(base, float(fit[0]), float(fit[1]))
    ex = extremes(SPACE, cost)
    budget = ex.cheapest_cost + 0.5 * (ex.dearest_cost - ex.cheapest_cost)
    _, data = loaders_for(DatasetConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_classes=4,
                                        synthetic_train=128, synthetic_test=32, val_fraction=0.5, batch_size=16))
    r = search(SPACE, cost, DcaConfig(budget=Budget("latency_ms", budget), epochs=3, options=SupernetOptions(bottleneck=2),
                                      arch=ArchConfig(warmup_epochs=1)), seed=0, data=data, measure=measure)
    last = r.extra["decisions"][-1]
    assert not r.repaired and r.genotype == r.derived_genotype, (budget, last)
    assert last["on_device"] and r.extra["decided_on_device"] == 1 and not last["fallback"]
    confirmed = r.extra["cells_measured_on_device"][genotype_key(r.genotype)]
    assert 0.9 * budget <= confirmed <= budget
    assert r.extra["device"]["derived_cost"] == confirmed   # the loop's figure is the confirmed median
    fresh = measure(r.genotype, seed=1)                     # a new export, a new call: not a measurement it chose with
    assert fresh == pytest.approx(confirmed, rel=0.05)
