"""The lookup graph (LUG) of seed 001: from a device budget to the tighter search-time budget.

The network a search derives does not cost on the device what the search-time constraint
said: the relaxed cost is not the discrete one, and a device does not run a network as the sum
of its ops. Seed 001 therefore searches at several search-time budgets, measures each derived
network on the device, and reads the search-time budget for a device budget off that graph.

``build_lug`` runs those searches (through any ``map``: the builtin for a plain loop, a thread
or process pool's ``map``, or Ray's, so they may run in parallel) and measures each result with
a ``measure(genotype) -> float`` callable (the server passes one that exports the network and
benchmarks it on the device). ``LookupGraph`` fits a non-decreasing curve through the points
(isotonic regression, then linear interpolation) and inverts it.

Its x axis is either the search-time budget (``axis="search_budget"``, seed 001's graph) or the
exact cost-model cost of the derived network (``axis="predicted"``, the default). Our searches
meet their budget exactly, from below, so the budget to search at is the predicted cost the
device budget calls for; and predicted -> measured is a property of the device and the LUT,
smooth across searches, while budget -> measured also carries each search's own slack. Every
point keeps both values. ``search_for_budget`` then searches at the budget the graph gives and,
while the device disagrees, refines the graph with the new point and steps the budget.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Sequence

from hilnas.searchers.genotype import genotype_from_json
from hilnas.searchers.result import SearchResult

AXES = ("predicted", "search_budget")


@dataclass(frozen=True)
class LugPoint:
    """One search of the graph: its budget, the derived network's exact predicted and measured cost."""
    search_budget: float
    predicted: float      # exact cost-model cost of the genotype (<= search_budget)
    measured: float       # cost measured on the device
    genotype: Any

    def to_dict(self) -> dict[str, Any]:
        return {"search_budget": self.search_budget, "predicted": self.predicted, "measured": self.measured,
                "genotype": self.genotype.to_dict()}


def isotonic(y: Sequence[float]) -> list[float]:
    """Least-squares non-decreasing fit of ``y`` (pool adjacent violators), same length."""
    blocks: list[list[float]] = []  # [mean, weight]
    for v in y:
        blocks.append([float(v), 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2 = blocks.pop()
            m1, w1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2])
    out: list[float] = []
    for m, w in blocks:
        out += [m] * int(w)
    return out


@dataclass(frozen=True)
class LookupGraph:
    """Monotone map (search budget or predicted cost) -> device cost, and its inverse."""
    metric: str
    points: tuple[LugPoint, ...]
    axis: str = "predicted"

    def __post_init__(self) -> None:
        if self.axis not in AXES:
            raise ValueError(f"axis must be one of {AXES}, got {self.axis!r}")
        if not self.points:
            raise ValueError("a lookup graph needs at least one point")
        object.__setattr__(self, "points", tuple(sorted(self.points, key=self._x)))
        if any(p.measured <= 0 or self._x(p) <= 0 for p in self.points):
            raise ValueError("lookup graph points need positive costs and measurements")

    def _x(self, p: LugPoint) -> float:
        return p.predicted if self.axis == "predicted" else p.search_budget

    def with_point(self, point: LugPoint) -> LookupGraph:
        return replace(self, points=self.points + (point,))

    def _curve(self) -> tuple[list[float], list[float]]:
        xs, ys = [], []
        for p, y in zip(self.points, isotonic([p.measured for p in self.points])):
            if xs and self._x(p) == xs[-1]:  # equal x: keep the pooled (higher) value once
                ys[-1] = max(ys[-1], y)
                continue
            xs.append(self._x(p))
            ys.append(y)
        return xs, ys

    def device_cost(self, x: float) -> float:
        """Device cost the graph expects at ``x`` (proportional beyond the ends)."""
        xs, ys = self._curve()
        if x <= xs[0]:
            return ys[0] * x / xs[0]
        if x >= xs[-1]:
            return ys[-1] * x / xs[-1]
        for x0, x1, y0, y1 in zip(xs, xs[1:], ys, ys[1:]):
            if x0 <= x <= x1:
                return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
        raise AssertionError("unreachable")

    def slope(self, x: float) -> float:
        """d(device cost)/dx of the fitted curve near ``x`` (the end-to-end secant where it is flat)."""
        xs, ys = self._curve()
        overall = (ys[-1] / xs[-1]) if len(xs) == 1 or xs[-1] == xs[0] else (ys[-1] - ys[0]) / (xs[-1] - xs[0])
        for x0, x1, y0, y1 in zip(xs, xs[1:], ys, ys[1:]):
            if x0 <= x <= x1 and y1 > y0:
                return (y1 - y0) / (x1 - x0)
        return overall if overall > 0 else ys[-1] / xs[-1]

    def search_budget(self, device_budget: float, *, target: float = 1.0) -> float:
        """The largest x whose expected device cost is <= ``target * device_budget``.

        Below the first point or above the last the ratio of the nearest point is used.
        """
        goal = target * device_budget
        xs, ys = self._curve()
        if goal <= ys[0]:
            return xs[0] * goal / ys[0]
        if goal >= ys[-1]:
            return xs[-1] * goal / ys[-1]
        best = xs[0]
        for x0, x1, y0, y1 in zip(xs, xs[1:], ys, ys[1:]):
            if y1 <= goal:
                best = max(best, x1)
            elif y0 <= goal < y1:
                best = max(best, x0 + (x1 - x0) * (goal - y0) / (y1 - y0))
        return best

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "axis": self.axis, "points": [p.to_dict() for p in self.points]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LookupGraph:
        import json
        pts = [LugPoint(float(p["search_budget"]), float(p["predicted"]), float(p["measured"]),
                        genotype_from_json(json.dumps(p["genotype"]))) for p in d["points"]]
        return cls(str(d["metric"]), tuple(pts), str(d.get("axis", "predicted")))


def build_lug(search_at: Callable[[float], SearchResult], budgets: Iterable[float],
              measure: Callable[[Any], float], *, metric: str, axis: str = "predicted",
              map_fn: Callable[..., Iterable[SearchResult]] = map) -> tuple[LookupGraph, dict[float, SearchResult]]:
    """Search at each search-time budget (through ``map_fn``), measure each result, fit the graph.

    Returns the graph and the searches by budget. Measuring happens after all searches, one at
    a time, so a device never times a network while this host trains another on the same CPU.
    """
    budgets = sorted(set(float(b) for b in budgets))
    if not budgets:
        raise ValueError("build_lug needs at least one budget")
    results = list(map_fn(search_at, budgets))
    points = [LugPoint(b, r.cost, float(measure(r.genotype)), r.genotype) for b, r in zip(budgets, results)]
    return LookupGraph(metric, tuple(points), axis), dict(zip(budgets, results))


@dataclass(frozen=True)
class LugSearch:
    """The outcome of ``search_for_budget``: the chosen search, its device cost, the refined graph."""
    result: SearchResult
    search_budget: float
    measured: float
    graph: LookupGraph
    rounds: int                          # new searches run (searches reused from ``known`` not counted)
    searched: dict[float, SearchResult]  # those new searches by budget (pass them on as ``known``)
    tried: tuple[tuple[float, float], ...]  # (search budget, measured) of the searches this call looked at


def _near(x: float, keys: Iterable[float]) -> float | None:
    return next((k for k in keys if abs(x - k) <= 1e-9 * max(1.0, abs(k))), None)


def search_for_budget(graph: LookupGraph, search_at: Callable[[float], SearchResult],
                      measure: Callable[[Any], float], device_budget: float, *, target: float = 0.95,
                      window: tuple[float, float] = (0.9, 1.0), rounds: int = 3,
                      known: dict[float, SearchResult] | None = None) -> LugSearch:
    """The searched network whose device cost best fills ``device_budget``; new searches only if needed.

    Every search already in the graph and in ``known`` (by budget) is a candidate: if one
    measures within ``window x device_budget`` it is taken as is (the look-up). Otherwise up to
    ``rounds`` new searches run: first at the budget the graph gives, then, while the device
    disagrees, at the refined graph's answer or, when that does not move, one step along the
    local slope (the missing device cost over d(measured)/d(budget)). Each new search is
    measured and added to the graph. Of all candidates the one with the largest device cost
    within the budget wins; if none is within, the cheapest on the device.
    """
    known = dict(known or {})
    measured = {p.search_budget: p.measured for p in graph.points}
    lo, hi = window[0] * device_budget, window[1] * device_budget
    pool = [(b, r, measured[b]) for b, r in known.items() if b in measured]
    tried: list[tuple[float, SearchResult, float]] = []
    new: dict[float, SearchResult] = {}
    goal = target * device_budget
    s = graph.search_budget(device_budget, target=target)
    for _ in range(max(1, rounds) if not any(lo <= m <= hi for _, _, m in pool) else 0):
        hit = _near(s, [k for k in known if k in measured])
        if hit is not None:
            s, result, m = hit, known[hit], measured[hit]
        else:
            result = search_at(s)
            m = float(measure(result.genotype))
            known[s] = new[s] = result
            measured[s] = m
            graph = graph.with_point(LugPoint(s, result.cost, m, result.genotype))
        tried.append((s, result, m))
        if lo <= m <= hi:
            break
        nxt = graph.search_budget(device_budget, target=target)
        if _near(nxt, [t[0] for t in tried]) is not None or abs(nxt - s) <= 0.01 * s:
            # d(measured)/d(budget) = d(measured)/d(predicted) x how much of its budget a search uses
            x = result.cost if graph.axis == "predicted" else s
            per_budget = graph.slope(x) * (result.cost / s if graph.axis == "predicted" else 1.0)
            nxt = s + (goal - m) / max(per_budget, 1e-12)
            nxt = min(max(nxt, 0.5 * s), 2.0 * s)
        s = nxt
    candidates = pool + [t for t in tried if _near(t[0], [b for b, _, _ in pool]) is None]
    within = [t for t in candidates if t[2] <= device_budget]
    s, result, m = max(within, key=lambda t: t[2]) if within else min(candidates, key=lambda t: t[2])
    return LugSearch(result, s, m, graph, len(new), new, tuple((b, mm) for b, _, mm in tried))
