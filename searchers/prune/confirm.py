"""Members confirmed on the device: the band search with the device in the loop.

``band`` picks a member within a band of *predicted* latency; on the host the LUT's prediction
(even corrected) is off by more than the band's half-width for some networks, so a member inside
by prediction can measure outside. Here the device decides. For each device budget b (ascending):

1. the candidates are the hypernetwork's own patterns (``BandSearch.around``: modes and Gumbel
   samples at lambdas bracketing the costs) whose corrected prediction lies ``near`` the band
   (default [0.85, 1.05] x b), and whose LUT cost is not below the previous member's;
   With ``screen`` > 0 the candidates are first scored on that many of the held-out batches and only the
   ``finalists`` with the least screened loss on all of them (``score`` extends each by the batches it lacks);
   the rest follow in screened order. The scoring was most of the member choice's cost, which does not shrink
   with phase 2's steps (issue 12: 18.4 s CPU of a 117 s Fashion-MNIST run at 600 steps);
2. the ``tries`` (4) with the least held-out loss are measured on the device, best loss first; one
   whose window lies within the ``inner`` band (default [0.92, 0.98] x b) and at or above the
   previous member's measurement is measured again in a new window (a single lucky window is not
   evidence), and the first whose both windows lie inside, and whose mean passes the spread's test (below), is the
   member ("device");
2b. when none is confirmed, the median of those first windows over their predictions says how far
   off the prediction is near this budget; up to ``recentre`` (4) further candidates whose
   prediction times that ratio lies in the accepted band (the inner band narrowed by the spread, below; the inner
   band when the spread leaves nothing) are tried the same way, least loss first
   ("recentred"; on the simulated Pi the loop measured candidates 1.5-5 % above their prediction
   near the cheap end, all just outside, and a worse LUT fallback was taken); among them, with ``trim``, the chain
   of channel-group drops from the least-loss tried candidate whose window lay just above that band (up to
   ``TRIM_ABOVE`` x b), each priced by its parent's own window ("trimmed": the least-loss candidates often measured
   at 0.97-1.00 x b and the loop then confirmed a cheaper one of far higher loss; eleventh session);
3. when none is confirmed, the candidate with the least held-out loss whose every loop window lay
   within the ``fallback`` band (and whose windows pass the spread's test below; when none does, the one whose
   windows' mean lies nearest the target band's middle) (default [0.90, 0.99] x b: the target band less a 1 % margin for the
   next window's noise) and at or above the previous member's measurement is the member ("loop");
   a candidate the device has measured inside beats one only predicted inside (on the host, a LUT
   fallback measured 1.0005 x its budget where the loop had measured a candidate at 0.91);
4. when the loop measured none inside either, the LUT-only band member, with ``measure_lut`` measured first like
   a try (confirmed by the same rule: "device"); when it is not confirmed, a candidate whose every loop window
   lies within the ``target`` band, its mean nearest the band's middle, is the member ("loop": a network measured
   inside beats one only predicted inside; eleventh session, a CIFAR-10 budget whose LUT member, never measured,
   ran 3.5 % over its prediction to 1.002 x b while the loop had measured a candidate at 0.978 and 0.997 x b);
   otherwise the LUT-only band member is kept ("lut"), said so.

**The spread of a fresh window** (issue 12, seventh session). A member confirmed by two windows inside the inner
band is reported by a *new* window, which is one more draw of the device's window-to-window spread: on the simulated Pi
a member confirmed at 0.974 and 0.963 x its budget measured 1.012 afresh. So a candidate is confirmed only when its
windows' mean m also lies ``k`` predictive spreads inside the target band: ``target[0] + margin <= m / b <= target[1]
- margin`` with ``margin = k * s * sqrt(1 + 1 / n)`` (n windows; a fresh window and the mean's own error). ``s`` is the
relative spread of one window: the prior ``spread`` until the run has measured ``min_pairs`` pairs of windows of one
network, then the larger of the prior and the run's robust estimate from all its pairs, ``median |w1 - w2| / mean``
divided by ``sqrt(2) x 0.6745`` (a normal window's median absolute difference), so one wild pair does not set it.
A floor, because a few pairs can say far less than the device's spread (the sixth session's CIFAR-10 run: 8 pairs,
under 1 %, where the simulated Pi's profile implies 1.31 %).
When the margin leaves nothing of the inner band, nothing is confirmed and the loop falls back as below. Recentring
(2b) aims at the accepted band, and the fallback (3) prefers a candidate whose windows pass the same test. ``k = 0``
is the rule before (the inner band alone).

Every window measured in the loop is recorded with the member (``DeviceChoice.loop``). They chose
the member, so they are not its score: whoever reports the member's latency measures it afresh.
``measure`` is any callable pattern -> one window's latency on the device (ms), or None when the
device could not measure it; the searcher never talks to an agent itself.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

from hilnas.searchers.prune.band import BandChoice, BandSearch
from hilnas.searchers.result import Budget

if TYPE_CHECKING:
    from hilnas.searchers.hypernet.family import Architecture
    from hilnas.searchers.spaces.resnet import GatePattern


TRIM_ABOVE = 1.10   # a tried candidate measured above the band but at most this x the budget is trimmed (``trimmed``)


class Correction(Protocol):
    """LUT sum <-> the device's whole-network latency (``server.lut.predict.Correction``)."""

    def apply(self, lut_sum_ms: float) -> float: ...

    def invert(self, measured_ms: float) -> float: ...


@dataclass(frozen=True)
class DeviceBandConfig:
    """How members are confirmed on the device (shares of the budget)."""
    inner: tuple[float, float] = (0.92, 0.98)  # both windows of a confirmed member lie within inner x budget
    near: tuple[float, float] = (0.85, 1.05)   # candidates: corrected prediction within near x budget
    tries: int = 4                              # candidates measured per budget, least held-out loss first
    recentre: int = 4                           # none confirmed: more tries, the prediction corrected by the loop's
    measure_lut: bool = True                    # none in the fallback band: the LUT's member measured before it
                                                # is kept, and a candidate measured inside the target preferred
    trim: bool = False                          # ... among them channel groups dropped from the least-loss tried
                                                # candidate whose window lay above the band (``trimmed``; off: it
                                                # failed the eleventh session's cost rule, docs/performance.md)
    fallback: tuple[float, float] = (0.90, 0.99)  # none confirmed: a candidate whose loop windows all lie here
    screen: int = 0                             # > 0: rank the candidates on this many held-out batches first ...
    finalists: int = 8                          # ... and only this many, least screened loss, on all of them
    target: tuple[float, float] = (0.90, 1.0)   # where a fresh measurement of the member must land (x budget)
    k: float = 2.0                              # confirmed: the windows' mean k predictive spreads inside target
                                                # (0: the inner band alone, the rule before the seventh session)
    spread: float = 0.01                        # prior relative spread of one window (the floor of the run's
                                                # estimate; the benchmark gives the simulated Pi's 1.31 %)
    min_pairs: int = 3

    def __post_init__(self) -> None:
        g, h = self.target
        if not (0 < g < h) or self.k < 0 or self.spread < 0 or self.min_pairs < 1:
            raise ValueError(f"need 0 < target[0] < target[1], k >= 0, spread >= 0 and min_pairs >= 1; got "
                             f"target={self.target}, k={self.k}, spread={self.spread}, min_pairs={self.min_pairs}")
        if self.screen < 0 or self.finalists < 1:
            raise ValueError(f"need screen >= 0 (0: every candidate on every held-out batch) and finalists >= 1; "
                             f"got screen={self.screen}, finalists={self.finalists}")
        (a, b), (c, d), (e, f) = self.inner, self.near, self.fallback
        if not (0 < a < b <= 1 and 0 < c < d and 0 < e < f <= 1) or self.tries < 1 or self.recentre < 0:
            raise ValueError(f"need 0 < inner[0] < inner[1] <= 1, 0 < near[0] < near[1], 0 < fallback[0] < fallback[1]"
                             f" <= 1, tries >= 1 and recentre >= 0; got inner={self.inner}, near={self.near}, "
                             f"fallback={self.fallback}, tries={self.tries}, recentre={self.recentre}")


@dataclass(frozen=True)
class Window:
    """One candidate measured in the loop: its windows (ms) and whether both lay inside."""
    pattern: GatePattern
    lut_ms: float
    predicted_ms: float
    val_loss: float
    windows: tuple[float | None, ...]
    confirmed: bool

    def to_dict(self) -> dict:
        return {"pattern": self.pattern.bits(), "lut_ms": self.lut_ms, "predicted_ms": self.predicted_ms,
                "val_loss": self.val_loss, "windows_ms": list(self.windows), "confirmed": self.confirmed}


@dataclass(frozen=True)
class DeviceChoice:
    """The member for a device budget, how it was chosen, and what the loop measured."""
    member: Architecture
    budget: Budget                 # on the device (measured latency, ms)
    source: str                    # "device" (confirmed inside the inner band; "recentred": by a candidate tried
                                   # after the first ``tries``; "trimmed": by one a few channel groups short of a
                                   # tried candidate measured too dear) | "loop" (none was; measured inside
                                   # the fallback band in the loop) | "lut" (neither: the LUT-only band member)
    candidates: int                # the hypernetwork's patterns near the budget's band (by prediction)
    loop: tuple[Window, ...]       # the candidates measured, in the order tried
    val_loss: float | None
    lut_choice: BandChoice | None  # the LUT-only band member (when none was confirmed)
    spread: float = 0.0            # the relative spread of one window the acceptance used (``Spread``)
    accepted: tuple[float, float] | None = None  # the band two windows' mean had to lie in (x budget)

    @property
    def loop_ms(self) -> float | None:
        """The chosen member's mean window in the loop (None when it was not measured there)."""
        for w in self.loop:
            if w.pattern == self.member.genotype and all(v is not None for v in w.windows):
                return sum(w.windows) / len(w.windows)  # type: ignore[arg-type]
        return None

    def to_dict(self) -> dict:
        return {"budget_ms": self.budget.value, "source": self.source, "pattern": self.member.genotype.bits(),
                "lambda": self.member.tradeoff.scale, "candidates": self.candidates, "val_loss": self.val_loss,
                "spread": self.spread, "accepted": list(self.accepted) if self.accepted else None,
                "loop": [w.to_dict() for w in self.loop]}


class Spread:
    """The relative spread of one window on the device: the prior, or the run's robust estimate from its pairs of
    windows of one network when that is larger and rests on ``min_pairs`` pairs (module doc)."""

    def __init__(self, prior: float, min_pairs: int):
        self.prior, self.min_pairs = prior, min_pairs
        self.diffs: list[float] = []     # |w1 - w2| / mean of each pair measured

    def add(self, windows: Sequence[float | None]) -> None:
        if len(windows) >= 2 and all(v is not None and v > 0 for v in windows[:2]):
            a, b = windows[0], windows[1]
            self.diffs.append(abs(a - b) / ((a + b) / 2))  # type: ignore[operator]

    @property
    def value(self) -> float:
        if len(self.diffs) < self.min_pairs:
            return self.prior
        return max(self.prior, statistics.median(self.diffs) / (math.sqrt(2) * 0.6745))

    def band(self, config: DeviceBandConfig, n: int) -> tuple[float, float]:
        """The shares of the budget n windows' mean must lie within: the inner band, narrowed to ``k`` predictive
        spreads inside the target band (empty, lo > hi, when the spread leaves nothing)."""
        margin = config.k * self.value * math.sqrt(1 + 1 / n)
        return max(config.inner[0], config.target[0] + margin), min(config.inner[1], config.target[1] - margin)


def ranked(search: BandSearch, near: list, config: DeviceBandConfig) -> list:
    """``near``'s (pattern, ...) tuples in held-out loss order: all on every batch, or with ``config.screen`` the
    ``config.finalists`` of least screened loss first, by their loss on every batch, then the rest by screened loss."""
    patterns = [c[0] for c in near]
    if config.screen and config.screen < len(search.batches) and len(near) > config.finalists:
        screened = search.losses(patterns, batches=config.screen)
        near = sorted(near, key=lambda c: screened[c[0]])
        top, rest = near[: config.finalists], near[config.finalists:]
        search.losses(c[0] for c in top)
        return sorted(top, key=lambda c: search.loss(c[0])) + rest
    search.losses(patterns)    # scored together: blocks the candidates share run once
    return sorted(near, key=lambda c: search.loss(c[0]))


def trimmed(search: BandSearch, loop: Sequence[Window], aim: tuple[float, float], budget: float,
            correction: Correction, to_lut: Callable[[float], float], prev_lut: float, tried: set,
            lams: dict) -> list[tuple]:
    """Candidates (pattern, lambda, LUT ms, "trimmed") one or more channel groups short of the least-loss candidate
    the loop measured just too dear: its window above the ``aim`` band but under the budget's ``TRIM_ABOVE``. They
    are ``chain.trims`` from it (``BandSearch.trimmed_from``: the drops that keep it in or above the band, ranked on
    the chain's own batches) priced by the candidate's own window over its prediction (a network a group short runs
    like it), kept when that price lies in ``aim``. Why: the least-loss candidates often measured at 0.97-1.00 x the
    budget, just above the band a fresh window stays inside, and the loop then took a cheaper candidate of far
    higher loss (issue 12, eleventh session). One parent a budget: trimming every too-dear candidate by a full
    chain cost 1.56-1.69 x a fixed pruning. Nothing without the chain's batches (``BandSearch(chain=0)``)."""
    dear = [w for w in loop if w.windows[0] is not None and aim[1] * budget < w.windows[0] <= TRIM_ABOVE * budget]
    if not dear:
        return []
    r = search.result
    model = r.models[r.primary]
    w = min(dear, key=lambda w: w.val_loss)
    ratio = w.windows[0] / w.predicted_ms   # type: ignore[operator]
    out = []
    for p in search.trimmed_from(w.pattern, to_lut(aim[0] * budget / ratio), to_lut(aim[1] * budget / ratio)):
        lut = model.genotype_cost(r.space, p)
        if p not in tried and lut >= prev_lut and aim[0] * budget <= ratio * correction.apply(lut) <= aim[1] * budget:
            out.append((p, lams[w.pattern], lut, "trimmed"))
    return out


def by_loss(search: BandSearch, cands: list[tuple]) -> list[tuple]:
    """``cands`` (pattern first) in held-out loss order, scored together."""
    search.losses(c[0] for c in cands)
    return sorted(cands, key=lambda c: search.loss(c[0]))


def device_members(search: BandSearch, budgets: Sequence[Budget], correction: Correction,
                   measure: Callable[[GatePattern], float | None], config: DeviceBandConfig = DeviceBandConfig(),
                   *, lut_floor: float = 0.92) -> list[DeviceChoice]:
    """One member per device latency budget, ascending, confirmed on the device where it can be (module doc).

    ``lut_floor``: the LUT-only fallback's band, [lut_floor, inner[1]] x budget by prediction (``band``).
    """
    r = search.result
    metric = r.primary    # the device's latency, as the LUT sums it
    model = r.models[metric]
    out: list[DeviceChoice] = []
    prev_lut, prev_ms = 0.0, 0.0
    spread = Spread(config.spread, config.min_pairs)   # across budgets: every pair the run measured
    lo_lut, hi_lut = r.reachable(metric)

    def to_lut(ms: float) -> float:
        return min(max(correction.invert(ms), lo_lut), hi_lut)

    # the band search's tuned candidates (``BandSearch.tune``) for every budget's bracket at once, a few lambdas a pass
    search.prepare(metric, [(to_lut(config.near[0] * b.value), to_lut(config.near[1] * b.value)) for b in budgets
                            if b.metric == metric])
    for b in sorted(budgets, key=lambda x: x.value):
        if b.metric != metric:
            raise ValueError(f"device-confirmed members need budgets in {metric} (the cost the family was searched "
                             f"with), got {b}")
        lo, hi = config.near[0] * b.value, config.near[1] * b.value
        found = search.around(metric, to_lut(lo), to_lut(hi))
        near = []
        for p, (lam, _how) in found.items():
            lut = model.genotype_cost(r.space, p)
            if lo <= correction.apply(lut) <= hi and lut >= prev_lut:
                near.append((p, lam, lut))
        near = ranked(search, near, config)
        loop, chosen, lams = [], None, {}

        def inside(v: float | None, band: tuple[float, float]) -> bool:
            return v is not None and band[0] * b.value <= v <= band[1] * b.value and v >= prev_ms

        def settled(windows: tuple[float | None, ...]) -> bool:
            """The windows' mean lies within the band a fresh window would stay inside the target from (``Spread``)."""
            if not windows or any(v is None for v in windows):
                return False
            return inside(sum(windows) / len(windows), spread.band(config, len(windows)))  # type: ignore[arg-type]

        def attempt(p: GatePattern, lam: float, lut: float) -> bool:
            first = measure(p)
            windows: tuple[float | None, ...] = (first,)
            if inside(first, config.inner):
                windows += (measure(p),)   # a new window: one lucky window is not evidence
                spread.add(windows)
            ok = len(windows) == 2 and all(inside(v, config.inner) for v in windows) and settled(windows)
            loop.append(Window(p, lut, correction.apply(lut), search.loss(p), windows, ok))
            lams[p] = lam
            return ok

        for p, lam, lut in near[: config.tries]:
            if attempt(p, lam, lut):
                chosen = (p, lam, "device")
                break
        if chosen is None and config.recentre:
            # none confirmed: the windows say how far off the prediction is near this budget (the device's
            # spread between networks of one LUT sum); the next candidates whose prediction, so corrected, lies
            # in the inner band, least loss first
            tried = {w.pattern for w in loop}
            ratios = sorted(w.windows[0] / w.predicted_ms for w in loop if w.windows[0] is not None)
            if ratios:
                local = ratios[len(ratios) // 2]
                aim = spread.band(config, 2)
                if aim[0] > aim[1]:
                    aim = config.inner
                rest = [(*c, "recentred") for c in near if c[0] not in tried and
                        aim[0] * b.value <= local * correction.apply(c[2]) <= aim[1] * b.value]
                if config.trim:
                    rest = by_loss(search, rest + trimmed(search, loop, aim, b.value, correction, to_lut,
                                                          prev_lut, tried, lams))
                for p, lam, lut, how in rest[: config.recentre]:
                    if attempt(p, lam, lut):
                        chosen = (p, lam, how)
                        break
        middle = (config.target[0] + config.target[1]) / 2 * b.value

        def nearest_middle(ws: list[Window]) -> Window | None:
            """The one of ``ws`` whose windows' mean lies nearest the target band's middle."""
            return min(ws, default=None, key=lambda w: abs(sum(w.windows) / len(w.windows) - middle))  # type: ignore

        if chosen is None:   # the loop is in loss order: the first measured inside the fallback band whose windows
            # pass the spread's test (``settled``); when none does, the one whose mean lies nearest the target's middle
            fallback = [w for w in loop if all(inside(v, config.fallback) for v in w.windows)]
            w = next((w for w in fallback if settled(w.windows)), None) if config.k else (fallback or [None])[0]
            w = w or nearest_middle(fallback)
            chosen = (w.pattern, lams[w.pattern], "loop") if w is not None else None
        if chosen is None:   # step 4: the LUT's band member, measured first with ``measure_lut``
            band = search.member(Budget(metric, to_lut(config.inner[1] * b.value)),
                                 max(to_lut(lut_floor * b.value), prev_lut))
            lut_member = band.member
            if out and lut_member.costs[metric] < prev_lut:
                lut_member = out[-1].member    # the costs never fall as the budget grows (``band.band_members``)
            p, lam = lut_member.genotype, lut_member.tradeoff.scale
            if config.measure_lut:   # a network measured inside beats one only predicted inside
                if p not in {w.pattern for w in loop} and attempt(p, lam, lut_member.costs[metric]):
                    chosen = (p, lam, "device")
                else:
                    w = nearest_middle([w for w in loop if all(inside(v, config.target) for v in w.windows)])
                    chosen = (w.pattern, lams[w.pattern], "loop") if w is not None else None
        accepted = spread.band(config, 2)
        if chosen is not None:
            member = search.architecture(chosen[0], chosen[1])
            choice = DeviceChoice(member, b, chosen[2], len(near), tuple(loop), search.loss(chosen[0]), None,
                                  spread.value, accepted)
            prev_ms = choice.loop_ms or prev_ms
        else:
            choice = DeviceChoice(lut_member, b, "lut", len(near), tuple(loop), band.val_loss, band, spread.value,
                                  accepted)
        prev_lut = max(prev_lut, choice.member.costs[metric])
        out.append(choice)
    return out
