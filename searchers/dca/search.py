"""DCA-NAS (seed 001): differentiable search under a device budget, as a constrained problem.

Seed 001, eq. (4): the architecture step minimises the Lagrangian of the budget constraint,

    L(alpha, lambda) = CE_val(w, alpha) + lambda * (cost(alpha) / B - 1),

with the multiplier learned by projected dual ascent, lambda <- max(0, lambda + eta * (c / B - 1)),
after every architecture step: it grows while the constraint is violated and decays to 0 once
it is slack, so no trade-off weight needs tuning. The constraint is divided by B so that eta
means the same for milliseconds, millijoules or parameters. ``cost(alpha)`` is the relaxed,
differentiable cost (``CostModel.expected_cost``); ``c``, what dual ascent compares with B, is
chosen by ``DcaConfig.constrain``.

Deviations from the paper, each a setting (docs/search.md measures which of them matter):

- ``band = (lo, hi)``: the constraint is the band lo * B <= c <= hi * B, one multiplier per side,
  ``L = CE + lambda * (c / B - hi) + mu * (lo - c / B)``. The paper's one-sided constraint is
  ``lo = 0``. A user who asks for a network "within 15 ms" wants one that uses the 15 ms: when
  the validation loss alone prefers a cheaper cell, the lower side pulls the cost up to the
  band (as TuNAS's absolute-value reward does) instead of returning a network far below budget.
- ``rho``: the augmented Lagrangian, ``rho / 2 * violation^2`` added to the penalty, so the cost
  is pulled into the band with a force that grows with the distance, not only with the time
  spent outside it (with the linear term alone the cell's cost overshot the band back and forth).
- ``progressive`` (NB201): the cell's edges are decided one at a time at evenly spaced
  architecture steps, each by the Lagrangian, and what dual ascent holds in the band is the exact
  expected cost of the partly decided cell (``progressive.py``); with ``lookahead`` each decision
  chooses only among the ops some completion of the undecided edges lands in the band with (all
  completions enumerated), so the greedy decisions cannot strand the last edge outside the band;
  with the device in the loop, the last decisions (``device_decisions``: once at most 25 cells
  remain) are taken on the measured costs of all the cells they choose between, aiming at the band
  shrunk by ``device_margin`` on each side where a measured cell lies there; a cell measured in the band
  or within ``device_window`` of it is measured again (up to ``device_repeats`` in all) and its median
  trusted; the decisions on the prediction prefer ops whose completions land in the band at device
  ratios within ``ratio_tolerance`` of the measured one; when the measured cells have none in the band,
  an earlier decision is reopened (``device_reopen``), the margin follows the measured spread
  (``device_margin_sigmas``), and among the confirmed in-band cells the supernet's one-shot accuracy on
  validation batches chooses (``device_oneshot_batches``); before the first decision a sample of cells near the band
  is measured and a per-(edge, op) correction of the prediction fitted on it and every later measurement
  (``device_fit_sample``), and a decision whose measured cells lie in the band only near its edges reopens too
  (``device_reopen_sigmas``); aiming at the band's middle, the decisions on the prediction keep a completion near
  the band's middle reachable (``lookahead_middle``) and a decision on the device counts a cell inside only
  ``device_inside_sigmas`` standard deviations of a fresh measurement inside ``device_inside_band``, reopening an
  earlier decision toward that inner band while none is. ``select = "perturbation"`` (NB201's choice under the default
  ``"auto"``, ``select.py``; ``"alpha"`` elsewhere) chooses each decision on the prediction's op by the supernet's validation log-likelihood with the edge fixed to
  it, among the ops the look-ahead keeps (DARTS-PT's perturbation-based selection), not by the alphas;
  ``lookahead_widen`` (NB201, default 0 = off) gives that choice room in the early decisions (the ratio filter off).
  On the DARTS space ``progressive`` decides the nodes one at a time (each node's two inputs and
  ops, ``darts_nodes.py``), with the same look-ahead to the band and the last decision on
  confirmed device measurements.
  ``constrain = "derived"`` instead compares the exact
  cost of the genotype the alphas derive now (the default is the relaxed cost, as the paper).
- ``temperature = (start, end)``: the softmax of the alphas is annealed geometrically from start
  to end over the architecture epochs, so the relaxed network and its cost converge to the
  derived one.
- ``arch.warmup_epochs``: weight-only epochs before the first architecture step (PC-DARTS), so
  the parameter-free ops do not win only because the convolutions are still untrained.
- a device in the loop (``search(..., measure=...)``): after every epoch the derived network is
  measured on the device (each genotype once) and ``c`` is the prediction times the ratio
  measured / predicted of the last measured network: seed 001's lookup graph, which maps the
  search's cost to the device's, built from the search's own networks as it goes.

The search runs with weight sharing, the channel bottleneck and derived cells
(``supernet.DCA_OPTIONS``). The derived genotype's cost is checked against B at the end; if it
is over, it is repaired along the alpha ranking and the result says so (``repaired``, the number
of edges changed). A budget no derivable genotype meets, or one every genotype meets, raises
``BudgetRangeError`` with the range, before any training. The lookup graph that turns a device
budget into B lives in ``lug.py``; ``seeds.py`` runs several seeds and keeps the best.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from hilnas.searchers.dca.bilevel import BilevelConfig, run_bilevel
from hilnas.searchers.dca.select import SELECT_CHOICES, resolve_select
from hilnas.searchers.cost import CostModel
from hilnas.searchers.result import Budget, SearchResult

if TYPE_CHECKING:
    from hilnas.searchers.data import Loaders
    from hilnas.searchers.spaces import SearchSpace


@dataclass
class LagrangeMultiplier:
    """The multipliers of lo * B <= cost <= hi * B, learned by projected dual ascent.

    ``value`` is seed 001's lambda (the upper side, cost <= hi * B); ``lower`` is mu (the lower
    side, unused while lo = 0). ``multiplier`` = lambda - mu, the net weight on cost / B.
    """
    budget: float
    lr: float                  # eta: step per unit of relative violation
    value: float = 0.0
    band: tuple[float, float] = (0.0, 1.0)
    lower: float = 0.0
    rho: float = 0.0           # weight of the augmented Lagrangian's quadratic term on the violation

    def __post_init__(self) -> None:
        lo, hi = self.band
        if not 0.0 <= lo < hi:
            raise ValueError(f"band must be (lo, hi) with 0 <= lo < hi, got {self.band}")

    @property
    def multiplier(self) -> float:
        return self.value - self.lower

    def violation(self, cost: float) -> float:
        """Relative violation of the band: > 0 above hi * B, < 0 below lo * B, 0 inside."""
        c, (lo, hi) = cost / self.budget, self.band
        return c - hi if c > hi else (c - lo if c < lo else 0.0)

    def penalty(self, expected: Any) -> Any:
        """lambda (c - hi) + mu (lo - c) + rho / 2 * violation^2, c = cost / B (tensors and floats alike)."""
        c, (lo, hi) = expected / self.budget, self.band
        linear = self.value * (c - hi) + self.lower * (lo - c)
        if not self.rho:
            return linear
        over, under = c - hi, lo - c
        over = over.clamp_min(0) if hasattr(over, "clamp_min") else max(over, 0.0)
        under = under.clamp_min(0) if hasattr(under, "clamp_min") else max(under, 0.0)
        return linear + 0.5 * self.rho * (over * over + under * under)

    def update(self, cost: float) -> None:
        c, (lo, hi) = cost / self.budget, self.band
        if lo <= 0:  # the paper's one-sided constraint: lambda decays while the constraint is slack
            self.value = max(0.0, self.value + self.lr * (c - hi))
            return
        # a band: the net multiplier moves only outside the band, so the force that brought the cost
        # into the band holds it there instead of decaying and letting it drift out
        v = self.violation(cost)
        delta = self.lr * v
        net = self.value - self.lower + delta
        self.value, self.lower = max(net, 0.0), max(-net, 0.0)

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value, "lower": self.lower}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.value = float(state["value"])
        self.lower = float(state.get("lower", 0.0))


@dataclass(frozen=True, kw_only=True)
class DcaConfig(BilevelConfig):
    """DCA-NAS: the shared search settings plus the budget and the multiplier's dual ascent."""
    budget: Budget                  # the search-time budget B (a device budget goes through the LUG first)
    multiplier_lr: float = 0.05     # eta; lambda rises by eta * 0.1 per step at 10 % over budget
    multiplier_init: float = 0.0
    # What dual ascent compares with the budget: "expected" (the relaxed cost, as seed 001) or
    # "derived" (the exact cost of the genotype the alphas point to now).
    constrain: str = "expected"
    band: tuple[float, float] = (0.91, 0.99)   # (lo, hi) x B the cost is held in; (0, 1) is the paper's
    temperature: tuple[float, float] = (1.0, 1.0)  # softmax temperature at the first / last architecture epoch
    progressive: bool = True        # NB201: decide the cell's edges one at a time (progressive.py); DARTS: its
    #                                 nodes, the last on the device (darts_nodes.py); False: derive at the end
    lookahead: bool = True          # progressive: decide only among ops some completion of which lands in the band
    rho: float = 100.0              # augmented Lagrangian: rho / 2 * (relative violation)^2 added to the penalty
    # progressive with the device in the loop: once at most this many cells complete the decided edges, measure
    # them all and decide on their measured costs (25: the last two decisions; 0: on the prediction only)
    device_decisions: int = 25
    # those decisions aim at the band shrunk by this x B on each side when a measured cell lies there (the spread
    # between two measurements of one network is a few %): (0.91, 0.99) -> (0.93, 0.97)
    device_margin: float = 0.02
    # a cell those decisions measure within device_window x B of the band (or in it) is measured again, up to
    # device_repeats times in all, and its median trusted (the devices draw an offset per measurement; 1: once)
    device_repeats: int = 3
    device_window: float = 0.05
    # the decisions on the prediction prefer the ops whose completions land in the band at the most device
    # ratios within +-ratio_tolerance of the current one (device in the loop only; 0: the current ratio alone)
    ratio_tolerance: float = 0.1
    # backtracking on the device: when the measured completions have no cell in the band, reopen an earlier decision
    # (another op of that edge whose completions, predicted through a correction refitted on the cells measured so
    # far, land in the band), measure its completions; at most device_reopen tries per search, each started only
    # while the reopenings' measurements (first ones and confirmations) plus its first ones stay within
    # device_reopen_measurements (0: never reopen)
    device_reopen: int = 3
    device_reopen_measurements: int = 75
    # once three cells are confirmed, the margin is this many standard deviations of one measurement (pooled over
    # the confirmations) instead of device_margin (0: device_margin throughout)
    device_margin_sigmas: float = 1.5
    # among the cells the device confirmed in the (aimed) band, the last decisions choose by the supernet's one-shot
    # accuracy on this many validation batches, which the weights never train on (0: by the Lagrangian)
    device_oneshot_batches: int = 6
    # a device predictor fitted before the decisions narrow the cell: before the first decision, measure this many
    # cells drawn at random among those the corrected LUT puts near the band, and from then on predict every cell as
    # a x LUT + b + a per-(edge, op) correction ridge-fitted toward the LUT, refitted on every cell measured, while
    # it predicts them better than the measured ratio (0: ratio x LUT only)
    device_fit_sample: int = 30
    # a decision on the device whose measured cells lie in the band only within this many standard deviations of one
    # measurement of its edges reopens an earlier decision too (0: only when none lies in the band; 1 was no better
    # in the offline replay of the decisions, docs/performance.md)
    device_reopen_sigmas: float = 0.0
    # DARTS: the last node's decision on the device measures at most this many networks in all (the shortlist of 5,
    # then one at a time until one is confirmed inside the margin)
    darts_device_networks: int = 10
    # NB201, aiming at the band's middle: a decision on the device counts a measured cell inside only when it lies
    # this many standard deviations of one fresh measurement (pooled over the confirmations) inside each edge of
    # device_inside_band; when none does, an earlier decision is reopened toward that inner band (bounded by
    # device_reopen / device_reopen_measurements), and only then is the cell deepest inside the band taken (0: off,
    # device_margin_sigmas' margin on ``band`` as before)
    device_inside_sigmas: float = 1.5
    device_inside_band: tuple[float, float] = (0.9, 1.0)   # x B: the band a fresh measurement should land in
    # NB201: the decisions on the prediction look ahead to the band shrunk by 0.4, then 0.25 of its width on each
    # side, the first some completion reaches (darts_nodes' MIDDLE), not to any completion in the band (False)
    lookahead_middle: bool = True
    # NB201, room for the choice: the decisions on the prediction taken while at least this many edges are undecided
    # keep every op some completion of which lands where the look-ahead aims at the measured ratio, not only those
    # landing there at the most ratios within +-ratio_tolerance (progressive.py's ``widen``; 0: off)
    lookahead_widen: int = 0
    # NB201: how the decisions on the prediction choose an edge's op: "alpha" (the Lagrangian, log w - penalty) or
    # "perturbation" (the supernet's validation log-likelihood on select_batches fixed batches with the edge fixed to
    # each op the look-ahead keeps feasible, DARTS-PT; progressive.py); "auto": per space, NB201 perturbation, every
    # other space alpha (select.py; the search records the resolved value as extra["select"])
    select: str = "auto"
    select_batches: int = 6

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.constrain not in ("expected", "derived"):
            raise ValueError(f"constrain must be 'expected' or 'derived', got {self.constrain!r}")
        object.__setattr__(self, "band", tuple(float(b) for b in self.band))
        object.__setattr__(self, "temperature", tuple(float(t) for t in self.temperature))
        lo, hi = self.band
        if not 0.0 <= lo < hi:
            raise ValueError(f"band must be (lo, hi) with 0 <= lo < hi, got {self.band}")
        if self.device_decisions < 0:
            raise ValueError(f"device_decisions must be >= 0 (0: decide on the prediction only), "
                             f"got {self.device_decisions}")
        if self.device_margin < 0 or self.device_window < 0:
            raise ValueError(f"device_margin and device_window must be >= 0, got {self.device_margin}, "
                             f"{self.device_window}")
        if self.device_repeats < 1:
            raise ValueError(f"device_repeats must be >= 1 (1: each cell measured once), got {self.device_repeats}")
        if min(self.device_reopen, self.device_reopen_measurements, self.device_oneshot_batches,
               self.device_fit_sample) < 0 or self.device_margin_sigmas < 0 or self.device_reopen_sigmas < 0:
            raise ValueError("device_reopen, device_reopen_measurements, device_margin_sigmas, "
                             "device_oneshot_batches, device_fit_sample and device_reopen_sigmas must be >= 0, got "
                             f"{self.device_reopen}, {self.device_reopen_measurements}, {self.device_margin_sigmas}, "
                             f"{self.device_oneshot_batches}, {self.device_fit_sample}, {self.device_reopen_sigmas}")
        object.__setattr__(self, "device_inside_band", tuple(float(b) for b in self.device_inside_band))
        object.__setattr__(self, "lookahead_middle", bool(self.lookahead_middle))   # the flag's 0 / 1
        if self.device_inside_sigmas < 0 or len(self.device_inside_band) != 2 \
                or not 0 <= self.device_inside_band[0] < self.device_inside_band[1]:
            raise ValueError(f"device_inside_sigmas must be >= 0 and device_inside_band (lo, hi) with 0 <= lo < hi, "
                             f"got {self.device_inside_sigmas}, {self.device_inside_band}")
        if self.lookahead_widen < 0:
            raise ValueError(f"lookahead_widen must be >= 0 (undecided edges; 0: off), got {self.lookahead_widen}")
        if self.select not in SELECT_CHOICES:
            raise ValueError(f"select must be 'auto', 'alpha' or 'perturbation', got {self.select!r}")
        if self.select_batches < 1:
            raise ValueError(f"select_batches must be >= 1 (validation batches per scored op), got {self.select_batches}")
        if self.darts_device_networks < 5:
            raise ValueError(f"darts_device_networks must be >= 5 (the shortlist), got {self.darts_device_networks}")
        if not 0 <= self.ratio_tolerance < 1:
            raise ValueError(f"ratio_tolerance must be in [0, 1), got {self.ratio_tolerance}")
        if self.rho < 0:
            raise ValueError(f"rho must be >= 0, got {self.rho}")
        if len(self.temperature) != 2 or min(self.temperature) <= 0:
            raise ValueError(f"temperature must be (start, end), both > 0, got {self.temperature}")


Measure = Callable[[Any], float]  # genotype -> its cost on the device, in the budget's unit


def search(space: SearchSpace, cost_model: CostModel, config: DcaConfig, *, seed: int = 0,
           data: Loaders, measure: Measure | None = None) -> SearchResult:
    """Search ``space`` on ``data`` (with a val split) for the best genotype within ``config.budget``.

    ``measure``: the device in the loop (see the module docstring); None = the cost model only.
    """
    term = LagrangeMultiplier(config.budget.value, config.multiplier_lr, config.multiplier_init, config.band,
                              rho=config.rho)
    resolved = dataclasses.replace(config, select=resolve_select(config.select, space))
    result = run_bilevel("dca", space, cost_model, resolved, term, budget=config.budget, enforce_budget=True,
                         seed=seed, data=data, measure=measure)
    result.extra["select"] = resolved.select          # the rule the search ran with ("auto" resolved per space)
    result.extra["select_requested"] = config.select  # as asked: "auto" unless given explicitly
    return result
