"""NAS-Bench-201 ground truth for the search-quality benchmark: every cell's accuracy and simulated latency.

- ``read_accuracy(path)``: the NATS-Bench 200-epoch CIFAR-10 test accuracy of all 15,625 cells
  (``/work/shared/data/nb201_cifar10_accuracy.csv``, see PROVENANCE.md: v-tao/nats-bench-landscape,
  exported from NATS-Bench's topology benchmark), keyed by arch_str.
- ``simulated_latencies(profiles)``: the noise-free latency of every cell's network *as hilnas
  deploys it* (C=16, N=5, 32x32) on the simulated devices, from the device model of
  ``hilnas.agent.sim`` used as a library. Cells that compute the same network (they differ only
  in edges that ``none`` edges leave dead) are costed once: 9,444 networks for the 15,284 cells
  whose output depends on their input. The 341 cells cut off from their input predict a constant
  (10 % in the table) and are left out.
- ``Oracle``: the best table accuracy among the cells within a latency budget, and the Pareto front.
"""
from __future__ import annotations

import bisect
import csv
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ACCURACY_CSV = DATA / "nb201_cifar10_accuracy.csv"
CIFAR_SUBSET = DATA / "cifar10-subset"


class InputError(ValueError):
    """A benchmark input that is missing or malformed: one line naming it and the fix (exit code 2)."""


def read_accuracy(path: Path) -> dict[str, float]:
    """arch_str -> CIFAR-10 test accuracy (%) of all 15,625 cells; InputError when the table is missing or short."""
    fix = ("pass --accuracy-table PATH (the file is /work/shared/data/nb201_cifar10_accuracy.csv; "
           "its source is in /work/shared/data/PROVENANCE.md)")
    if not path.is_file():
        raise InputError(f"the NB201 accuracy table {path} does not exist; {fix}")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        column = "cifar10_test_acc_200ep"
        if not reader.fieldnames or "arch_str" not in reader.fieldnames or column not in reader.fieldnames:
            raise InputError(f"{path} has no arch_str and {column} columns (found {reader.fieldnames}); {fix}")
        table = {r["arch_str"]: float(r[column]) for r in reader}
    if len(table) != 15625:
        raise InputError(f"{path} has {len(table)} cells, not all 15,625 of NAS-Bench-201; {fix}")
    return table


def check_data_dir(path: Path) -> Path:
    """The CIFAR-10 subset folder, or InputError naming the files it lacks."""
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    fix = "pass --data-dir PATH (the subset is /work/shared/data/cifar10-subset, see PROVENANCE.md)"
    if not path.is_dir():
        raise InputError(f"the CIFAR-10 folder {path} does not exist; {fix}")
    missing = [n for n in names if not (path / n).is_file() and not (path / f"{n}.gz").is_file()]
    if missing:
        raise InputError(f"the CIFAR-10 folder {path} lacks {', '.join(missing)} (raw or .gz); {fix}")
    return path


# -- simulated latency of every cell -----------------------------------------------------------------
def live_form(ops: tuple[str, ...]) -> tuple[str, ...]:
    """The cell with its dead edges set to ``none``: cells with the same live form build the same network."""
    from hilnas.searchers.genotype import NB201Genotype
    from hilnas.searchers.op_key import nb201_cell_wiring

    _, wiring = nb201_cell_wiring(NB201Genotype(ops))
    return tuple(op if ok else "none" for op, ok in zip(ops, wiring.live))


def deployed_profile(name: str):
    """The simulated device's profile, pricing the graph as hilnas deploys it: the ONNX exporter merges
    identical nodes (two pools of one input), so they run once (``cse = true``)."""
    import dataclasses

    from hilnas.agent.sim.profile import load_profile

    p = load_profile(name)
    return dataclasses.replace(p, compute=dataclasses.replace(p.compute, cse=True))


def simulated_latencies(profiles: tuple[str, ...], *, workers: int = 2, progress=print) -> dict[str, dict[str, float]]:
    """profile -> {arch_str: noise-free simulated latency (ms)} for every cell connected to its input.

    Each cell's network is built without torch (``agent.sim.nb201.nb201_onnx`` of its live form,
    so edges ``none`` leaves dead are not computed, as ``build_network`` leaves them out) and
    priced with ``deployed_profile``. On 40 random cells this is 0.1-0.9 % (median 0.3 %) below
    the simulated latency of hilnas's own export (docs/performance.md). The analysed graphs are
    cached by ``agent.sim.calibrate.nb201_tables`` under ~/.cache/hilnas.
    """
    from hilnas.agent.sim.calibrate import Design, default_cache_dir, nb201_tables
    from hilnas.searchers.cost import _nb201_connected
    from hilnas.searchers.genotype import NB201_NUM_ARCHS, NB201Genotype

    cells = [NB201Genotype.from_index(i) for i in range(NB201_NUM_ARCHS)]
    cells = [g for g in cells if _nb201_connected(g.ops)]
    live = {g.arch_str: NB201Genotype(live_form(g.ops)).arch_str for g in cells}
    forms = sorted(set(live.values()))
    progress(f"oracle: {len(forms)} distinct NB201 networks for {len(cells)} cells (graphs analysed once, cached "
             f"in {default_cache_dir()})")
    nodes, tables = nb201_tables(forms, cache=default_cache_dir(), workers=workers)
    out = {}
    for name in profiles:
        profile = deployed_profile(name)
        lat = Design(nodes, [tables[f] for f in forms], profile).latencies_ms(profile)
        by_form = dict(zip(forms, (float(x) for x in lat)))
        out[name] = {a: by_form[f] for a, f in live.items()}
    return out


# -- the oracle ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Oracle:
    """Table accuracy against simulated latency for one device: the best cell within any budget."""
    accuracy: dict[str, float]      # arch_str -> accuracy (%)
    latency: dict[str, float]       # arch_str -> simulated latency (ms); cells cut off from their input absent

    def __post_init__(self) -> None:
        pts = sorted((self.latency[a], -self.accuracy[a], a) for a in self.latency)
        front, best = [], -1.0
        for lat, neg, a in pts:
            if -neg > best:
                best = -neg
                front.append((lat, -neg, a))
        object.__setattr__(self, "_front", tuple(front))

    @property
    def front(self) -> tuple[tuple[float, float, str], ...]:
        """The Pareto front: (latency, accuracy, arch_str), latency ascending, each more accurate than all cheaper."""
        return self._front  # type: ignore[attr-defined]

    def best_within(self, budget_ms: float) -> tuple[float, str] | None:
        """(accuracy, arch_str) of the most accurate cell whose simulated latency is within the budget."""
        i = bisect.bisect_right([f[0] for f in self.front], budget_ms)
        return (self.front[i - 1][1], self.front[i - 1][2]) if i else None

    def regret(self, arch_str: str, budget_ms: float) -> float:
        """Best accuracy within the budget minus the cell's own (points)."""
        best = self.best_within(budget_ms)
        if best is None:
            raise ValueError(f"no cell is within {budget_ms} ms")
        return best[0] - self.accuracy[arch_str]

    def range(self) -> tuple[float, float]:
        return min(self.latency.values()), max(self.latency.values())
