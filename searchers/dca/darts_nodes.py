"""DARTS cells derived node by node under the budget: each node's two inputs and ops decided in turn.

Derived once at the end, a DARTS cell's cost is whatever the argmax lands on: the multiplier
holds the *relaxed* cost in the band, but the relaxation (op mixtures, edges kept in proportion
to their strength) is not the cost of the cell the argmax derives, and the benchmark
(docs/performance.md, issue 11) measured the derived networks far from the band. As the NB201
edges are (``progressive.py``), the nodes are decided one at a time at evenly spaced
architecture steps, the last on the last step: node 2, 3, 4, 5 of the normal and the reduction
cell in turn (8 decisions; of the two nodes of one number, the one whose options span the wider
cost range last: the normal cell recurs more often. The last nodes have the most options, 10 input
pairs x 49 op pairs, so the cost left to place is finest there). A decision fixes the node's two edges to their ops and
its other incoming edges to ``none`` (the supernet's ``fixed``): from then on the relaxed cost
the multipliers hold in the band is exact for the decided nodes.

A DARTS network's cost is additive over the nodes: every node sums two edges (one add), node 2
takes both cell inputs, so both preprocessing ops always run, and every node is concatenated
into the output. So the cost of a cell is ``const + sum of its nodes' costs`` (each node: its two
edges' ops priced in every cell of its type), and the relaxed cost given one option of a node is
the current relaxed cost with that node's expected share replaced by the option's exact cost.
Each decision is the Lagrangian's, as on NB201: the option maximising

    log weight(option) - penalty(E[device cost | option])

(weight: the edges' normalised strength times their ops' weights over the non-``none`` ops, as
the derivation ranks them), chosen only among the *feasible* options: those for which some
completion of the undecided nodes lands the network's cost, as the device will show it (the
corrected full-size prediction times the device's measured / predicted ratio), in the band. The
completions are too many to enumerate (~10^9 per cell type), but their costs are a sum set, kept
exactly on a grid of budget x 1e-4 (rounding error <= 8 x half a step). When no option can reach
the band, the nearest are taken (``fallback``, ``miss``).

The look-ahead aims at the band's middle where it can (``MIDDLE``: the band shrunk by 0.4, then
0.25 of its width on each side, then the band itself, the first some option reaches): a decision
that leaves only completions at the band's edge leaves the last one no room for the device.

The last decision is taken on the device, measured as the score will measure it: every
measurement of a network should be a new export (new weights, a new call, a new window: the
searches' ``measure`` does it), so the repeated measurements show the spread a fresh score sees;
repeated calls on one export hide the export's own share of it. The ``shortlist`` best-scoring
options predicted nearest the band's middle are measured (``DeviceFeedback``), each measured again
while its median stays within ``window`` of the band, up to ``repeats`` measurements. From the
confirmations, the spread of one fresh measurement (pooled, relative; ``spread``) and each
network's estimated cost (``estimates``: its median weighed against the prediction at the ratio the
measurements show, by their variances, so the luckiest of several noisy medians is not taken at
face value). A network is *inside* when its estimate lies ``margin_sigmas`` standard deviations of
a fresh measurement inside the band (at most 0.45 of the band's width; ``margin`` before three
networks are confirmed). While none is, more are measured one at a time, the ones predicted at
the middle by the ratio interpolated between the measurements nearest it (``_secant``), until one
is or ``networks`` have been measured in all. The decision keeps the best-scoring network inside;
else the one deepest inside the band in those standard deviations (the likeliest to measure in it
afresh); else the nearest within the budget. The result is still scored afresh after the search by
whoever calls it, never on these measurements. This is how the cell is derived, not a repair:
``repaired`` stays false, and each decision records what constrained it (``measured``,
``repeats``, ``estimated``, ``spread``, ``margin_sigmas``, ``depth``, ``extra_networks``).
"""
from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from hilnas.searchers.cost import CostTables, darts_edge_strength, edge_keep_probability
from hilnas.searchers.dca.progressive import decision_steps
from hilnas.searchers.genotype import Genotype

if TYPE_CHECKING:
    from hilnas.searchers.cost import CostModel
    from hilnas.searchers.dca.feedback import DeviceFeedback
    from hilnas.searchers.supernet import Supernet

GRID = 1e-4   # the sum sets' step, x the budget
# the look-ahead aims at the band shrunk by these fractions of its width on each side, the first some option can
# reach: a decision that leaves only completions at the band's edge leaves the last one no room for the device's spread
MIDDLE = (0.4, 0.25, 0.0)


@dataclass(frozen=True)
class NodeOptions:
    """One node's options: input pairs x op pairs, with their exact cost and edge/op indices."""
    cell: str                      # "normal" / "reduce"
    node: int                      # node number (2 ..)
    edges: np.ndarray              # (n, 2) edge indices
    ops: np.ndarray                # (n, 2) op indices
    cost: np.ndarray               # (n,) the two edges' cost summed over the cells of this type


def genotype_key(g: Genotype) -> str:
    """A short stable name of a DARTS genotype (the record's keys)."""
    return ";".join(f"{t}:" + ",".join(f"{op}~{src}" for op, src in getattr(g, t)) for t in ("normal", "reduce"))


def node_options(space: Any, tables: CostTables) -> tuple[list[NodeOptions], float, dict[str, torch.Tensor]]:
    """Every node's options in decision order, the cost every network has (rest, preprocessing, adds) and
    each cell type's edge prices summed over its cells ((edges, ops))."""
    ops = space.ops
    real = [i for i, o in enumerate(ops) if o != "none"]
    per_type: dict[str, torch.Tensor] = {}
    for c, t in enumerate(tables.cell_types):
        per_type[t] = per_type.get(t, 0) + tables.edge[c]
    const = tables.rest + float(tables.preprocess.sum()) + float(tables.add.sum()) * space.steps
    out = []
    for node in range(2, space.steps + 2):
        idx = [e for e, (_, d) in enumerate(space.edges) if d == node]
        rows = [(e1, e2, o1, o2) for e1, e2 in itertools.combinations(idx, 2) for o1 in real for o2 in real]
        a = np.array(rows, dtype=np.int64)
        for t in dict.fromkeys(tables.cell_types):
            price = per_type[t].numpy()
            out.append(NodeOptions(t, node, a[:, :2], a[:, 2:], price[a[:, 0], a[:, 2]] + price[a[:, 1], a[:, 3]]))
    # node by node; of the two cells' nodes of one number, the one whose options span the wider cost range last
    out.sort(key=lambda o: (o.node, float(np.ptp(o.cost))))
    return out, const, per_type


def sum_set(costs: list[np.ndarray], step: float) -> tuple[np.ndarray, int]:
    """The achievable sums of one choice from each array, as a boolean grid (index i = (offset + i) x step)."""
    grid, offset = np.ones(1, dtype=bool), 0
    for c in costs:
        k = np.rint(c / step).astype(np.int64)
        lo = int(k.min())
        one = np.zeros(int(k.max()) - lo + 1, dtype=bool)
        one[k - lo] = True
        n = len(grid) + len(one) - 1
        size = 1 << (n - 1).bit_length()
        conv = np.fft.irfft(np.fft.rfft(grid.astype(float), size) * np.fft.rfft(one.astype(float), size), size)[:n]
        grid, offset = conv > 0.5, offset + lo   # boolean after every step: counts would swamp the FFT's precision
    return grid, offset


class NodeDecisions:
    """Fixes a DARTS supernet's nodes one at a time at the given architecture steps; see the module docstring.

    ``penalty(cost)``: the Lagrangian's cost term at the current multipliers (device cost);
    ``budget``: B; ``band``: (lo, hi) x B in device cost; ``expected()``: the supernet's relaxed
    cost (predicted); ``feedback``: the device in the loop (None: decide on the prediction only);
    ``shortlist``, ``repeats``, ``window``, ``margin`` (fractions of B), ``margin_sigmas`` (0: ``margin``
    throughout), ``networks`` (the most networks measured in all): the last decision on the device
    (``on_device``: False, or no ``feedback``, decides it on the prediction too).
    """

    def __init__(self, model: Supernet, tables: CostTables, steps: list[int], penalty: Callable[[float], float],
                 budget: float, band: tuple[float, float], expected: Callable[[], torch.Tensor],
                 feedback: DeviceFeedback | None = None, shortlist: int = 5, repeats: int = 3,
                 window: float = 0.05, margin: float = 0.02, on_device: bool = True, margin_sigmas: float = 0.0,
                 networks: int | None = None):
        if "none" not in model.space.ops:
            raise ValueError("deciding DARTS nodes one at a time needs the 'none' op to switch the other edges off")
        networks = 2 * shortlist if networks is None else networks
        if shortlist < 1 or repeats < 1 or window < 0 or margin < 0 or margin_sigmas < 0 or networks < shortlist:
            raise ValueError(f"shortlist and repeats must be >= 1, window, margin and margin_sigmas >= 0, networks "
                             f">= shortlist; got {shortlist}, {repeats}, {window}, {margin}, {margin_sigmas}, "
                             f"{networks}")
        self.model, self.space, self.steps, self.penalty = model, model.space, sorted(steps), penalty
        self.budget, self.band, self.expected, self.feedback = budget, band, expected, feedback
        self.shortlist, self.repeats, self.window, self.margin = shortlist, repeats, window, margin
        self.margin_sigmas, self.networks = margin_sigmas, networks
        self.on_device = on_device and feedback is not None
        self.options, self.const, self.price = node_options(self.space, tables)
        self.none = self.space.ops.index("none")
        self.real = [i for i, o in enumerate(self.space.ops) if o != "none"]
        self.chosen: dict[int, int] = {}          # slot -> option row
        self.decisions: list[dict] = []
        self.measured: dict[str, float] = {}      # genotype key -> confirmed device cost (the last decision's)
        self._keys: dict[str, Genotype] = {}      # genotype key -> genotype, of those measured
        self.taken = 0

    @classmethod
    def for_search(cls, model: Supernet, tables: CostTables, cost_model: CostModel, config: Any, term: Any,
                   budget: float, feedback: DeviceFeedback | None, batches: int) -> NodeDecisions | None:
        """The decisions a DCA-NAS search on the DARTS space takes (None: the space has no ``none`` op)."""
        if "none" not in model.space.ops:
            return None
        per_epoch = batches if config.max_batches_per_epoch is None else min(batches, config.max_batches_per_epoch)
        arch_steps = max(1, (config.epochs - config.arch.warmup_epochs) * per_epoch)
        lo, hi = getattr(term, "band", (0.0, 1.0))
        space = model.space
        return cls(model, tables, decision_steps(len(range(2, space.steps + 2)) * len(set(tables.cell_types)),
                                                 arch_steps),
                   lambda cost: float(term.penalty(cost)), budget, (lo * budget, hi * budget),
                   lambda: cost_model.expected_cost(space, model.op_weights(), model.edge_weights()),
                   feedback, repeats=getattr(config, "device_repeats", 3),
                   window=getattr(config, "device_window", 0.05), margin=getattr(config, "device_margin", 0.02),
                   on_device=getattr(config, "device_decisions", 25) > 0,
                   margin_sigmas=getattr(config, "device_margin_sigmas", 0.0),
                   networks=getattr(config, "darts_device_networks", None))

    @property
    def samples(self) -> dict[str, list[float]]:
        """Every measurement the last decision took, per genotype key (the record's ``cell_remeasurements``)."""
        if self.feedback is None:
            return {}
        return {k: self.feedback.samples[g] for k, g in self._keys.items()}

    def expected_cost(self) -> torch.Tensor:
        return self.expected()

    # -- the decisions --------------------------------------------------------------------------------
    def after_step(self, arch_step: int) -> None:
        """Decide the next node when ``arch_step`` (0-based, over the whole search) is due."""
        while self.taken < len(self.steps) and arch_step >= self.steps[self.taken]:
            self.decide(arch_step)
            self.taken += 1

    def _ratio(self) -> float:
        return self.feedback.ratio if self.feedback is not None else 1.0

    def _node_share(self, slot: int) -> float:
        """The node's share of the current relaxed cost (the relaxation of ``cost.expected_cost``)."""
        o, space = self.options[slot], self.space
        with torch.no_grad():
            w = self.model.op_weights()[o.cell].double()
            ew = self.model.edge_weights()
            ew = ew[o.cell].double() if ew else None
            mask = torch.tensor([op != "none" for op in space.ops], dtype=torch.float64)
            w_op = w * mask
            w_op = w_op / w_op.sum(1, keepdim=True).clamp_min(1e-12)
            keep = edge_keep_probability(darts_edge_strength(w, ew, space.ops), space)
            idx = [e for e, (_, d) in enumerate(space.edges) if d == o.node]
            return float(sum(keep[e] * (w_op[e] * self.price[o.cell][e]).sum() for e in idx))

    def _log_weight(self, slot: int) -> np.ndarray:
        """log of each option's weight: the two edges' strength, normalised over the node, times their ops'."""
        o, space = self.options[slot], self.space
        with torch.no_grad():
            w = self.model.op_weights()[o.cell].double()
            ew = self.model.edge_weights()
            s = darts_edge_strength(w, ew[o.cell].double() if ew else None, space.ops)
            idx = [e for e, (_, d) in enumerate(space.edges) if d == o.node]
            s = s / s[idx].sum().clamp_min(1e-30)
            real = w[:, self.real] / w[:, self.real].sum(1, keepdim=True).clamp_min(1e-30)
            full = torch.zeros_like(w)
            full[:, self.real] = real
            logs, logw = s.clamp_min(1e-30).log().numpy(), full.clamp_min(1e-30).log().numpy()
        return logs[o.edges[:, 0]] + logs[o.edges[:, 1]] + logw[o.edges[:, 0], o.ops[:, 0]] + \
            logw[o.edges[:, 1], o.ops[:, 1]]

    def _completions(self, slot: int) -> tuple[np.ndarray, int, float]:
        """The sum set of the undecided nodes other than ``slot`` (grid, offset) and the decided nodes' cost."""
        decided = sum(float(self.options[s].cost[r]) for s, r in self.chosen.items())
        others = [self.options[s].cost for s in range(len(self.options)) if s != slot and s not in self.chosen]
        grid, offset = sum_set(others, GRID * self.budget)
        return grid, offset, decided

    def _miss(self, slot: int, ratio: float, band: tuple[float, float],
              completions: tuple[np.ndarray, int, float] | None = None) -> np.ndarray:
        """(options,) by how much (device cost) the nearest completion with each option misses ``band``; 0 in it."""
        grid, offset, decided = completions or self._completions(slot)
        step = GRID * self.budget
        sums = (np.flatnonzero(grid) + offset) * step                        # achievable completions, sorted
        base = (self.const + decided + self.options[slot].cost) * ratio     # (options,)
        lo, hi = band
        # the completion nearest the band's middle, then its distance to the band
        target = ((lo + hi) / 2) / ratio - base / ratio
        i = np.clip(np.searchsorted(sums, target), 0, len(sums) - 1)
        cand = np.stack([sums[np.maximum(i - 1, 0)], sums[i]])             # (2, options): either side of it
        total = base[None] + cand * ratio
        miss = np.maximum(lo - total, 0) + np.maximum(total - hi, 0)
        return miss.min(0)

    def decide(self, arch_step: int) -> None:
        slot = len(self.chosen)
        if slot >= len(self.options):
            return
        o = self.options[slot]
        ratio, last = self._ratio(), slot == len(self.options) - 1
        logw = self._log_weight(slot)
        with torch.no_grad():
            rest = float(self.expected().detach()) - self._node_share(slot)
        device = (rest + o.cost) * ratio                          # E[device cost | option]
        scores = logw - np.array([self.penalty(float(c)) for c in device])
        greedy = int(np.argmax(scores))
        completions, (lo, hi) = self._completions(slot), self.band
        for shrink in MIDDLE:   # keep the band's middle reachable where some option can: room on both sides
            miss = self._miss(slot, ratio, (lo + shrink * (hi - lo), hi - shrink * (hi - lo)), completions)
            if not miss.min() > 0:
                break
        feasible = miss <= float(miss.min()) + 1e-12
        aimed = shrink
        if aimed:   # the miss recorded is the band's
            miss = self._miss(slot, ratio, self.band, completions)
        nearest = float(miss.min())
        row, record = int(np.flatnonzero(feasible)[np.argmax(scores[feasible])]), {}
        if last and self.on_device:
            row, record = self._on_device(slot, scores, ratio)
            nearest = record.pop("miss")
        self._fix(slot, row)
        self.decisions.append({"arch_step": arch_step, "cell": o.cell, "node": o.node,
                               "inputs": [int(self.space.edges[e][0]) for e in o.edges[row]],
                               "ops": [self.space.ops[i] for i in o.ops[row]], "options": len(o.cost),
                               "feasible_options": int(feasible.sum()), "aimed_middle": aimed,
                               "restricted": bool(not feasible[greedy]),
                               "changed": row != greedy, "fallback": nearest > 0, "miss": nearest,
                               "ratio": ratio, "expected_cost": float(self.expected().detach()),
                               "on_device": bool(record), **record})

    def _fix(self, slot: int, row: int) -> None:
        o = self.options[slot]
        fixed = self.model.fixed[o.cell]
        for e, (_, d) in enumerate(self.space.edges):
            if d == o.node:
                fixed[e] = self.none
        for e, op in zip(o.edges[row], o.ops[row]):
            fixed[int(e)] = int(op)
        self.chosen[slot] = row

    def genotype_with(self, slot: int, row: int) -> Genotype:
        """The whole genotype: the decided nodes and ``row`` for the last one (every other node decided)."""
        cells: dict[str, list] = {"normal": [], "reduce": []}
        for s, o in enumerate(self.options):
            r = row if s == slot else self.chosen[s]
            edges = sorted(zip(o.edges[r].tolist(), o.ops[r].tolist()), key=lambda eo: self.space.edges[eo[0]][0])
            cells[o.cell].append([(self.space.ops[op], self.space.edges[e][0]) for e, op in edges])
        full = tuple(range(2, self.space.steps + 2))
        normal = tuple(e for node in (cells["normal"] or cells["reduce"]) for e in node)
        reduce = tuple(e for node in (cells["reduce"] or cells["normal"]) for e in node)
        return Genotype(normal, full, reduce, full)

    def spread(self, networks: list[Genotype]) -> float | None:
        """The pooled standard deviation of log(one measurement) over ``networks`` measured more than once (a
        relative spread: each network about its own mean); None until three are."""
        repeated = [[math.log(x) for x in self.feedback.samples[g]] for g in networks
                    if len(self.feedback.samples[g]) > 1]
        if len(repeated) < 3:
            return None
        ss = sum(sum((x - statistics.fmean(s)) ** 2 for x in s) for s in repeated)
        return math.sqrt(ss / sum(len(s) - 1 for s in repeated))

    def estimates(self, measured: dict[int, float], predicted: np.ndarray, samples: dict[int, int],
                  spread: float | None) -> tuple[dict[int, float], dict[int, float]]:
        """Each measured option's cost as a fresh export will show it, and the standard deviation of one fresh
        measurement about that estimate (device cost).

        The confirmed median of k measurements is noisy (spread^2 / k, relative); the prediction times the ratio
        the measurements show (their median of measured / predicted) is off by what the device adds to the
        network (tau^2, the residuals' variance beyond the noise). Each estimate weighs the two by their
        variances, so the option whose median came out luckily inside the band (the best of several noisy
        medians) is not taken at that value; without a spread yet, the medians as they are."""
        if spread is None or len(measured) < 3:
            sd = self.margin * self.budget / max(self.margin_sigmas, 1.0)
            return dict(measured), {r: sd for r in measured}
        ratio = statistics.median(measured[r] / predicted[r] for r in measured)
        resid = {r: c - ratio * predicted[r] for r, c in measured.items()}
        noise = {r: (spread * c) ** 2 / samples[r] for r, c in measured.items()}
        tau2 = max(0.0, statistics.fmean(v * v for v in resid.values()) - statistics.fmean(noise.values()))
        est, sd = {}, {}
        for r in measured:
            w = tau2 / (tau2 + noise[r]) if tau2 + noise[r] > 0 else 1.0
            est[r] = ratio * predicted[r] + w * resid[r]
            sd[r] = math.sqrt((spread * est[r]) ** 2 + w * noise[r])
        return est, sd

    def _secant(self, measured: dict[int, float], predicted: np.ndarray) -> float:
        """The ratio at which the band's middle is predicted where the estimates (``measured``) put it:
        interpolated between the networks estimated nearest it below and above, else the ratio of the one
        nearest it (the device's ratio differs between networks by a few %, so the nearest say most)."""
        mid = sum(self.band) / 2
        below = [r for r, c in measured.items() if c <= mid]
        above = [r for r, c in measured.items() if c > mid]
        if below and above:
            a, b = max(below, key=measured.get), min(above, key=measured.get)
            if predicted[b] != predicted[a] and measured[b] != measured[a]:
                p = predicted[a] + (mid - measured[a]) * (predicted[b] - predicted[a]) / (measured[b] - measured[a])
                if p > 0:
                    return float(mid / p)
        r = min(measured, key=lambda r: abs(measured[r] - mid))
        return float(measured[r] / predicted[r])

    def _on_device(self, slot: int, scores: np.ndarray, ratio: float) -> tuple[int, dict]:
        """The last decision on measured, confirmed networks; see the module docstring."""
        o, (lo, hi), fb = self.options[slot], self.band, self.feedback
        predicted = self.const + sum(float(self.options[s].cost[r]) for s, r in self.chosen.items()) + o.cost
        measured: dict[int, float] = {}
        genotypes: dict[int, Genotype] = {}

        def depths() -> tuple[dict[int, float], float, dict[int, float], float | None]:
            """Each option's depth inside the band in sigmas of a fresh measurement, the depth required (the
            margin), the estimates and the spread."""
            spread = self.spread(list(genotypes.values()))
            est, sd = self.estimates(measured, predicted, {r: len(fb.samples[g]) for r, g in genotypes.items()},
                                     spread)
            depth = {r: min(c - lo, hi - c) / sd[r] for r, c in est.items()}
            fixed = self.margin_sigmas if spread is not None and self.margin_sigmas > 0 else max(self.margin_sigmas,
                                                                                                 1.0)
            # at most 0.45 of the band's width: a margin wider than the band leaves nothing to aim at
            need = min(fixed, 0.45 * (hi - lo) / max(sd.values())) if sd else fixed
            return depth, need, est, spread

        def measure(r: int) -> None:
            g = genotypes[r] = self.genotype_with(slot, r)
            self._keys[genotype_key(g)] = g
            fb.cost_of(g)
            while (len(fb.samples[g]) < self.repeats
                   and lo - self.window * self.budget <= fb.measured[g] <= hi + self.window * self.budget):
                fb.remeasure(g)
            measured[r] = self.measured[genotype_key(g)] = fb.measured[g]

        def candidates(ratio: float, n: int, nearest: bool = False) -> list[int]:
            """The ``n`` next unmeasured options: those predicted nearest the band's middle first (``MIDDLE``'s
            levels), by score within a level, then the rest by their distance to the middle; ``nearest``: by
            the distance alone (after the shortlist, the aim is the middle)."""
            dev, mid = predicted * ratio, (lo + hi) / 2
            free = [r for r in range(len(dev)) if r not in measured]
            if nearest:
                return sorted(free, key=lambda r: (abs(dev[r] - mid), -scores[r]))[:n]
            order = sorted(free, key=lambda r: (next((k for k, f in enumerate(MIDDLE)
                                                      if abs(dev[r] - mid) <= (0.5 - f) * (hi - lo)), len(MIDDLE)),
                                                -scores[r] if abs(dev[r] - mid) <= (hi - lo) / 2
                                                else abs(dev[r] - mid)))
            return order[:n]

        # the shortlist: the Lagrangian's best among those predicted nearest the middle, measured and confirmed
        for r in candidates(ratio, self.shortlist):
            measure(r)
        # then one at a time at the ratio the measurements show, until one is estimated inside the margin
        while measured and len(measured) < self.networks:
            depth, need, est, _ = depths()
            if any(d >= need for d in depth.values()):
                break
            more = candidates(self._secant(est, predicted), 1, nearest=True)
            if not more:
                break
            measure(more[0])
        depth, need, est, spread = depths()
        keys = {r: genotype_key(g) for r, g in genotypes.items()}
        record = {"spread": spread, "margin_sigmas": need, "estimated": {keys[r]: c for r, c in est.items()},
                  "extra_networks": max(0, len(measured) - self.shortlist)}
        ok = [r for r, d in depth.items() if d >= need]
        if ok:   # the Lagrangian's choice among those estimated inside the margin
            row = max(ok, key=lambda r: scores[r])
            return row, self._record(measured, 0.0, True) | record | {"depth": depth[row]}
        # none inside: the one deepest inside the band, the likeliest to measure in it afresh
        inside = [r for r in depth if depth[r] >= 0]
        if inside:
            row = max(inside, key=depth.get)
            return row, self._record(measured, 0.0, False) | record | {"depth": depth[row]}
        within = {r: c for r, c in est.items() if c <= self.budget} or est
        miss = {r: max(lo - c, c - hi, 0.0) for r, c in within.items()}
        row = min(miss, key=miss.get)
        return row, self._record(measured, miss[row], False) | record | {"depth": depth[row]}

    def _record(self, measured: dict[int, float], miss: float, inside: bool) -> dict:
        keys = {r: genotype_key(self.genotype_with(len(self.chosen), r)) for r in measured}
        return {"measured": {keys[r]: c for r, c in measured.items()},
                "repeats": {keys[r]: list(self.feedback.samples[self._keys[keys[r]]]) for r in measured
                            if len(self.feedback.samples[self._keys[keys[r]]]) > 1},
                "aimed_inside": inside, "miss": miss}
