"""The upper bound Lambda on the trade-off coefficient (seed 004, Theorem 1), estimated from data.

Theorem 1: let every network whose graph is intact (``valid``) predict better than the best
constant predictor, ``inf_p (1/n) sum_i l(p, y_i) > sup_valid L(gamma)``. A network whose graph is
broken predicts a constant, so it loses at least the constant predictor's loss; hence an optimum
of ``L(gamma) + lambda T(gamma)`` that breaks the graph needs

    lambda >= (inf_p (1/n) sum_i l(p, y_i) - sup_valid L(gamma)) / T^T 1 =: Lambda > 0,

and for ``lambda < Lambda`` the optimum is a valid network (Corollary 1). With cross-entropy the
best constant predictor is the label frequencies and its loss is the entropy of the labels.
(A broken NB201 cell outputs zeros, and the fixed layers after it then predict a constant.)

Estimated here from data: the entropy of a set of validation labels, and the loss on those
samples of a handful of valid networks (the cheapest, the dearest and random ones) with the
supernet's shared weights after a weight-only warm-up; the largest loss stands for the sup. The
searcher measures cost as a fraction of the dearest valid network's variable cost, so ``T^T 1``
is 1 and Lambda is in nats. When the theorem's condition fails (some valid network is no better
than a constant: the weights are not trained enough) the estimate says so and bounds nothing;
the searcher then trains the weights longer before it starts (seed 004's Algorithm 1 also waits
until the networks beat chance).
"""
from __future__ import annotations

import functools
import itertools
import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from hilnas.searchers.cost import CostModel, CostTables, extremes
from hilnas.searchers.genotype import NB201Genotype, wire_cell
from hilnas.searchers.spaces import DartsSpace, NB201Space, SearchSpace, SpaceError

if TYPE_CHECKING:
    import torch

    from hilnas.searchers.supernet import Supernet

_ONE_HOT = 30.0  # logit gap that makes a softmax one-hot to float32 precision (e^-30 ~ 1e-13)


# -- the formula ---------------------------------------------------------------------------------
def constant_predictor_loss(labels: Sequence[int] | np.ndarray | torch.Tensor, num_classes: int) -> float:
    """Cross-entropy of the best constant predictor on ``labels``: the entropy of their frequencies (nats)."""
    y = np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels, dtype=np.int64).ravel()
    if y.size == 0:
        raise ValueError("constant_predictor_loss needs at least one label")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got {int(y.min())}..{int(y.max())}")
    p = np.bincount(y, minlength=num_classes) / y.size
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def theorem_bound(constant_loss: float, worst_valid_loss: float, total_cost: float = 1.0) -> float:
    """Seed 004's Lambda = (constant loss - worst valid loss) / T^T 1 (positive only when the theorem applies)."""
    if not total_cost > 0 or not math.isfinite(total_cost):
        raise ValueError(f"T^T 1 (the total cost) must be a positive finite number, got {total_cost!r}")
    return (constant_loss - worst_valid_loss) / total_cost


@dataclass(frozen=True)
class Probe:
    """One valid network the bound was estimated with."""
    genotype: Any
    loss: float        # mean cross-entropy on the probe samples, nats
    cost: float        # variable cost as a fraction of the dearest network's (T(g) / T^T 1)


@dataclass(frozen=True)
class BoundEstimate:
    """Lambda and what it was computed from; ``source`` says which rule set it."""
    Lambda: float                   # the sampling range's upper end, nats per full cost span
    constant_loss: float            # entropy of the probe labels (best constant predictor), nats
    worst_valid_loss: float         # the largest loss among the probes (stands for the sup)
    theorem: float                  # (constant_loss - worst_valid_loss) / 1; <= 0 when the theorem does not apply
    per_network: float              # max over probes of (constant_loss - loss) / cost (inf with a free probe)
    source: str                     # "theorem"; a searcher that had to do without says so ("previous", "fallback")
    samples: int                    # labels the losses were averaged over
    probes: tuple[Probe, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def applies(self) -> bool:
        """Theorem 1's condition holds on the probes: every valid probe beats the constant predictor."""
        return self.theorem > 0

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("Lambda", "constant_loss", "worst_valid_loss", "theorem",
                                          "per_network", "source", "samples")}
        d["probes"] = [{"genotype": p.genotype.to_dict(), "loss": p.loss, "cost": p.cost} for p in self.probes]
        d["notes"] = list(self.notes)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def estimate_bound(constant_loss: float, probes: Sequence[Probe]) -> BoundEstimate:
    """Lambda from the probes' losses (the theorem's form); ``applies`` is False when a valid probe is no
    better than the constant predictor, and then ``Lambda`` is NaN: the theorem bounds nothing.

    ``per_network`` is the tighter bound the proof also gives, ``max_g (H - L(g)) / T(g)``, for
    reference only: a nearly free probe makes it explode, so it is never used to set the range.
    """
    if not probes:
        raise ValueError("estimate_bound needs at least one probe network")
    worst = max(p.loss for p in probes)
    theorem = theorem_bound(constant_loss, worst)
    per_net = max(((constant_loss - p.loss) / p.cost if p.cost > 0 else
                   (math.inf if p.loss < constant_loss else -math.inf)) for p in probes)
    notes: tuple[str, ...] = ()
    if theorem <= 0:
        notes = (f"Theorem 1 does not apply: the worst valid probe loses {worst:.4g} nats, no less than the "
                 f"constant predictor's {constant_loss:.4g}",)
    return BoundEstimate(Lambda=theorem if theorem > 0 else math.nan, constant_loss=constant_loss,
                         worst_valid_loss=worst, theorem=theorem, per_network=per_net,
                         source="theorem" if theorem > 0 else "none", samples=0, probes=tuple(probes), notes=notes)


# -- valid graphs -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class NB201Table:
    """Every cell of an NB201 space (``len(ops) ** 6``) with its wiring, for exact vectorised search."""
    ops: tuple[str, ...]
    arch: np.ndarray      # (A, 6) op index per edge
    live: np.ndarray      # (A, 6) bool: the edge computes something that reaches the output
    adds: np.ndarray      # (A,) binary node sums of the cell
    valid: np.ndarray     # (A,) bool: the output is connected to the input

    def costs(self, tables: CostTables) -> np.ndarray:
        """(A,) exact cost of each cell's network (``cost.table_cost`` for all cells at once)."""
        edge = tables.edge.sum(dim=0).double().numpy()  # (E, O): every cell of the network shares the genotype
        per_edge = edge[np.arange(self.arch.shape[1]), self.arch]  # (A, E)
        return tables.rest + (per_edge * self.live).sum(axis=1) + self.adds * float(tables.add.sum())

    def genotype(self, i: int) -> NB201Genotype:
        return NB201Genotype(tuple(self.ops[o] for o in self.arch[i]))


@functools.lru_cache(maxsize=8)
def nb201_table(ops: tuple[str, ...]) -> NB201Table:
    from hilnas.searchers.genotype import NB201_EDGES

    arch = np.array(list(itertools.product(range(len(ops)), repeat=len(NB201_EDGES))), dtype=np.int64)
    live = np.zeros(arch.shape, dtype=bool)
    adds = np.zeros(len(arch), dtype=np.int64)
    valid = np.zeros(len(arch), dtype=bool)
    for i, row in enumerate(arch):
        triples = [(s, d, ops[o]) for (s, d), o in zip(NB201_EDGES, row)]
        w = wire_cell(triples, 1, (3,))
        live[i] = w.live
        valid[i] = 3 not in w.zero_nodes
        per_node: dict[int, int] = {}
        for (_, d, _), ok in zip(triples, w.live):
            if ok:
                per_node[d] = per_node.get(d, 0) + 1
        adds[i] = sum(max(0, n - 1) for n in per_node.values())
    return NB201Table(ops, arch, live, adds, valid)


def is_valid(space: SearchSpace, genotype: Any) -> bool:
    """True when the network's output depends on its input in every cell (seed 004's Gamma_valid).

    NB201: the cell output is connected to the cell input through non-``none`` edges. DARTS
    (as derived: two inputs per node, neither ``none``): every node has a live input.
    """
    space.check(genotype)
    if isinstance(space, NB201Space):
        from hilnas.searchers.op_key import nb201_cell_wiring
        return 3 not in nb201_cell_wiring(genotype)[1].zero_nodes
    if isinstance(space, DartsSpace):
        for reduction in (False, True):
            edges, concat = genotype.cell(reduction)
            triples = [(src, k // 2 + 2, op) for k, (op, src) in enumerate(edges)]
            if wire_cell(triples, 2, concat).zero_nodes:
                return False
        return True
    raise SpaceError(f"no validity rule for space {type(space).__name__}")


@dataclass(frozen=True)
class CostSpan:
    """What a cost model charges for the architecture: ``rest`` is paid by every network, ``span`` = T^T 1."""
    rest: float           # stem, ResNet blocks, head: independent of the cells' choices
    span: float           # variable cost of the dearest valid network (the normaliser)
    cheapest: Any         # cheapest valid genotype
    cheapest_cost: float  # its exact cost
    dearest: Any
    dearest_cost: float

    def fraction(self, cost: float) -> float:
        return (cost - self.rest) / self.span


def cost_span(space: SearchSpace, model: CostModel) -> CostSpan:
    """The cheapest and dearest valid genotypes under ``model`` and the variable-cost span between 0 and the dearest."""
    tables = model.tables(space)
    if isinstance(space, NB201Space):
        table = nb201_table(space.ops)
        costs = np.where(table.valid, table.costs(tables), np.nan)
        lo, hi = int(np.nanargmin(costs)), int(np.nanargmax(costs))
        cheap, dear, c_lo, c_hi = table.genotype(lo), table.genotype(hi), float(costs[lo]), float(costs[hi])
    else:  # every derivable DARTS genotype is valid
        ex = extremes(space, model)
        cheap, dear, c_lo, c_hi = ex.cheapest, ex.dearest, ex.cheapest_cost, ex.dearest_cost
    span = c_hi - tables.rest
    if not span > 0:
        raise SpaceError(f"the {model.name} cost model charges nothing for the cells' choices in this {space.name} "
                         "space (every valid network costs the same), so there is no trade-off to search")
    return CostSpan(tables.rest, span, cheap, c_lo, dear, c_hi)


def probe_genotypes(space: SearchSpace, span: CostSpan, samples: int, *, seed: int) -> list[Any]:
    """The cheapest and dearest valid genotypes and ``samples`` random valid ones (distinct)."""
    rng = random.Random(seed)
    out = [span.cheapest, span.dearest]
    tries = 0
    while len(out) < samples + 2 and tries < 50 * (samples + 2):
        tries += 1
        g = space.sample(rng)
        if g not in out and is_valid(space, g):
            out.append(g)
    return out


# -- losses of valid networks with the supernet's shared weights -------------------------------------
def one_hot_arch(supernet: Supernet, genotype: Any) -> dict[str, torch.Tensor]:
    """Architecture parameters (by parameter name) under which ``supernet`` runs ``genotype``.

    NB201 and DARTS ops get a one-hot softmax; DARTS edges the genotype does not keep get ``none``
    and, with edge normalisation, a vanishing edge weight (the two kept edges then weigh 1/2 each
    in the searched cells, where the derived network sums them; BatchNorm absorbs the scale).
    """
    import torch

    space = supernet.space
    ops = list(space.ops)
    names = dict(supernet.named_parameters())
    out: dict[str, torch.Tensor] = {}
    for t in supernet.alphas:
        a = torch.zeros(len(space.edges), len(ops))
        if isinstance(space, NB201Space):
            for e, op in enumerate(genotype.ops):
                a[e, ops.index(op)] = _ONE_HOT
        else:
            edges = genotype.reduce if t == "reduce" else genotype.normal
            index = {e: i for i, e in enumerate(space.edges)}
            kept = {index[(src, k // 2 + 2)]: op for k, (op, src) in enumerate(edges)}
            for e in range(len(space.edges)):
                if e in kept:
                    a[e, ops.index(kept[e])] = _ONE_HOT
                elif "none" in ops:
                    a[e, ops.index("none")] = _ONE_HOT
            if t in supernet.betas:
                out[f"betas.{t}"] = torch.tensor([0.0 if e in kept else -_ONE_HOT for e in range(len(space.edges))],
                                                 device=names[f"betas.{t}"].device)
        out[f"alphas.{t}"] = a.to(names[f"alphas.{t}"].device)
    return out


def genotype_loss(supernet: Supernet, genotype: Any, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Mean cross-entropy of ``genotype`` run with the supernet's shared weights, the way the search runs it.

    The searched cells mix with one-hot weights (so, with a channel bottleneck, the bypassed
    channels still cross every edge, as in every architecture step) and the other cells are the
    genotype's derived cells. Running every cell as a discrete cell instead was tried: weights
    trained inside the mixture then predict worse than a constant, and Theorem 1 never applies.
    BatchNorm uses batch statistics, as in the architecture step; the running statistics are left
    as they were.
    """
    import torch
    import torch.nn.functional as F
    from torch.func import functional_call

    arch = one_hot_arch(supernet, genotype)
    saved = {n: b.detach().clone() for n, b in supernet.named_buffers()}
    was_training = supernet.training
    supernet.train()
    total, count = 0.0, 0
    try:
        with torch.no_grad():
            for x, y in batches:
                logits = functional_call(supernet, arch, (x,), strict=False)
                total += float(F.cross_entropy(logits, y, reduction="sum"))
                count += len(y)
    finally:
        with torch.no_grad():
            for n, b in supernet.named_buffers():
                b.copy_(saved[n])
        supernet.train(was_training)
    if count == 0:
        raise ValueError("genotype_loss needs at least one batch")
    return total / count


def estimate_from_supernet(supernet: Supernet, span: CostSpan, complexity: CostModel,
                           batches: Sequence[tuple[torch.Tensor, torch.Tensor]], *, samples: int,
                           seed: int) -> BoundEstimate:
    """Lambda for ``supernet`` (after its warm-up) from the probe networks' losses on ``batches``."""
    import torch

    space = supernet.space
    labels = torch.cat([y for _, y in batches])
    h = constant_predictor_loss(labels, space.num_classes)
    probes = []
    for g in probe_genotypes(space, span, samples, seed=seed):
        cost = span.fraction(complexity.genotype_cost(space, g))
        probes.append(Probe(g, genotype_loss(supernet, g, batches), max(cost, 0.0)))
    est = estimate_bound(h, probes)
    return BoundEstimate(**{**est.__dict__, "samples": int(labels.numel())})


__all__ = ["BoundEstimate", "CostSpan", "NB201Table", "Probe", "constant_predictor_loss", "cost_span",
           "estimate_bound", "estimate_from_supernet", "genotype_loss", "is_valid", "nb201_table", "one_hot_arch",
           "probe_genotypes", "theorem_bound"]
