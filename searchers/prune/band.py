"""Members within a band: closing the gaps of the family between the lambdas' derived networks.

Bisection on lambda (``Family.for_budget``) gives the dearest member of the monotone curve within a
budget b. A linear penalty only reaches the networks on the lower convex hull of validation loss
against cost, so between two neighbouring members there can be a gap: a budget that falls in it
gets the cheaper member, far under b (on the host's LUT a 0.165 ms budget got a 0.10 ms network).

``band_member`` looks for a network within ``[floor, b]`` among the patterns the hypernetwork itself
produces between the two members that bracket b: at ``points`` lambdas spread between them (6), each
gate's mode and ``samples`` draws (6) of the gates (gamma ~ Bernoulli(sigmoid(theta(lambda))), the
Gumbel-Softmax sample at any temperature once hardened). Of those whose exact cost lies within the
band it takes the one with the least cross-entropy on held-out validation batches (as the search
judged them: frozen weights, BatchNorm on batch statistics; computed on the pruned networks,
``score``). Nothing is forced into the band: when no produced pattern lands in it, the bisection
member is returned and the reason is recorded.

The lambdas that bracket a budget are the dense family's (``curve_points``); with ``gap`` > 0 also, where
neighbours' members differ in cost by more than that share, the lambdas bisection puts into the jump
(``BandSearch.scales``), so a budget inside a jump is bracketed where the gates change. Off by default: on the
CIFAR-10 subset it did not put a candidate into the band where the family had none (fourth session).

With ``tune`` > 0 (eighth session) the candidates also include, at each end of the bracket, the modes of the gate
logits tuned at that lambda for ``tune`` steps from the hypernetwork's output (``refine.tuned``) on ``tune_batches``
(batches of the gates' split other than the held-out ones that rank the candidates; cached per lambda, so budgets
that share a bracket's end pay once).

With ``chain`` > 0 (ninth session) they also include a dense chain from the dearer end's mode (``chain.chain``): one
channel group dropped at a time, the least rise in cross-entropy per cost saved first (measured on ``chain`` batches
of the gates' split other than the held-out ones, again every ``chain_refresh`` drops: by default 99, i.e. once per
start, as chosen on held-out loss in the ninth session), down to below the band; cached per start, so budgets that
share a bracket's dearer end extend one chain.

``band_members`` serves ascending budgets in turn, each band's floor raised to the previous member's
cost, so the members' costs never fall as the budget grows. A device budget is a band of measured
latency, [band x b, b]; the caller maps both ends to LUT sums through the device's correction.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

import torch

from hilnas.searchers.hypernet.family import Architecture
from hilnas.searchers.prune.score import HeldOutLoss
from hilnas.searchers.result import Budget

if TYPE_CHECKING:
    from hilnas.searchers.prune.search import PruneResult
    from hilnas.searchers.spaces.resnet import GatePattern
    from hilnas.searchers.train import Batch


@dataclass(frozen=True)
class BandChoice:
    """The member chosen for a budget and where it came from."""
    member: Architecture
    budget: Budget
    floor: float            # the band's lower end, in the budget's metric
    source: str             # "curve" (bisection was within the band) | "mode" | "sample" | "tuned" | "chain" | "below" (none in band:
                            # the bisection member) | "previous" (none in band: the previous budget's member)
    candidates: int         # distinct patterns produced between the bracketing members
    in_band: int            # of them within [floor, budget]
    val_loss: float | None  # the chosen pattern's held-out cross-entropy (None for "curve" and "below")

    @property
    def in_band_found(self) -> bool:
        return self.source in ("curve", "mode", "sample", "tuned", "chain")


TOGETHER = 4   # lambdas ``prepare`` tunes in one pass (phase 2's lambdas per step)
# the chain's batches when a run does not say (``PruneRunConfig.chain_batches`` None, ``bench_prune.py --chain``):
# chosen on the gates' split in the ninth session (docs/performance.md, "A dense chain of single-group drops")
DEFAULT_CHAIN_BATCHES = 2


def default_chain(val_batches: int, held_out: int) -> int:
    """The chain's batches when a run does not say: ``DEFAULT_CHAIN_BATCHES`` where a validation split of
    ``val_batches`` holds them besides the ``held_out`` ones that rank the candidates, else 0 (no chain)."""
    return DEFAULT_CHAIN_BATCHES if val_batches - held_out >= DEFAULT_CHAIN_BATCHES else 0


def extra_batches(tune: int, chain: int) -> int:
    """Batches of the gates' split, besides the held-out ones, that ``tune`` and ``chain`` need (0: none)."""
    return max(chain, 1) if tune or chain else 0


class BandSearch:
    """Candidates and their held-out losses for one trained family (losses cached across budgets)."""

    def __init__(self, result: PruneResult, batches: list[Batch], *, points: int = 6, samples: int = 6,
                 seed: int = 0, gap: float = 0.0, tune: int = 0, tune_batches: Sequence[Batch] = (),
                 tune_at: str = "ends", tune_batch: int | None = None, chain: int = 0,
                 chain_refresh: int = 99):
        if points < 2 or samples < 0 or not batches or not 0 <= gap < 1 or tune < 0 or chain < 0 or chain_refresh < 1:
            raise ValueError("band search needs points >= 2, samples >= 0, gap in [0, 1), tune >= 0, chain >= 0, "
                             "chain_refresh >= 1 and held-out batches")
        if tune_at not in ("ends", "dearer", "cheaper", "aimed") or (tune_batch is not None and tune_batch < 1):
            raise ValueError(f"tune_at must be 'ends', 'dearer', 'cheaper' or 'aimed' and tune_batch >= 1, got {tune_at!r}, "
                             f"{tune_batch}")
        if len(tune_batches) < extra_batches(tune, chain):
            raise ValueError("tune > 0 and chain > 0 need tune_batches (batches of the gates' split other than the "
                             f"held-out ones; at least chain = {chain} of them)")
        self.result, self.batches, self.points, self.samples, self.gap = result, batches, points, samples, gap
        self.tune, self.tune_at = tune, tune_at
        self._tune_batches = itertools.cycle([(x[:tune_batch], y[:tune_batch]) for x, y in tune_batches]) if tune else None
        self._tuned: dict[tuple[float, float | None], list[GatePattern]] = {}
        self.chain_batches = list(tune_batches[:chain])
        self.chain_refresh = chain_refresh
        self._chain_scorer = HeldOutLoss(result.net, self.chain_batches) if chain else None
        self._chains: dict[GatePattern, list[GatePattern]] = {}   # start -> the chain from it so far
        self.chain_cpu = 0.0
        self.tune_steps, self.tune_cpu = 0, 0.0    # tuning steps taken and their CPU seconds (the work ``tune`` adds)
        self._tune_generator = torch.Generator().manual_seed(seed + 1)   # its own: the other candidates' draws stay
        self._scales: dict[str, list[float]] = {}
        self.generator = torch.Generator().manual_seed(seed)
        self.scorer = HeldOutLoss(result.net, batches)

    @classmethod
    def on_held_out(cls, result: PruneResult, val: Iterable[Batch], batches: int, *, seed: int = 0,
                    tune: int = 0, chain: int = 0) -> BandSearch:
        """A band search scoring its candidates on the first ``batches`` batches of the held-out ``val``; with ``tune``
        > 0 its tuned candidates are tuned on the rest of ``val``, with ``chain`` > 0 its chains estimated on the
        next ``chain`` batches."""
        if not tune and not chain:
            return cls(result, list(itertools.islice(val, batches)), seed=seed)
        val = list(val)
        return cls(result, val[:batches], seed=seed, tune=tune, tune_batches=val[batches:], chain=chain)

    def loss(self, pattern: GatePattern) -> float:
        """Held-out cross-entropy of ``pattern`` (cached; ``score.HeldOutLoss``)."""
        return self.scorer(pattern)

    def losses(self, patterns: Iterable[GatePattern], *, batches: int | None = None) -> dict[GatePattern, float]:
        """The held-out losses of several patterns, scored together (shared blocks computed once); on the first
        ``batches`` held-out batches only when given (a screen, ``confirm``)."""
        return self.scorer.losses(patterns, batches=batches)

    def candidates(self, lam_lo: float, lam_hi: float) -> dict[GatePattern, tuple[float, str]]:
        """pattern -> (the lambda it came from, "mode" | "sample"), from ``points`` lambdas in [lam_lo, lam_hi]."""
        r, found = self.result, {}
        for i in range(self.points):
            lam = lam_lo + (lam_hi - lam_lo) * i / (self.points - 1)
            theta = r.logits(lam)
            found.setdefault(r.layout.pattern(theta), (lam, "mode"))
            for _ in range(self.samples):
                u = torch.rand(theta.shape, generator=self.generator).clamp(1e-6, 1 - 1e-6)
                found.setdefault(r.layout.pattern(theta + torch.log(u) - torch.log1p(-u)), (lam, "sample"))
        return found

    def member(self, budget: Budget, floor: float) -> BandChoice:
        """The member for ``budget`` within [floor, budget] if the hypernetwork produces one (see the module)."""
        r, metric = self.result, budget.metric
        base = r.for_budget(budget)      # BudgetRangeError outside the family's range
        if base.costs[metric] >= floor:
            return BandChoice(base, budget, floor, "curve", 0, 0, None)
        found = self.around(metric, budget.value, budget.value)
        model = r.models[metric]
        inside = [(p, lam, how) for p, (lam, how) in found.items()
                  if floor <= model.genotype_cost(r.space, p) <= budget.value]
        if not inside:
            return BandChoice(base, budget, floor, "below", len(found), 0, None)
        self.losses(c[0] for c in inside)
        pattern, lam, how = min(inside, key=lambda c: self.loss(c[0]))
        return BandChoice(self.architecture(pattern, lam), budget, floor, how, len(found), len(inside),
                          self.loss(pattern))

    def around(self, metric: str, lo: float, hi: float) -> dict[GatePattern, tuple[float, str]]:
        """``candidates`` between the family's lambdas that bracket the costs [lo, hi] in ``metric`` (``scales``): the
        smallest lambda whose member costs more than hi, the largest whose member costs at most lo."""
        lam_lo, lam_hi = self.bracket(metric, lo, hi)
        found = self.candidates(min(lam_lo, lam_hi), max(lam_lo, lam_hi))
        if self.tune and self.tune_at == "aimed":   # from the bracket's middle, lambda following the band's middle
            lam = (lam_lo + lam_hi) / 2
            for p in self.tuned(lam, target=(lo + hi) / 2):
                found.setdefault(p, (lam, "tuned"))
        elif self.tune:
            ends = self._ends(lam_lo, lam_hi)
            self._tune_together(ends)
            for lam in ends:
                for p in self._tuned[(lam, None)]:
                    found.setdefault(p, (lam, "tuned"))
        if self.chain_batches:
            dearer = min(lam_lo, lam_hi)
            for p in self.chained(self.result.architecture(dearer).genotype, lo):
                found.setdefault(p, (dearer, "chain"))
        return found

    def chained(self, start: GatePattern, lo: float) -> list[GatePattern]:
        """``chain.chain`` from ``start`` down to below ``lo`` (the primary metric), extending the cached chain."""
        from hilnas.searchers.prune.chain import chain
        r = self.result
        costs = r.costs[r.primary]
        got = self._chains.setdefault(start, [])
        last = got[-1] if got else start
        if costs.pattern_cost(last) >= lo and any(any(m) for m in last.masks):
            c0 = time.process_time()
            got += chain(r, last, self._chain_scorer, lo, refresh=self.chain_refresh)
            self.chain_cpu += time.process_time() - c0
        return [p for p in got if costs.pattern_cost(p) >= lo] + [p for p in got if costs.pattern_cost(p) < lo][:1]

    def trimmed_from(self, start: GatePattern, lo: float, hi: float) -> list[GatePattern]:
        """``chain.trims`` from ``start`` into [lo, hi] (the primary metric) on the chain's batches; its CPU counted
        with the chains' (``chain_cpu``). Nothing without them."""
        from hilnas.searchers.prune.chain import trims
        if self._chain_scorer is None:
            return []
        c0 = time.process_time()
        out = trims(self.result, start, self._chain_scorer, lo, hi)
        self.chain_cpu += time.process_time() - c0
        return out

    def _ends(self, a: float, b: float) -> list[float]:
        return sorted({"ends": {a, b}, "dearer": {min(a, b)}, "cheaper": {max(a, b)}}[self.tune_at])

    def bracket(self, metric: str, lo: float, hi: float) -> tuple[float, float]:
        """The family's lambdas that bracket the costs [lo, hi] (``around``)."""
        r = self.result
        pts = r.curve(self.scales(metric), metric=metric).points
        dearer = [p.tradeoff.scale for p in pts if p.costs[metric] > hi]
        cheaper = [p.tradeoff.scale for p in pts if p.costs[metric] <= lo]
        return (max(dearer) if dearer else 0.0), (min(cheaper) if cheaper else r.Lambda)

    def prepare(self, metric: str, bands: Sequence[tuple[float, float]]) -> None:
        """Tune, ahead of the budgets, every lambda the bands' brackets will ask for (``tune_at`` "ends", "dearer",
        "cheaper"), up to ``TOGETHER`` at a time on shares of each batch (``refine.tuned_together``): the same
        candidates ``around`` then finds cached, for about a quarter of the steps."""
        if not self.tune or self.tune_at == "aimed":
            return
        want: list[float] = []
        for lo, hi in bands:
            want += [lam for lam in self._ends(*self.bracket(metric, lo, hi)) if lam not in want]
        self._tune_together(want)

    def _tune_together(self, lams: Sequence[float]) -> None:
        from hilnas.searchers.prune.refine import tuned_together
        want = [lam for lam in lams if (lam, None) not in self._tuned]
        for i in range(0, len(want), TOGETHER):
            group = want[i:i + TOGETHER]
            c0 = time.process_time()
            for lam, patterns in zip(group, tuned_together(self.result, group, self._tune_batches, self.tune,
                                                           generator=self._tune_generator)):
                self._tuned[(lam, None)] = patterns
            self.tune_steps += self.tune
            self.tune_cpu += time.process_time() - c0

    @property
    def tuned_lambdas(self) -> list[float]:
        """The lambdas tuned so far (each once)."""
        return sorted(lam for lam, _ in self._tuned)

    def was_tuned(self, pattern: GatePattern) -> bool:
        """Whether ``pattern`` is one of the tuned logits' modes (the hypernetwork may produce it too)."""
        return any(pattern in ps for ps in self._tuned.values())

    def was_chained(self, pattern: GatePattern) -> bool:
        """Whether ``pattern`` is on one of the chains (the hypernetwork may produce it too)."""
        return any(pattern in ps for ps in self._chains.values())

    def tuned(self, lam: float, target: float | None = None) -> list[GatePattern]:
        """``refine.tuned`` at ``lam`` (aimed at the cost ``target`` when given) for ``tune`` steps (cached)."""
        from hilnas.searchers.prune.refine import tuned
        key = (lam, target)
        if key not in self._tuned:
            c0 = time.process_time()
            self._tuned[key] = tuned(self.result, lam, self._tune_batches, self.tune, generator=self._tune_generator,
                                     target=target)
            self.tune_steps += self.tune
            self.tune_cpu += time.process_time() - c0
        return self._tuned[key]

    def scales(self, metric: str) -> list[float]:
        """The dense family's lambdas (``curve_points``) and, where two neighbours' members differ in cost by more
        than ``gap`` of the dearer one, the lambdas that bisection (in the hypernetwork's input, ``bisect_steps``
        deep) puts into the jump, so a budget inside it is bracketed where the gates change, not by lambdas far
        apart (the third session's CIFAR-10 family jumped 23.2 -> 7.5 ms LUT between neighbours). Cached."""
        if metric not in self._scales:
            r = self.result
            dense = r.architectures(r.grid(r.config.curve_points))

            def jump(a: Architecture, b: Architecture) -> bool:
                ca, cb = a.costs[metric], b.costs[metric]
                return abs(ca - cb) > self.gap * max(ca, cb)

            self._scales[metric] = (r.bisected_scales(dense, jump) if self.gap > 0
                                    else sorted({a.tradeoff.scale for a in dense}))
        return self._scales[metric]

    def architecture(self, pattern: GatePattern, lam: float) -> Architecture:
        """``pattern`` as a member found at ``lam``: its exact costs and the expected costs of lambda's gates."""
        r = self.result
        block, group = r.layout.split(torch.sigmoid(r.logits(lam)))
        return Architecture(r.tradeoff(lam), pattern,
                            {m: cm.genotype_cost(r.space, pattern) for m, cm in r.models.items()},
                            {m: float(c.expected(block, group)) for m, c in r.costs.items()})


def band_members(search: BandSearch, bands: Sequence[tuple[Budget, float]]) -> list[BandChoice]:
    """One member per (budget, floor), budgets ascending, each within [max(floor, previous member's cost), budget]
    when the hypernetwork produces one there."""
    out: list[BandChoice] = []
    for b, floor in sorted(bands, key=lambda bf: bf[0].value):
        if out and out[-1].budget.metric == b.metric:
            floor = max(floor, out[-1].member.costs[b.metric])
        choice = search.member(b, floor)
        if choice.source == "below" and out and choice.member.costs[b.metric] < out[-1].member.costs[b.metric]:
            # none in band, and the bisection member is cheaper than the last budget's: keep that one (within this
            # budget too), so the costs never fall as the budget grows
            choice = BandChoice(out[-1].member, b, floor, "previous", choice.candidates, 0, out[-1].val_loss)
        out.append(choice)
    return out
