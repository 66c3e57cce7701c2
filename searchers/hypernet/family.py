"""The family a hypernetwork run gives: its members (``Architecture``), the monotone curve along a ray
of the simplex (``TradeOffCurve``, ``isotonic``), what any trained family derives (``Family``: points,
curves, the member for a budget; shared with the pruning hypernetwork) and the run's result
(``HypernetResult``).
"""
from __future__ import annotations

import abc
import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch

from hilnas.searchers.hypernet.derive import derive
from hilnas.searchers.hypernet.tradeoff import (_SIMPLEX_TOL, ScaleMap, TradeOff, TradeOffError, center,
                                                check_simplex)
from hilnas.searchers.result import Budget, SearchError
from hilnas.searchers.train import evaluate

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from hilnas.searchers.cost import CostModel
    from hilnas.searchers.hypernet import HypernetConfig, Hypernetwork, ValidSupernet
    from hilnas.searchers.hypernet.bound import BoundEstimate
    from hilnas.searchers.hypernet.sweep import ScaleSweep
    from hilnas.searchers.spaces import SearchSpace
    from hilnas.searchers.train import Batch

_COST_TOL = 1e-9  # relative: cost differences below this are rounding, not violations


class BudgetRangeError(SearchError):
    """A budget the family cannot meet sensibly; ``range`` is the reachable [min, max] in ``metric``."""

    def __init__(self, message: str, *, metric: str, range: tuple[float, float]):
        super().__init__(message)
        self.metric, self.range = metric, range


@dataclass(frozen=True)
class Architecture:
    """One member of the family: the lambda it was derived at, its genotype and what it costs."""
    tradeoff: TradeOff
    genotype: Any
    costs: Mapping[str, float]          # exact cost per metric (each cost model of the search)
    expected: Mapping[str, float]       # relaxed expected cost at alpha(lambda), per metric
    repaired: bool = False              # not the plain argmax: a broken NB201 cell fixed, or matched to the expected cost
    kept_from: float | None = None      # isotonic selection: the smaller scale whose genotype this is

    def to_dict(self) -> dict[str, Any]:
        return {"tradeoff": self.tradeoff.to_dict(), "genotype": self.genotype.to_dict(), "costs": dict(self.costs),
                "expected": dict(self.expected), "repaired": self.repaired, "kept_from": self.kept_from}


def count_violations(costs: Sequence[float]) -> int:
    """Steps up in a sequence that should not increase (rounding-level differences ignored)."""
    return sum(1 for a, b in zip(costs, costs[1:]) if b > a + _COST_TOL * max(1.0, abs(a)))


@dataclass(frozen=True)
class TradeOffCurve:
    """The family along one ray of the simplex, scale ascending, monotone in ``metric``."""
    metric: str
    points: tuple[Architecture, ...]    # after isotonic selection: costs non-increasing
    raw: tuple[Architecture, ...]       # as derived at each scale
    raw_violations: int                 # increases of the raw cost along the scale
    violations: int                     # increases of the selected cost (0 by construction)

    @property
    def range(self) -> tuple[float, float]:
        costs = [p.costs[self.metric] for p in self.points]
        return min(costs), max(costs)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "range": list(self.range), "raw_violations": self.raw_violations,
                "violations": self.violations, "points": [p.to_dict() for p in self.points],
                "raw": [p.to_dict() for p in self.raw]}


def isotonic(raw: Sequence[Architecture], metric: str) -> list[Architecture]:
    """Walk up the scale; keep a derived genotype unless a smaller scale already gave a cheaper one."""
    out: list[Architecture] = []
    for a in raw:
        if out and a.costs[metric] > out[-1].costs[metric] + _COST_TOL * max(1.0, abs(out[-1].costs[metric])):
            prev = out[-1]
            out.append(dataclasses.replace(prev, tradeoff=a.tradeoff, kept_from=prev.kept_from
                                           if prev.kept_from is not None else prev.tradeoff.scale))
        else:
            out.append(a)
    return out


# -- a family: members at trade-off points, curves, budgets ---------------------------------------
class Family(abc.ABC):
    """What a trained family gives, whatever the method: members at checked trade-off points, the monotone
    curve along a ray, the reachable range and the member for a budget (by bisection on the scale).

    A subclass provides ``architecture(t)`` and the attributes ``ops`` (the coefficients' names),
    ``Lambda``, ``models`` (metric -> cost model), ``primary``, ``config`` (with ``grid_points``,
    ``curve_points``, ``bisect_steps``, ``scale_sampling``, ``log_floor``) and a ``_curves`` cache.
    """
    ops: tuple[str, ...]
    Lambda: float
    models: dict[str, CostModel]
    primary: str
    config: Any
    _curves: dict[Any, TradeOffCurve]

    @abc.abstractmethod
    def architecture(self, t: TradeOff | float) -> Architecture:
        """The member the trained family gives at trade-off point ``t`` (a scale alone: the simplex's centre)."""

    # -- points -----------------------------------------------------------------------------
    def tradeoff(self, scale: float, weights: Sequence[float] | None = None) -> TradeOff:
        """A checked trade-off point: ``weights`` on the simplex over ``ops`` (None = the centre), scale in
        [0, Lambda]."""
        w = center(len(self.ops)) if weights is None else check_simplex(weights, self.ops)
        try:
            s = float(scale)
        except (TypeError, ValueError):
            raise TradeOffError(f"lambda scale must be a number, got {scale!r}") from None
        if not (math.isfinite(s) and -_SIMPLEX_TOL <= s <= self.Lambda * (1 + _SIMPLEX_TOL)):
            raise TradeOffError(f"lambda scale {scale!r} is outside the trained range [0, {self.Lambda:.6g}] "
                                "(Lambda, the upper end the hypernetwork was trained on)")
        return TradeOff(w, min(max(s, 0.0), self.Lambda))

    def _check(self, t: TradeOff | float) -> TradeOff:
        if isinstance(t, TradeOff):
            return self.tradeoff(t.scale, t.weights)
        return self.tradeoff(t)

    def architectures(self, lambdas: Sequence[TradeOff | float]) -> list[Architecture]:
        """The genotype at each trade-off point, as derived (no isotonic selection; see ``curve``)."""
        return [self.architecture(t) for t in lambdas]

    def grid(self, points: int | None = None) -> list[float]:
        """``points`` scales from 0 to Lambda, evenly spaced in the hypernetwork's input (``ScaleMap``)."""
        n = points or self.config.grid_points
        smap = ScaleMap.of(self.config)
        return [0.0] + [self.Lambda * smap.fraction(i / (n - 1)) for i in range(1, n - 1)] + [self.Lambda]

    def curve(self, scales: Sequence[float] | None = None, *, weights: Sequence[float] | None = None,
              metric: str | None = None) -> TradeOffCurve:
        """The family along the ray ``weights`` at ``scales`` (default: the grid), made monotone in ``metric``."""
        metric = metric or self.primary
        if metric not in self.models:
            raise SearchError(f"no cost model measures {metric!r} in this search; it has {', '.join(self.models)}")
        scales = sorted(self.grid() if scales is None else [float(s) for s in scales])
        w = center(len(self.ops)) if weights is None else check_simplex(weights, self.ops)
        key = (tuple(scales), w, metric)
        if key not in self._curves:
            raw = self.architectures([self.tradeoff(s, w) for s in scales])
            points = isotonic(raw, metric)
            self._curves[key] = TradeOffCurve(metric, tuple(points), tuple(raw),
                                              count_violations([a.costs[metric] for a in raw]),
                                              count_violations([a.costs[metric] for a in points]))
        return self._curves[key]

    def reachable(self, metric: str | None = None, *, weights: Sequence[float] | None = None) -> tuple[float, float]:
        """[min, max] exact cost of the dense family along ``weights``'s ray."""
        return self.curve(self.grid(self.config.curve_points), weights=weights, metric=metric).range

    def spread(self, points: int | None = None, *, weights: Sequence[float] | None = None,
               metric: str | None = None) -> list[Architecture]:
        """``points`` members whose costs split the family's reachable range evenly, dearest first: for each of
        ``points`` costs evenly spaced from the dense family's dearest to its cheapest member, the member
        ``for_budget`` gives. Where the family jumps over a cost, neighbouring budgets give one member: count
        distinct genotypes, not points.

        A grid even in lambda (``grid``) puts its points where lambda is, not where the family's cost moves:
        on the demo spaces most of a family's change happens over a small part of [0, Lambda], so several
        grid points repeat one member while other costs get none.
        """
        metric = metric or self.primary
        n = points or self.config.grid_points
        if n < 2:
            raise ValueError(f"a spread needs at least 2 points, got {n}")
        lo, hi = self.reachable(metric, weights=weights)
        return [self.for_budget(Budget(metric, max(hi - (hi - lo) * i / (n - 1), lo)), weights=weights)
                for i in range(n)]

    def fine_curve(self, *, weights: Sequence[float] | None = None, metric: str | None = None) -> TradeOffCurve:
        """The dense family (``curve_points`` scales) with its changes located: between two neighbouring scales
        whose genotypes differ, bisection in the hypernetwork's input (``ScaleMap``), ``bisect_steps`` deep, adds
        the scales where another genotype appears; made monotone like any curve.

        Where the family changes quickly, neighbouring dense scales can step over members (on the full-size NB201
        the dense curve had 6 distinct members, while ``for_budget``'s bisection found 8).
        """
        metric = metric or self.primary
        dense = self.curve(self.grid(self.config.curve_points), weights=weights, metric=metric)
        scales = self.bisected_scales(dense.raw, lambda a, b: a.genotype != b.genotype)
        return self.curve(scales, weights=weights, metric=metric)

    def bisected_scales(self, dense: Sequence[Architecture],
                        differ: Callable[[Architecture, Architecture], bool]) -> list[float]:
        """The scales of ``dense`` (members at ascending scales, on one ray) and those bisection in the hypernetwork's
        input (``ScaleMap``), ``bisect_steps`` deep, adds between neighbours that ``differ``; ascending."""
        smap = ScaleMap.of(self.config)
        w = dense[0].tradeoff.weights

        def position(a: Architecture) -> float:
            return float(smap.encode(torch.tensor(a.tradeoff.scale, dtype=torch.float64), self.Lambda))

        found: list[float] = []

        def split(a: Architecture, b: Architecture, depth: int) -> None:
            if depth == 0 or not differ(a, b):
                return
            mid = self.architecture(TradeOff(w, self.Lambda * smap.fraction(0.5 * (position(a) + position(b)))))
            found.append(mid.tradeoff.scale)
            split(a, mid, depth - 1)
            split(mid, b, depth - 1)

        for a, b in zip(dense, dense[1:]):
            split(a, b, self.config.bisect_steps)
        return sorted({a.tradeoff.scale for a in dense} | set(found))

    def breakpoints(self, points: int | None = None, *, weights: Sequence[float] | None = None,
                    metric: str | None = None) -> list[float]:
        """``points`` scales placed where the family changes (ascending): the scale at which each distinct member
        of the family (``fine_curve``: the dense curve with its changes located, after isotonic selection) first
        appears; when there are more than ``points``, lambda = 0's member, the cheapest one and those nearest to
        costs evenly spaced between them. When there are fewer, the rest fill the widest gaps (in the
        hypernetwork's input, ``ScaleMap``).

        The grid even in lambda (``grid``) can land several points on one member and step over others where the
        family changes quickly; these points land on every distinct member the family has, up to ``points``.
        """
        metric = metric or self.primary
        n = points or self.config.grid_points
        if n < 2:
            raise ValueError(f"a grid needs at least 2 points, got {n}")
        first: dict[Any, Architecture] = {}
        for a in self.fine_curve(weights=weights, metric=metric).points:
            first.setdefault(a.genotype, a)
        members = list(first.values())                  # dearest (lambda = 0) first
        if len(members) > n:
            cost = [a.costs[metric] for a in members]
            keep = {0, len(members) - 1}
            for i in range(1, n - 1):
                target = cost[0] + (cost[-1] - cost[0]) * i / (n - 1)
                keep.add(min((j for j in range(len(members)) if j not in keep),
                             key=lambda j: (abs(cost[j] - target), j)))
            members = [members[j] for j in sorted(keep)]
        smap = ScaleMap.of(self.config)
        at = {float(smap.encode(torch.tensor(s, dtype=torch.float64), self.Lambda)): s
              for s in {0.0, *(a.tradeoff.scale for a in members)}}   # position -> scale (the members' exactly)
        while len(at) < n:   # fill the widest gap in position (1 stands for Lambda)
            ends = sorted(at) + ([] if max(at) >= 1.0 else [1.0])
            k = max(range(len(ends) - 1), key=lambda i: ends[i + 1] - ends[i])
            v = 0.5 * (ends[k] + ends[k + 1])
            at[v] = self.Lambda * smap.fraction(v)
        return [at[v] for v in sorted(at)]

    def for_budget(self, budget: Budget | str, *, weights: Sequence[float] | None = None) -> Architecture:
        """The least-penalised member within ``budget`` along the ray, found by bisection on the scale.

        Raises BudgetRangeError when the budget lies outside the family's reachable [min, max].
        """
        b = Budget.parse(budget) if isinstance(budget, str) else budget
        curve = self.curve(self.grid(self.config.curve_points), weights=weights, metric=b.metric)
        lo, hi = curve.range
        unit = self.models[b.metric].unit
        if b.value < lo:
            raise BudgetRangeError(f"budget {b} is below what this family reaches: [{lo:.6g}, {hi:.6g}] {unit}; "
                                   f"its cheapest member costs {lo:.6g} (a new search with a larger Lambda, or a "
                                   "smaller space, may reach further)", metric=b.metric, range=(lo, hi))
        if b.value > hi * (1 + _COST_TOL):
            raise BudgetRangeError(f"budget {b} is above what this family reaches: [{lo:.6g}, {hi:.6g}] {unit}; "
                                   f"every member fits, and the most accurate one (lambda = 0) costs {hi:.6g} — "
                                   "give a budget within the range, or take lambda = 0", metric=b.metric,
                                   range=(lo, hi))
        pts = curve.points
        cost = [p.costs[b.metric] for p in pts]
        i, j = 0, len(pts) - 1     # binary search for the first grid point within budget (costs non-increasing)
        while i < j:
            mid = (i + j) // 2
            if cost[mid] <= b.value:
                j = mid
            else:
                i = mid + 1
        best = pts[i]
        if i > 0 and best.kept_from is None:   # refine between the previous scale (over) and this one (within)
            w = pts[i].tradeoff.weights
            s_lo, s_hi = pts[i - 1].tradeoff.scale, pts[i].tradeoff.scale
            for _ in range(self.config.bisect_steps):
                mid_s = 0.5 * (s_lo + s_hi)
                a = self.architecture(TradeOff(w, mid_s))
                if a.costs[b.metric] <= b.value:
                    s_hi, best = mid_s, a
                else:
                    s_lo = mid_s
        return best


# -- the result ----------------------------------------------------------------------------------
@dataclass
class HypernetResult(Family):
    """One hypernetwork run: the trained supernet and hypernetwork, Lambda, and the family they give."""
    space: SearchSpace
    config: HypernetConfig
    models: dict[str, CostModel]        # metric -> cost model (latency, complexity, energy: those given)
    primary: str                        # the cost model's metric (the default for curves)
    complexity: CostModel               # what the coefficients weigh (and "expected-cost" derivation matches)
    supernet: ValidSupernet
    hypernet: Hypernetwork
    Lambda: float
    bound: BoundEstimate | None         # the last estimate; None when Lambda was given
    Lambda_history: list[tuple[int, float]]  # (weight steps taken, Lambda) at each estimate
    ops: tuple[str, ...]                # op types with a coefficient, in weight order
    history: dict[str, list[float]]     # per architecture step: scale, ce, penalty, complexity fraction
    epoch_costs: list[dict[str, float]]
    val_acc: float                      # supernet accuracy on the val split at lambda = 0 (``accuracy`` for others)
    steps: int
    epochs: int
    wall_s: float
    peak_mem_mb: float
    seed: int
    sweep: ScaleSweep | None = None     # Lambda's sweep (``Lambda="sweep"``); None otherwise or when loaded
    epoch_val_acc: list[float] = field(default_factory=list)   # after each epoch, accuracy at lambda = 0 on
                                        # ``config.epoch_val_batches`` fixed val batches (empty when 0)
    knees: list[dict[str, Any]] = field(default_factory=list)   # knee="family": each epoch's knee and Lambda then
    _curves: dict[Any, TradeOffCurve] = field(default_factory=dict, repr=False)

    def architecture(self, t: TradeOff | float) -> Architecture:
        """The valid genotype at one trade-off point (a bare number is a scale at the centre)."""
        t = self._check(t)
        match = (self.complexity, self.config.cost_band) if self.config.derivation == "expected-cost" else None
        median = self.complexity if self.config.derivation in ("median", "conv-median") else None
        g, repaired, op_w, edge_w = derive(self.supernet, self.hypernet, t, self.Lambda, ScaleMap.of(self.config),
                                           match=match, median=median,
                                           free_by_argmax=self.config.derivation == "conv-median")
        costs = {m: model.genotype_cost(self.space, g) for m, model in self.models.items()}
        with torch.no_grad():
            expected = {m: float(model.expected_cost(self.space, op_w, edge_w)) for m, model in self.models.items()}
        return Architecture(t, g, costs, expected, repaired)

    def accuracy(self, t: TradeOff | float, loader: Iterable[Batch], *, max_batches: int | None = None) -> float:
        """The supernet's accuracy on ``loader`` with the architecture at ``t`` (a proxy: shared weights)."""
        from hilnas.searchers.hypernet import RelaxedSupernet  # here: hypernet imports this module
        t = self._check(t)
        relaxed = RelaxedSupernet(self.supernet, self.hypernet)
        relaxed.coeffs = ScaleMap.of(self.config).encode(torch.tensor(t.coefficients()), self.Lambda)
        return evaluate(relaxed, loader, max_batches=max_batches, bn=self.config.eval_bn)[1]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data: settings, Lambda and its estimate, histories, the default curve."""
        return {"method": "hypernet", "space": self.space.name, "Lambda": self.Lambda,
                "Lambda_history": [list(x) for x in self.Lambda_history],
                "bound": self.bound.to_dict() if self.bound else None,
                "sweep": self.sweep.to_dict() if self.sweep else None, "ops": list(self.ops),
                "metrics": {m: model.unit for m, model in self.models.items()}, "primary": self.primary,
                "val_acc": self.val_acc, "steps": self.steps,
                "epochs": self.epochs, "wall_s": self.wall_s, "peak_mem_mb": self.peak_mem_mb, "seed": self.seed,
                "epoch_costs": self.epoch_costs, "epoch_val_acc": self.epoch_val_acc, "knees": self.knees, "curve": self.curve().to_dict(),
                "config": _plain(dataclasses.asdict(self.config))}


def _plain(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _plain(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_plain(v) for v in d]
    return d
