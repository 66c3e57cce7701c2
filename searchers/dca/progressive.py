"""Progressive discretisation of an NB201 cell under the budget: one edge decided at a time.

An NB201 cell has 6 edges and one op on an edge recurs in every cell of the network, so one
edge's op moves the network's cost by a large step (on the simulated Raspberry Pi 4, a 3x3
conv in place of a 1x1 conv adds ~13 ms to a full-size network). Derived all at once from the
alphas, the cell's cost jumps: Adam moves every alpha at its own full step, so under the
multiplier the edges flip together and the derived cost crosses the budget band back and forth.
As SGAS decides one edge at a time during the search, ``Progressive`` fixes the edges one by
one at evenly spaced architecture steps, the last at the very end, and what dual ascent holds
in the band is the exact expected cost of the cell (``cost.nb201_exact_expected_cost``): the
decided edges as they are, the others as the alphas weigh them. Each decision is the
Lagrangian's: the undecided edge whose choice is the most certain takes the op maximising

    log w_eo - penalty(E[cost | edge e has op o])       (the multipliers' term of the Lagrangian),

(with the augmented Lagrangian, ``rho / 2 * violation^2`` of that expected cost too), so the later
edges compensate for the earlier ones while the multiplier keeps the expectation in the band.
The last decision fixes the cell, so its expected cost is exact there and the budget is a hard
constraint: the last edge takes the best-scoring op among those that keep the cell within the
budget (as the device will show it) when there is one. (The quadratic term of the augmented
Lagrangian is symmetric: on its own it prefers 10 % over the budget to 50 % under it.)

The late decisions are taken on the device. With the device in the loop (``measure``), once the
undecided edges leave at most ``on_device`` cells (default 25: the last two decisions, <= 25 and
<= 5 cells), every one of those cells is measured on the device (each once) and
the decision sees their *measured* costs, in the penalty, the budget and the look-ahead alike: the
prediction times one network's ratio measured / predicted is off by up to ~12 % (up to ~25 % for a
cell of quite other ops) on the simulated devices, about the band's width, so a decision on it
can choose an op none of whose completions the device shows in the band. On the device, when no
measured completion lies in the band, the nearest *within the budget* are preferred, as the last
decision always did. Measurements spread by a few % (the simulated devices: ±2 % between the
10th and 90th percentile, up to 5 %), so a cell measured just inside the band's edge leaves it on
the next measurement about half the time: on the device, the decisions aim at the band shrunk by
``margin`` on each side when some measured completion lies there (``aimed_inside``), else at the
band. Each decision records ``on_device`` and the cells it chose between (arch_str -> measured
device cost); ``measured`` holds every cell measured. The result is still scored afresh after the
search (a new export and window), never on these measurements.

A decision on the device whose measured completions have none in the band does not settle for the
nearest (``reopen``): the corrected LUT is off per cell by a median ~7 %, up to 40 %, so four decisions on
the prediction can leave no completion in the band. It reopens an earlier decision instead: the
correction is refitted by least squares on every cell measured in this search (``refit``: measured ~
a x prediction + b; >= 25 cells by then), another op of a decided edge whose completions land in the band
by that refit (cells measured already: by their measurement) has its completions measured (and
confirmed), and the first that measures one in the band replaces the decision (``reopened``; at most
``reopen`` tries per search, each started only while the reopenings' measurements so far plus its first
ones stay within ``reopen_measurements``). The margin the decisions
on the device aim inside follows the measured spread once three cells are confirmed (``margin_sigmas``
standard deviations of one measurement, pooled over the confirmations), narrowing toward the band's
middle where no measured cell lies inside it. Among the cells confirmed in the aimed band, the choice
is by the supernet's one-shot accuracy on validation batches when ``accuracy`` is given (a weight-sharing
NAS step; otherwise by the Lagrangian).

Edges decided by the supernet's accuracy (``select="perturbation"``, what ``DcaConfig``'s default ``"auto"`` takes on
NB201, ``select.py``; this class's default ``"alpha"``: the Lagrangian above). The
alphas of a supernet at 16-26 % validation accuracy decide the early edges with a softmax certainty ~1 after a few
architecture steps, and on the benchmark those edges took pooling, skip or none where a conv of the same cost fitted:
the failure of magnitude-based selection in DARTS on NB201 (Wang et al. 2021, DARTS-PT). So, as DARTS-PT, each
decision that has no measured cells to choose among by one-shot accuracy scores every feasible op of every undecided
edge (the ops the look-ahead keeps, as above: the cost is held by feasibility, not by the score) by the supernet's
validation log-likelihood (minus the mean cross-entropy, nats per image) on fixed batches with that edge fixed to the
op, the decided edges fixed and the other undecided edges mixed as in the search (``supernet_score(fixed) ->
(-loss, accuracy)``). The multiplier's term does not enter: the op is chosen by its score among the ops whose
completions the look-ahead keeps in the band (log w and the penalty are not on the score's scale, and rho = 100
would swamp differences of ~0.01-0.1 nats). The edge decided is the one whose best op leads its second by the most
(an edge with one feasible op first, unscored); ties by accuracy, then by the alphas. Each such decision records
``perturbation`` (edge -> op -> [score, accuracy]) and ``select_gap``; ``select_s`` is the wall time of all those
evaluations, ``select_evals`` their number.

A device predictor fitted before the decisions narrow the cell (``fit_sample``). The decisions on the prediction see
the corrected LUT times one network's ratio, and the LUT's error is per op (a pooling cell's ratio can be 0.73 where
a conv cell's is ~1), so no ratio fits every cell and four decisions can leave no completion the device shows in the
band. Before the first decision, ``fit_sample`` cells the scaled prediction puts near the band are measured once
(``fit_sampled``), and every decision from then on predicts each cell as a x LUT + b + a ridge-fitted delta per
(edge, op) of the cell's live form (``fit_device``), refitted on every cell measured so far; the fit replaces the
scaled prediction wherever the decisions use it (the look-ahead, the ratio-robust rule, the reopening) while its
leave-one-out error is below the ratio's on the same cells (``fits`` records each). ``reopen_sigmas``: a decision
on the device whose measured cells lie in the band only within that many measured standard deviations of its
edges reopens too.

Aiming at the band's middle (``middle``, ``inside_sigmas``). A cell the device confirmed at the band's edge lands
outside it on a fresh measurement about half the time, and the decisions that reach only such cells are the benchmark's
last misses. With ``middle`` the decisions on the prediction look ahead to the band shrunk by darts_nodes' ``MIDDLE``
shares of its width on each side (0.4, then 0.25), the first some completion reaches, so a completion near the middle
stays reachable (each records ``aimed_middle``). With ``inside_sigmas`` (k) a decision on the device counts a measured
cell *inside* only when it lies k standard deviations of one fresh measurement (the spread pooled over the
confirmations, x sqrt(1 + 1 / repeats): about a median of ``repeats``) inside each edge of ``inside_band`` (the
target's band; ``margin`` until three cells are confirmed; at most 0.45 of its width); while none does, an earlier
decision is reopened toward that inner band (``_reopen``, with its bounds), and only when that fails is the measured
cell deepest inside the band taken (the margin x 0.75, 0.5, 0.25, then the band). Each decision on the device records
``inside_band`` and ``inside`` (chosen among cells there).

Room for the choice (``widen``, ``widen_middle``, ``widen_slack``). Aimed at the band's middle and kept to the ops
whose completions land there at the most of the ratios (``tolerance``), the decisions on the prediction leave one
feasible op on most edges (81 of 120 on the benchmark), so the selection rule (``select``) rarely chooses. A decision
taken while at least ``widen`` edges are undecided (an early one: the later decisions and the measurements can still
correct it) keeps instead every op some completion of which lands where the look-ahead aims at the current ratio:
the ratio-robust rule keeps the ops within ``widen_slack`` (default 4: all) of the most ratios covered, and the look-ahead
aims at the ``MIDDLE`` shares <= ``widen_middle`` (default 0.4: as ``middle`` does; 0: the whole band). The later
decisions are taken as before. Each decision records ``widened`` and ``feasible_pairs`` (the feasible (edge, op)
pairs of the undecided edges). ``widen=4`` (the first three decisions) was chosen in the offline replay
(``benchmarks/nb201_decisions_offline.py``) as the rule that kept its band hits and lowered the regret a perfect
score could reach; with the supernet's score it raised the regret on the held-out seed (off by default: the score
chooses about as well as a uniform pick; docs/performance.md, "Room for the score").

A measurement is trusted only once confirmed. A decision that keeps a cell because its measurement
lies in the band keeps the lucky measurements too (the simulated devices draw an offset per call,
1-2 %; the fresh measurement then regresses): so every cell measured in the band or within
``window`` of it is measured again (``remeasure``: a new call), up to ``repeats`` measurements in
all while their median stays there, and the decisions see the median (``samples`` holds them all,
each decision's ``repeats`` those of its cells measured more than once). Bounded: at most
``on_device`` cells x (``repeats`` - 1) extra measurements per search; cells far from the band are
measured once.

The decisions on the prediction are robust to the device's ratio (``tolerance``). That ratio is one
measured network's, and the cells the later decisions measure differ from it (the ratio of the
epoch's network moved by up to 15 % between epochs on the benchmark), so an op whose completions
land in the band only at the current ratio strands the decisions on the device. Of each edge's
feasible ops, those whose completions land in the band at the most of five ratios spanning
``1 +- tolerance`` times the current one stay feasible; each decision records ``coverage`` (of 5).

Decisions look ahead to the band. A greedy decision can strand the cell: each edge takes the op
whose *expected* cost scores best, but the cell is a discrete choice, and after five decisions no
op of the last edge may land the cell in the band (the benchmark's misses before this rule were
of this kind, systematically per budget). So every decision chooses only among the feasible ops:
those for which some completion of the still-undecided edges lands the cell's cost, as the device
will show it (the full-size, corrected prediction times the device's current ratio), in the band
``lo * B <= c <= hi * B``. NB201 has at most 5^5 completions per op; they are enumerated exactly
(all 15,625 cells are costed once). The Lagrangian still chooses among the feasible ops. The last
decision's feasible ops are those whose cell, measured on the device when it is in the loop, lies
in the band. This is how the cell is derived, not a repair of it: ``repaired`` stays false, and
each decision records whether the rule removed ops (``restricted``). When no completion lands in
the band (the device's ratio moved since the earlier decisions, or the last edge's measured
cells all miss it), the decision falls back to the ops of the completions *nearest* the band
(the last decision: the nearest cell within the budget when there is one) and records it
(``fallback``, and ``miss``: by how much, in the device's unit). (A first version fell back to the
greedy rule without look-ahead; on the benchmark that left most of its fallbacks far from the band.)
"""
from __future__ import annotations

import math
import statistics
import time
from typing import TYPE_CHECKING, Callable

import torch

from hilnas.searchers.cost import CostTables, nb201_cell_costs, nb201_cells, nb201_exact_expected_cost
from hilnas.searchers.genotype import NB201Genotype

if TYPE_CHECKING:
    from hilnas.searchers.supernet import Supernet


SELECT = ("alpha", "perturbation")   # how the decisions on the prediction choose an edge's op (module docstring)


class Progressive:
    """Fixes the supernet's NB201 edges one at a time at the given architecture steps; see the module docstring.

    ``penalty(cost)`` is the Lagrangian's cost term at the current multipliers and ``within(cost)``
    whether a cost is within the budget (None: no hard constraint), both for the device's cost;
    ``band = (lo * B, hi * B)`` is the device cost the decisions look ahead to (None: no look-ahead);
    ``scale()`` turns a predicted cost into the device's (None: 1); ``measure(genotype)`` gives the
    device's cost of a whole cell, used once at most ``on_device`` cells remain (None: the scaled
    prediction throughout); ``margin`` (device cost): on the device, aim at the band shrunk by it on
    each side when some measured completion lies there; ``repeats``, ``window`` (device cost) and
    ``remeasure(genotype)`` (a new measurement; default ``measure``): the confirmation of measured
    cells near the band; ``tolerance``: the decisions on the prediction robust to the ratio; ``reopen`` and
    ``reopen_measurements``: backtracking on the device; ``margin_sigmas``: the margin from the measured spread;
    ``accuracy(genotype)``: the one-shot accuracy the choice among confirmed in-band cells is made by;
    ``fit_sample``: the fitted device predictor; ``reopen_sigmas``: reopening near the band's edge; ``middle``,
    ``inside_sigmas`` and ``inside_band`` (device cost): aiming at the band's middle; ``select`` and
    ``supernet_score(fixed) -> (validation log-likelihood, accuracy)``: the edges decided by the supernet's accuracy;
    ``widen``, ``widen_middle``, ``widen_slack``: room for the choice in the early decisions.
    """

    def __init__(self, model: Supernet, tables: CostTables, steps: list[int], penalty: Callable[[float], float],
                 within: Callable[[float], bool] | None = None, scale: Callable[[], float] | None = None,
                 measure: Callable[[NB201Genotype], float] | None = None,
                 band: tuple[float, float] | None = None, on_device: int = 25, margin: float = 0.0,
                 repeats: int = 1, window: float = 0.0, remeasure: Callable[[NB201Genotype], float] | None = None,
                 tolerance: float = 0.0, reopen: int = 0, reopen_measurements: int = 0, margin_sigmas: float = 0.0,
                 accuracy: Callable[[NB201Genotype], float] | None = None, fit_sample: int = 0,
                 reopen_sigmas: float = 0.0, inside_sigmas: float = 0.0,
                 inside_band: tuple[float, float] | None = None, middle: bool = False, select: str = "alpha",
                 supernet_score: Callable[[dict[int, int]], tuple[float, float]] | None = None, widen: int = 0,
                 widen_middle: float = 0.4, widen_slack: int = 4):
        if on_device < 0:
            raise ValueError(f"on_device must be >= 0 (0: never decide on measured cells), got {on_device}")
        if margin < 0 or window < 0:
            raise ValueError(f"margin and window must be >= 0, got {margin}, {window}")
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1 (1: each cell measured once), got {repeats}")
        if not 0 <= tolerance < 1:
            raise ValueError(f"tolerance must be in [0, 1) (a relative error of the device's ratio), got {tolerance}")
        if fit_sample < 0 or reopen_sigmas < 0:
            raise ValueError(f"fit_sample and reopen_sigmas must be >= 0, got {fit_sample}, {reopen_sigmas}")
        if inside_sigmas < 0 or (inside_band is not None and not 0 <= inside_band[0] < inside_band[1]):
            raise ValueError(f"inside_sigmas must be >= 0 and inside_band (lo, hi) with 0 <= lo < hi, got "
                             f"{inside_sigmas}, {inside_band}")
        if widen < 0 or not 0 <= widen_middle < 0.5 or widen_slack < 0:
            raise ValueError(f"widen must be >= 0 (0: off), widen_middle in [0, 0.5) and widen_slack >= 0, got "
                             f"{widen}, {widen_middle}, {widen_slack}")
        if select not in SELECT:
            raise ValueError(f"select must be one of {', '.join(SELECT)}, got {select!r}")
        if select == "perturbation" and supernet_score is None:
            raise ValueError("select='perturbation' needs supernet_score (the supernet's validation score with "
                             "edges fixed); pass it or use select='alpha'")
        if reopen < 0 or reopen_measurements < 0 or margin_sigmas < 0:
            raise ValueError(f"reopen, reopen_measurements and margin_sigmas must be >= 0, got {reopen}, "
                             f"{reopen_measurements}, {margin_sigmas}")
        self.model, self.steps, self.penalty, self.within = model, sorted(steps), penalty, within
        self.scale, self.measure, self.band, self.on_device, self.margin = scale, measure, band, on_device, margin
        self.repeats, self.window, self.tolerance = repeats, window, tolerance
        self.remeasure = remeasure or measure   # a new measurement each call (``measure`` may be cached)
        self.reopen, self.reopen_measurements, self.margin_sigmas = reopen, reopen_measurements, margin_sigmas
        self.accuracy = accuracy   # genotype -> the supernet's one-shot accuracy on validation batches (None: by cost)
        self.reopened: list[dict] = []   # every reopening tried (backtracking on the device)
        self.reopen_used = 0             # measurements the reopenings took (first ones and confirmations)
        self._oneshot_record: dict[str, float] = {}   # arch_str -> one-shot accuracy, the current decision's
        self._aimed_margin = 0.0                      # the margin the current decision aimed inside (``_aim``)
        self._aimed_band: tuple[float, float] | None = None   # the band it aimed at (``_aim``; None: ``band``)
        self.inside_sigmas, self.inside, self.middle = inside_sigmas, inside_band, middle
        self._aimed_middle = 0.0   # the share of the band's width the current decision's look-ahead shrank it by
        self.measured: dict[str, float] = {}   # arch_str -> device cost of every cell measured for a decision (median)
        self.samples: dict[str, list[float]] = {}   # arch_str -> every measurement of it, in order
        self.cells = nb201_cells(model.space.ops)
        self.select, self.supernet_score = select, supernet_score
        self.widen, self.widen_middle, self.widen_slack = widen, widen_middle, widen_slack
        self._widened = False   # the current decision looked ahead with room (``widen``)
        self.select_s, self.select_evals = 0.0, 0   # wall time and number of the perturbation evaluations
        costs = torch.as_tensor(nb201_cell_costs(self.cells, tables), dtype=torch.float64)
        self.costs = torch.where(torch.as_tensor(self.cells.valid), costs, torch.full_like(costs, float("nan")))
        self.decisions: list[dict] = []
        self.taken = 0
        self.fit_sample, self.reopen_sigmas = fit_sample, reopen_sigmas
        self.fit_sampled: list[str] = []   # the cells measured before the first decision for the fitted predictor
        self.fits: list[dict] = []         # every fit of the device predictor (``fit_device``)
        self._fit: torch.Tensor | None = None   # (cells,) the fitted device cost of every cell (None: not fitted)
        # the fitted predictor's features: 1, each edge's op as the network computes it (a dead edge as none: cells
        # with the same live form are one network), the number of additions
        arch = torch.as_tensor(self.cells.arch)
        ops = model.space.ops
        live = torch.where(torch.as_tensor(self.cells.live), arch, ops.index("none")) if "none" in ops else arch
        onehot = torch.nn.functional.one_hot(live, len(ops)).reshape(arch.shape[0], -1).double()
        self._onehot = torch.cat([torch.ones(arch.shape[0], 1, dtype=torch.float64), onehot,
                                  torch.as_tensor(self.cells.adds, dtype=torch.float64)[:, None]], 1)

    def expected_cost(self) -> torch.Tensor:
        """The exact expected cost of the cell (decided edges fixed), differentiable in the alphas."""
        return nb201_exact_expected_cost(self.cells, self.costs, self.model.op_weights()["cell"])

    def after_step(self, arch_step: int) -> None:
        """Decide the next edge when ``arch_step`` (0-based, counted over the whole search) is due."""
        while self.taken < len(self.steps) and arch_step >= self.steps[self.taken]:
            self.decide(arch_step)
            self.taken += 1

    def decide(self, arch_step: int) -> None:
        fixed = self.model.fixed["cell"]
        free = [e for e in range(len(self.model.space.edges)) if e not in fixed]
        if not free:
            return
        with torch.no_grad():
            if self.fit_sample and self.measure is not None and self.band is not None and not self.fit_sampled:
                self._sample(fixed)
            self.fit_device(arch_step)
        reopenings = []
        while True:   # reopen an earlier decision while the measured completions strand this one (module docstring)
            with torch.no_grad():
                if reopenings:   # the reopening's cells refine the fitted predictor
                    self.fit_device(arch_step)
                device_table, measured = self._device_table(fixed)
            if measured is None or self.band is None or self._in_band(measured, self._reopen_band()) \
                    or not self._reopen(fixed, reopenings, arch_step):
                break
        free = [e for e in range(len(self.model.space.edges)) if e not in fixed]
        last = len(free) == 1
        self._coverage: torch.Tensor | None = None   # (edges, ops) ratios covered, set by ``_robust``
        with torch.no_grad():
            reachable = self._reachable(fixed)
            w = self.model.op_weights()["cell"].double()
            scores = torch.full(w.shape, -torch.inf, dtype=torch.float64)   # (edges, ops); decided edges stay -inf
            within = torch.zeros(w.shape, dtype=torch.bool)
            device_costs: dict[str, float] = {}   # the last decision's candidates, as the device shows them
            for e in free:
                for o in range(w.shape[1]):
                    if not reachable[e, o]:   # every completion would be cut off from its input
                        continue
                    trial = w.clone()
                    trial[e] = 0.0
                    trial[e, o] = 1.0
                    # expected device cost; the last decision's trial is one cell, so this is its (measured) cost
                    cost = nb201_exact_expected_cost(self.cells, device_table, trial)
                    device = float(cost)
                    if last:
                        device_costs[self.model.space.ops[o]] = device
                    scores[e, o] = w[e, o].clamp_min(1e-30).log() - self.penalty(device)
                    within[e, o] = self.within is None or self.within(device)
            possible = torch.isfinite(scores)
            # without look-ahead: any op, and the last decision keeps the cell within the budget when it can
            greedy = within & possible if last and (within & possible).any() else possible
            feasible, miss, aimed = (self._aim(fixed, device_costs if last else None, device_table, measured is not None)
                                     if self.band else (greedy, 0.0, False))
            feasible &= possible
            fallback = miss > 0 or not feasible.any()
            if not feasible.any():   # nothing to choose from (module docstring)
                feasible = greedy
            unrestricted = self._choose(scores, greedy)
            oneshot = self._oneshot(fixed, device_table, aimed) if measured is not None and miss == 0 else None
            perturbed = self._perturb(fixed, feasible, w) if oneshot is None and self.select == "perturbation" \
                else None
            e, o, certainty = perturbed[:3] if perturbed else self._choose(scores, feasible, oneshot)
        fixed[e] = o
        self.decisions.append({"arch_step": arch_step, "edge": e, "op": self.model.space.ops[o],
                               "certainty": certainty, "expected_cost": float(self.expected_cost().detach()),
                               "feasible_ops": [self.model.space.ops[i] for i in range(w.shape[1]) if feasible[e, i]],
                               "feasible_pairs": int(feasible.sum()),   # (edge, op) pairs of every undecided edge
                               "restricted": bool((greedy[e] & ~feasible[e]).any()),
                               "changed": (e, o) != unrestricted[:2], "fallback": fallback,
                               "miss": miss if math.isfinite(miss) else None,   # None: no completion at all
                               "on_device": measured is not None, **({"measured": measured} if measured else {}),
                               "repeats": {a: self.samples[a] for a in (measured or {}) if len(self.samples[a]) > 1},
                               "coverage": int(self._coverage[e, o]) if self._coverage is not None else None,
                               "aimed_inside": aimed,   # chosen among completions measured inside the margin
                               "margin": self._margin(), "aimed_margin": self._aimed_margin if aimed else 0.0,
                               "reopened": reopenings, "predictor": "fitted" if self._fit is not None else "ratio",
                               # the look-ahead's band shrunk by this share of its width (``middle``)
                               "aimed_middle": self._aimed_middle, "widened": self._widened,
                               # on the device with ``inside_sigmas``: the band a cell counts inside in, and whether
                               # the decision chose among cells there (else the deepest inside the band)
                               **({"inside_band": list(ib), "inside": bool(aimed and self._aimed_band == ib)}
                                  if measured is not None and (ib := self._inside_band()) is not None else {}),
                               **({"oneshot": self._oneshot_record} if oneshot is not None else {}),
                               "select": "perturbation" if perturbed else ("oneshot" if oneshot is not None
                                                                           else "alpha"),
                               **({"perturbation": perturbed[3], "select_gap": perturbed[4]} if perturbed else {}),
                               **({"device_costs": device_costs} if last else {})})

    def _completions(self, fixed: dict[int, int]) -> torch.Tensor:
        """(cells,) mask: the connected cells that have the ops ``fixed`` gives their edges."""
        arch = torch.as_tensor(self.cells.arch)
        left = torch.as_tensor(self.cells.valid).clone()
        for e, o in fixed.items():
            left &= arch[:, e] == o
        return left

    def _genotype(self, row: int) -> NB201Genotype:
        """The cell at ``row`` of ``cells``."""
        ops = self.model.space.ops
        return NB201Genotype(tuple(ops[i] for i in self.cells.arch[row]))

    def _reachable(self, fixed: dict[int, int]) -> torch.Tensor:
        """(edges, ops): some connected cell has op o on edge e and the decided edges as they are. (The
        expected cost cannot tell: it clamps zero weights to 1e-30, so a trial whose completions are all
        cut off still gets the finite cost of the connected cells that trial excludes.)"""
        arch, left = torch.as_tensor(self.cells.arch), self._completions(fixed)
        ops = len(self.model.space.ops)
        return torch.stack([torch.bincount(arch[left, e], minlength=ops) > 0 for e in range(arch.shape[1])])

    def _ratio(self) -> float:
        """The device's current measured / predicted ratio (1 without a device)."""
        return self.scale() if self.scale is not None else 1.0

    def _device_table(self, fixed: dict[int, int], force: bool = False) -> tuple[torch.Tensor, dict[str, float] | None]:
        """Every cell's device cost: the scaled prediction, or, once at most ``on_device`` cells complete the
        decided edges and the device is in the loop, those cells measured (arch_str -> cost; else None)."""
        table = self._fit.clone() if self._fit is not None else self.costs * self._ratio()
        if self.measure is None:
            return table, None
        rows = self._completions(fixed).nonzero().flatten().tolist()
        if not rows or (len(rows) > self.on_device and not force):
            return table, None
        measured: dict[str, float] = {}
        table = table.clone()
        for r in rows:
            g = self._genotype(r)
            if g.arch_str not in self.samples:   # each cell once, then again only to confirm it
                self.samples[g.arch_str] = [float(self.measure(g))]
            self._confirm(g)
            table[r] = measured[g.arch_str] = self.measured[g.arch_str] = statistics.median(self.samples[g.arch_str])
        return table, measured

    def _confirm(self, genotype: NB201Genotype) -> None:
        """A cell measured within ``window`` of the band (or in it) is measured again, up to ``repeats`` times in all
        while its median stays there: a decision that keeps a cell for its measurement lying in the band would
        otherwise keep the lucky measurements (the devices draw an offset per call), and the next one regresses."""
        if self.band is None or self.repeats <= 1:
            return
        lo, hi = self.band
        s = self.samples[genotype.arch_str]
        while len(s) < self.repeats and lo - self.window <= statistics.median(s) <= hi + self.window:
            s.append(float(self.remeasure(genotype)))

    def _aim(self, fixed: dict[int, int], device_costs: dict[str, float] | None, device_table: torch.Tensor,
             on_device: bool) -> tuple[torch.Tensor, float, bool]:
        """``_feasible`` for the band, on the device first for the band shrunk by ``margin`` on each side when
        some measured completion lies there (a cell measured at the band's edge is out of it on the next
        measurement about half the time). With ``inside_sigmas``, on the device: first the inside band
        (``_inside_band``), then that margin x 0.75, 0.5, 0.25 (the completion deepest inside), then the band; on the
        prediction with ``middle``: the band shrunk by darts_nodes' ``MIDDLE`` shares of its width on each side, the
        first some completion reaches (a decision that leaves only completions at the band's edge leaves the device
        no room). Returns (feasible, miss, whether an inner band was used)."""
        from hilnas.searchers.dca.darts_nodes import MIDDLE   # (darts_nodes imports this module)
        lo, hi = self.band
        self._aimed_margin, self._aimed_band, self._aimed_middle = 0.0, None, 0.0
        # an early decision on the prediction (>= widen edges undecided) looks ahead with room (module docstring)
        free = len(self.model.space.edges) - len(fixed)
        self._widened = bool(self.widen) and not on_device and device_costs is None and free >= self.widen
        inside = self._inside_band() if on_device else None
        if inside is not None:
            (tlo, thi), m = self.inside or self.band, inside[0] - (self.inside or self.band)[0]
            for f in (1.0, 0.75, 0.5, 0.25):
                band = inside if f == 1 else (tlo + f * m, thi - f * m)   # (the record compares it with ``inside``)
                inner, miss = self._feasible(fixed, device_costs, device_table, on_device, band)
                if miss == 0:   # the deepest inside some measured completion lies
                    self._aimed_margin, self._aimed_band = f * m, band
                    return inner, miss, True
            return (*self._feasible(fixed, device_costs, device_table, on_device, self.band), False)
        if self.middle and not on_device:
            for shrink in [m for m in MIDDLE[:-1] if not self._widened or m <= self.widen_middle]:
                band = (lo + shrink * (hi - lo), hi - shrink * (hi - lo))
                inner, miss = self._feasible(fixed, device_costs, device_table, on_device, band)
                if miss == 0:
                    self._aimed_middle = shrink
                    return inner, miss, False
        widest = min(self._margin(), 0.45 * (hi - lo))   # a margin wider than the band leaves nothing to aim at
        for m in (widest, 0.75 * widest, 0.5 * widest, 0.25 * widest) if on_device and widest > 0 else ():
            inner, miss = self._feasible(fixed, device_costs, device_table, on_device, (lo + m, hi - m))
            if miss == 0:   # the widest margin some measured completion lies inside: the nearest to the middle
                self._aimed_margin, self._aimed_band = m, (lo + m, hi - m)
                return inner, miss, True
        return (*self._feasible(fixed, device_costs, device_table, on_device, self.band), False)

    def _inside_band(self) -> tuple[float, float] | None:
        """The band a measured cell must lie in to count *inside* on the device (``inside_sigmas`` > 0, else None):
        ``inside_band`` (the target's band; default ``band``) shrunk on each side by ``inside_sigmas`` standard
        deviations of one fresh measurement about a confirmed median (the spread pooled over the confirmations, x
        sqrt(1 + 1 / repeats), at the band's top; ``margin`` until three cells are confirmed), at most 0.45 of its
        width. A cell measured nearer an edge than that leaves the band on a fresh measurement too often."""
        if self.inside_sigmas <= 0 or self.band is None:
            return None
        lo, hi = self.inside or self.band
        s = self.spread()
        m = self.margin if s is None else self.inside_sigmas * s * math.sqrt(1 + 1 / self.repeats) * hi
        m = min(m, 0.45 * (hi - lo))
        return lo + m, hi - m

    def spread(self) -> float | None:
        """The pooled relative standard deviation of one measurement, from the cells measured more than once
        (their within-cell variance, relative to each cell's median); None until three cells are confirmed."""
        repeated = [s for s in self.samples.values() if len(s) > 1]
        if len(repeated) < 3:
            return None
        ss = sum(sum((x / statistics.median(s) - statistics.fmean(s) / statistics.median(s)) ** 2 for x in s)
                 for s in repeated)
        return math.sqrt(ss / sum(len(s) - 1 for s in repeated))

    def _margin(self) -> float:
        """The margin the decisions on the device aim inside by: ``margin_sigmas`` x the measured spread of one fresh
        measurement about a median of ``repeats`` (at the band's top), once measured; else the fixed ``margin``."""
        sigma = self.spread() if self.margin_sigmas > 0 else None
        if sigma is None or self.band is None:
            return self.margin
        return self.margin_sigmas * sigma * math.sqrt(1 + 1 / self.repeats) * self.band[1]

    def _in_band(self, measured: dict[str, float], band: tuple[float, float]) -> bool:
        return any(band[0] <= c <= band[1] and (self.within is None or self.within(c)) for c in measured.values())

    def _measured_rows(self) -> dict[int, float]:
        """Row of ``cells`` -> the median measured cost, for every cell measured in this search."""
        ops = self.model.space.ops
        index = {tuple(ops.index(o) for o in NB201Genotype.from_arch_str(a).ops): c for a, c in self.measured.items()}
        return {r: index[tuple(arch)] for r, arch in enumerate(self.cells.arch) if tuple(arch) in index}

    def _sample(self, fixed: dict[int, int]) -> None:
        """Before the first decision: measure ``fit_sample`` cells drawn at random (a fixed generator: the same cells
        for the same budget) among those the scaled prediction puts within 20 % of the band (the nearest when fewer
        are), each once. (Drawn to cover each edge's ops evenly instead, the sample held the outliers, and the fit
        on it predicted the cells near the band worse than the LUT on the simulated devices.)"""
        lo, hi = self.band
        table = self.costs * self._ratio()
        miss = torch.nan_to_num((0.8 * lo - table).clamp_min(0) + (table - 1.2 * hi).clamp_min(0), nan=math.inf)
        miss = torch.where(self._completions(fixed), miss, torch.full_like(miss, math.inf))
        near = int((miss == 0).sum())
        rows = torch.argsort(miss, stable=True)[:max(near, self.fit_sample)]
        rows = rows[torch.isfinite(miss[rows])]
        drawn = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))[:self.fit_sample]
        for r in rows[drawn].tolist():
            g = self._genotype(r)
            if g.arch_str not in self.samples:
                self.samples[g.arch_str] = [float(self.measure(g))]
                self.measured[g.arch_str] = self.samples[g.arch_str][0]
            self.fit_sampled.append(g.arch_str)

    def fit_device(self, arch_step: int | None = None) -> None:
        """The device predictor fitted on every cell measured so far (``fit_sample`` > 0, >= 5 cells): the device's cost
        of a cell ~ a x its corrected LUT prediction + b + sum over its edges of delta[edge, op] (a, b free, the deltas
        ridge-regressed toward 0, i.e. toward the LUT; the ridge chosen by leave-one-out relative error); used
        (``_fit``) only when that error is below the current ratio's (ratio x prediction) on the same cells, and then
        in place of the ratio. Recorded in ``fits``."""
        self._fit = None
        measured = self._measured_rows() if self.fit_sample else {}
        if len(measured) < 5:
            return
        s = self._ratio()
        idx = torch.tensor(list(measured))
        y = torch.tensor(list(measured.values()), dtype=torch.float64)
        x = torch.cat([self.costs[idx, None], self._onehot[idx]], 1)   # prediction, 1, one-hot (edge, op)
        penalty = torch.eye(x.shape[1], dtype=torch.float64)
        penalty[0, 0] = penalty[1, 1] = 0.0   # slope and intercept free; the per-edge deltas shrink toward the LUT
        best = None
        for ridge in (0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 1e3, 1e5):
            inv = torch.linalg.inv(x.T @ x + ridge * penalty + 1e-9 * torch.eye(x.shape[1], dtype=torch.float64))
            beta = inv @ (x.T @ y)
            h = ((x @ inv) * x).sum(1).clamp_max(1 - 1e-6)
            loo = float((((y - x @ beta) / (1 - h)) / y).pow(2).mean().sqrt())
            if best is None or loo < best[0]:
                best = (loo, ridge, beta)
        loo, ridge, beta = best
        plain = float(((y - s * self.costs[idx]) / y).pow(2).mean().sqrt())   # the ratio's relative error on them
        used = loo < plain
        if used:   # nan where the cell is cut off from its input (costs nan)
            self._fit = beta[0] * self.costs + self._onehot @ beta[1:]
        self.fits.append({"arch_step": arch_step, "cells": len(measured), "ridge": ridge, "loo_rel_rmse": loo,
                          "ratio_rel_rmse": plain, "used": used})

    def _reopen_band(self) -> tuple[float, float]:
        """The band a decision on the device must find a measured cell in, else it reopens an earlier decision: the
        inside band with ``inside_sigmas`` (``_inside_band``), else the band shrunk by ``reopen_sigmas`` x the measured
        spread of one measurement on each side once it is measured (a cell within the spread of an edge leaves the band
        on a fresh measurement often)."""
        inside = self._inside_band()
        if inside is not None:   # no measured cell inside: reopen toward the middle
            return inside
        lo, hi = self.band
        sigma = self.spread() if self.reopen_sigmas > 0 else None
        if sigma is None:
            return self.band
        m = min(self.reopen_sigmas * sigma * hi, 0.45 * (hi - lo))
        return lo + m, hi - m

    def refit(self) -> tuple[float, float]:
        """(a, b): the device's cost of a cell ~ a x its prediction + b, least squares over every cell measured in
        this search (median of its measurements); a pure ratio when their predictions do not differ."""
        measured = self._measured_rows()
        x = [float(self.costs[r]) for r in measured]
        y = list(measured.values())
        mx, my = statistics.fmean(x), statistics.fmean(y)
        sxx = sum((v - mx) ** 2 for v in x)
        if sxx <= 1e-12 * max(1.0, mx * mx):
            return my / mx, 0.0
        a = sum((u - mx) * (v - my) for u, v in zip(x, y)) / sxx
        return a, my - a * mx

    def _reopen(self, fixed: dict[int, int], tried: list[dict], arch_step: int) -> bool:
        """Backtracking on the device: no measured completion of the decided edges lies in the band, so reopen one
        earlier decision. Candidates: another op of a decided edge (those with >= 3 completions predicted in the band
        first, then the latest decision first, then by the alphas) whose completions, predicted through the correction
        refitted on every cell measured so far (a cell measured already: its measurement), land in the band; their
        completions are measured (and confirmed) and the first candidate with a measured completion in the band
        replaces the decision. At most ``reopen`` tries per search, each started only while the
        reopenings' measurements so far (confirmations included) plus its first ones stay within
        ``reopen_measurements``. Returns whether a decision was replaced."""
        if len(self.reopened) >= self.reopen or not fixed or len(self.measured) < 2:
            return False
        a, b = self.refit()
        lo, hi = self._reopen_band()
        arch = torch.as_tensor(self.cells.arch)
        predicted = self._fit.clone() if self._fit is not None else self.costs * a + b
        for r, c in self._measured_rows().items():   # a cell measured already is known, not predicted
            predicted[r] = c
        order = [d["edge"] for d in reversed(self.decisions) if d["edge"] in fixed]
        w = self.model.op_weights()["cell"].detach()
        done = {(r["edge"], r["to"]) for r in self.reopened}
        candidates = []
        for rank, e in enumerate(order):
            base = self._completions({e2: o2 for e2, o2 in fixed.items() if e2 != e})
            for o in range(w.shape[1]):
                if o == fixed[e] or (e, o) in done:
                    continue
                rows = base & (arch[:, e] == o)
                inside = int((rows & (predicted >= lo) & (predicted <= hi)).sum())
                if inside:   # a few cells predicted in the band first: one may be the refit's error
                    candidates.append((-min(inside, 3), rank, -float(w[e, o]), e, o, rows.nonzero().flatten().tolist(),
                                       inside))
        ops = self.model.space.ops
        for *_, e, o, rows, inside in sorted(candidates, key=lambda c: c[:3]):
            if len(self.reopened) >= self.reopen:
                break
            new = [r for r in rows if self._genotype(r).arch_str not in self.samples]
            if self.reopen_used + len(new) > self.reopen_measurements:
                continue
            before = sum(len(s) for s in self.samples.values())
            trial = {**fixed, e: o}
            _, measured = self._device_table(trial, force=True)
            used = sum(len(s) for s in self.samples.values()) - before
            self.reopen_used += used
            landed = measured is not None and self._in_band(measured, (lo, hi))
            record = {"arch_step": arch_step, "edge": e, "from": ops[fixed[e]], "to": ops[o], "refit": [a, b],
                      "predictor": "fitted" if self._fit is not None else "refit", "band": [lo, hi],
                      "predicted_in_band": inside, "measurements": used, "landed": landed}
            self.reopened.append(record)
            tried.append(record)
            if landed:
                for d in self.decisions:
                    if d["edge"] == e:
                        d["reopened_to"] = ops[o]
                fixed[e] = o
                return True
        return False

    def _feasible(self, fixed: dict[int, int], device_costs: dict[str, float] | None, device_table: torch.Tensor,
                  on_device: bool, band: tuple[float, float]) -> tuple[torch.Tensor, float]:
        """(edges, ops) mask of the feasible ops, and by how much (device cost) the nearest completion misses the band.

        Feasible: some completion of the undecided edges lands the device's cost (``device_table``) in
        the band (miss 0); when none does, the ops of the completions nearest the band (miss > 0), among
        those within the budget when some are and the costs are measured (``on_device``). ``device_costs``
        (the last decision): the candidate cells' device costs, op name -> cost; when none is in the
        band, the nearest within the budget (or, if none is within it, the nearest of all).
        """
        ops = self.model.space.ops
        edges = len(self.model.space.edges)
        lo, hi = band
        if device_costs is not None:
            (e,) = [i for i in range(edges) if i not in fixed]
            within = {n: c for n, c in device_costs.items() if self.within is None or self.within(c)}
            candidates = within or device_costs   # never over the budget when a candidate is within it
            miss = {n: max(lo - c, c - hi, 0.0) for n, c in candidates.items()}
            nearest = min(miss.values(), default=math.inf)
            out = torch.zeros(edges, len(ops), dtype=torch.bool)
            for name, m in miss.items():
                out[e, ops.index(name)] = m <= nearest
            return out, nearest
        arch = torch.as_tensor(self.cells.arch)
        device = device_table
        miss = torch.nan_to_num((lo - device).clamp_min(0) + (device - hi).clamp_min(0), nan=math.inf)  # 0 in band
        for e, o in fixed.items():
            miss = torch.where(arch[:, e] == o, miss, torch.full_like(miss, math.inf))
        if on_device and self.within is not None and not bool((miss == 0).any()):
            ok = torch.tensor([math.isfinite(m) and self.within(float(c)) for m, c in zip(miss.tolist(), device.tolist())])
            if ok.any():   # measured: never step over the budget when a completion within it exists
                miss = torch.where(ok, miss, torch.full_like(miss, math.inf))
        nearest = float(miss.min())
        if not math.isfinite(nearest):
            return torch.zeros(edges, len(ops), dtype=torch.bool), math.inf

        def having(cells: torch.Tensor) -> torch.Tensor:   # (edges, ops): some of these cells has op o on edge e
            return torch.stack([torch.bincount(arch[cells, e], minlength=len(ops)) > 0 for e in range(edges)])
        feasible = having(miss <= nearest)
        if nearest == 0 and not on_device and self.tolerance > 0:
            feasible &= self._robust(feasible, device, torch.isfinite(miss), band, having)
        return feasible, nearest

    def _robust(self, feasible: torch.Tensor, device: torch.Tensor, alive: torch.Tensor, band: tuple[float, float],
                having: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Of each edge's feasible ops, those whose completions land in the band at the most of the device ratios
        ``1 - tolerance .. 1 + tolerance`` (5 points) times the current one: the ratio is one network's, and the
        cells the later decisions measure differ from it by up to ~15 %, so an op with completions in the band only
        at the current ratio strands the decisions taken on the device."""
        lo, hi = band
        coverage = torch.zeros(feasible.shape, dtype=torch.long)
        for s in torch.linspace(1 - self.tolerance, 1 + self.tolerance, 5, dtype=torch.float64).tolist():
            coverage += having(alive & (device * s >= lo) & (device * s <= hi))
        self._coverage = coverage
        best = torch.where(feasible, coverage, torch.full_like(coverage, -1)).amax(1, keepdim=True)
        return coverage >= best - (self.widen_slack if self._widened else 0)

    def _oneshot(self, fixed: dict[int, int], device_table: torch.Tensor, aimed: bool) -> torch.Tensor | None:
        """(edges, ops): the best one-shot accuracy (``accuracy``: the supernet on validation batches, the cell's ops
        fixed) among the measured completions in the band the decision aims at, -inf where an op has none; None
        without ``accuracy``. The choice among cells the device confirmed in the band is then by accuracy."""
        self._oneshot_record: dict[str, float] = {}
        if self.accuracy is None:
            return None
        lo, hi = self._aimed_band if aimed and self._aimed_band is not None else self.band
        arch = torch.as_tensor(self.cells.arch)
        left = self._completions(fixed) & (device_table >= lo) & (device_table <= hi)
        best = torch.full((arch.shape[1], len(self.model.space.ops)), -math.inf, dtype=torch.float64)
        for r in left.nonzero().flatten().tolist():
            if self.within is not None and not self.within(float(device_table[r])):
                continue
            g = self._genotype(r)
            acc = self._oneshot_record[g.arch_str] = float(self.accuracy(g))
            for e in range(arch.shape[1]):
                best[e, arch[r, e]] = max(float(best[e, arch[r, e]]), acc)
        return best if self._oneshot_record else None

    def _perturb(self, fixed: dict[int, int], feasible: torch.Tensor, w: torch.Tensor) \
            -> tuple[int, int, float, dict, float | None] | None:
        """Perturbation-based selection (module docstring): (edge, op, certainty, scores, gap) where ``scores`` is
        edge -> op -> [validation log-likelihood, accuracy] with the edge fixed to the op; None when no undecided
        edge has a feasible op. ``certainty``: the softmax of the scores over the chosen edge's feasible ops."""
        ops = self.model.space.ops
        best: tuple | None = None
        record: dict[int, dict[str, list[float]]] = {}
        for e in range(feasible.shape[0]):
            if e in fixed or not feasible[e].any():
                continue
            allowed = feasible[e].nonzero().flatten().tolist()
            if len(allowed) == 1:   # forced: nothing to score
                gap, scored = math.inf, {allowed[0]: (0.0, 0.0)}
            else:
                scored = {}
                for o in allowed:
                    started = time.perf_counter()
                    scored[o] = tuple(float(v) for v in self.supernet_score({**fixed, e: o}))
                    self.select_s += time.perf_counter() - started
                    self.select_evals += 1
                record[e] = {ops[o]: list(v) for o, v in scored.items()}
                top = sorted(v[0] for v in scored.values())
                gap = top[-1] - top[-2]
            if best is None or gap > best[0]:
                o = max(scored, key=lambda i: (*scored[i], float(w[e, i])))
                logits = torch.tensor([v[0] for v in scored.values()], dtype=torch.float64)
                best = (gap, e, o, float(logits.softmax(0).max()))
        if best is None:
            return None
        gap, e, o, certainty = best
        return e, o, certainty, record, gap if math.isfinite(gap) else None

    @staticmethod
    def _choose(scores: torch.Tensor, allowed: torch.Tensor,
                first: torch.Tensor | None = None) -> tuple[int, int, float]:
        """The most certain edge (softmax over its allowed ops) and its best allowed op; with ``first`` ((edges,
        ops), e.g. one-shot accuracy), the allowed (edge, op) of the highest ``first``, then by that rule."""
        if first is not None:
            top = torch.where(allowed, first, torch.full_like(first, -math.inf))
            if bool(torch.isfinite(top).any()):
                allowed = allowed & (top >= top.max())
        best: tuple[int, int, float] | None = None
        for e in range(scores.shape[0]):
            if not allowed[e].any():
                continue
            s = torch.where(allowed[e], scores[e], torch.full_like(scores[e], -torch.inf))
            certainty = float(s.softmax(0).max())
            if best is None or certainty > best[2]:
                best = (e, int(s.argmax()), certainty)
        assert best is not None, "every op of every undecided edge would cut the cell off from its input"
        return best


def decision_steps(edges: int, arch_steps: int) -> list[int]:
    """Evenly spaced architecture steps for ``edges`` decisions, the last on the last step."""
    return [max(0, round(arch_steps * (k + 1) / edges) - 1) for k in range(edges)]
