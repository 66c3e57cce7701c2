"""Genotype -> discrete torch network, for the DARTS and NAS-Bench-201 spaces.

Every module is built from its op key (``op_key.build_op_module``), so the network computes
exactly the ops that ``op_key.network_op_keys`` lists. ``none`` edges, and edges that ``none``
cuts off from the cell output, are left out; a node without live inputs is zero, and an NB201
cell whose output is cut off returns zeros, so every genotype gives a valid graph.
"""
from __future__ import annotations

import functools
import operator
from typing import Any

import torch
from torch import nn

from hilnas.searchers.genotype import Genotype, NB201Genotype
from hilnas.searchers.op_key import (build_op_module, darts_cell_wiring, darts_edge_key,
                                     darts_preprocess_keys, head_key, nb201_cell_wiring, nb201_edge_key,
                                     nb201_lastact_key, nb201_resblock_key, stem_key)
from hilnas.searchers.spaces import DartsCellSpec, DartsSpace, NB201Layer, NB201Space, SearchSpace, SpaceError


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples with probability drop_prob and rescale the rest (DARTS's regulariser)."""
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask / keep


def _sum(xs: list[torch.Tensor]) -> torch.Tensor:
    return functools.reduce(operator.add, xs)  # k inputs -> k-1 binary adds, as the op keys count


class DartsCell(nn.Module):
    """A discrete DARTS cell: preprocess both inputs, compute each node as a sum of live edges, concat."""

    def __init__(self, spec: DartsCellSpec, genotype: Genotype):
        super().__init__()
        self.spec = spec
        triples, self.concat, wiring = darts_cell_wiring(genotype, spec.reduction)
        pre = darts_preprocess_keys(spec)
        self.preprocess = nn.ModuleDict({str(i): build_op_module(pre[i]) for i in sorted(wiring.used_inputs)})
        self.edges = [(s, d) for (s, d, _), ok in zip(triples, wiring.live) if ok]  # (src, dst) per op below
        self.ops = nn.ModuleList(build_op_module(darts_edge_key(spec, s, op))  # type: ignore[arg-type]
                                 for (s, d, op), ok in zip(triples, wiring.live) if ok)
        self.identity = [isinstance(m, nn.Identity) for m in self.ops]
        self.zero_nodes = wiring.zero_nodes

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        raw = (s0, s1)
        states: dict[int, torch.Tensor] = {int(i): m(raw[int(i)]) for i, m in self.preprocess.items()}
        for node in range(2, self.spec.steps + 2):
            inputs = []
            for (src, dst), op, is_id in zip(self.edges, self.ops, self.identity):
                if dst == node:
                    h = op(states[src])
                    if self.training and drop_prob > 0 and not is_id:
                        h = drop_path(h, drop_prob)
                    inputs.append(h)
            if inputs:
                states[node] = _sum(inputs)
        n = self.spec.size
        outs = [states[i] if i in states else s1.new_zeros(s1.shape[0], self.spec.C, n, n) for i in self.concat]
        return torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]  # (B, len(concat) * C, size, size)


class DartsNetwork(nn.Module):
    """The DARTS evaluation network: stem, cells, global pool + linear head (no auxiliary head)."""

    def __init__(self, space: DartsSpace, genotype: Genotype):
        super().__init__()
        self.space, self.genotype = space, genotype
        self.drop_path_prob = 0.0  # set by the training loop; used in training mode only
        self.stem = build_op_module(stem_key(space))
        self.cells = nn.ModuleList(DartsCell(spec, genotype) for spec in space.cells())
        self.head = build_op_module(head_key(space))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in_channels, H, W) -> (B, num_classes)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
        return self.head(s1)


class NB201Cell(nn.Module):
    """A discrete NAS-Bench-201 cell: node j is the sum of its live edges from nodes i < j; node 3 is the output."""

    def __init__(self, layer: NB201Layer, genotype: NB201Genotype):
        super().__init__()
        triples, wiring = nb201_cell_wiring(genotype)
        self.edges = [(s, d) for (s, d, _), ok in zip(triples, wiring.live) if ok]
        self.ops = nn.ModuleList(build_op_module(nb201_edge_key(layer, op))  # type: ignore[arg-type]
                                 for (s, d, op), ok in zip(triples, wiring.live) if ok)
        self.output_is_zero = 3 in wiring.zero_nodes

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W)
        if self.output_is_zero:
            return x.mul(0.0)
        nodes = {0: x}
        for node in (1, 2, 3):
            inputs = [op(nodes[s]) for (s, d), op in zip(self.edges, self.ops) if d == node]
            if inputs:
                nodes[node] = _sum(inputs)
        return nodes[3]


class NB201Network(nn.Module):
    """NAS-Bench-201's network: stem, 3 stages of N cells with ResNet reductions, BN-ReLU, pool + linear."""

    def __init__(self, space: NB201Space, genotype: NB201Genotype):
        super().__init__()
        self.space, self.genotype = space, genotype
        self.stem = build_op_module(stem_key(space))
        self.layers = nn.ModuleList(build_op_module(nb201_resblock_key(l)) if l.kind == "resblock"
                                    else NB201Cell(l, genotype) for l in space.layers())
        self.lastact = build_op_module(nb201_lastact_key(space))
        self.head = build_op_module(head_key(space))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in_channels, H, W) -> (B, num_classes)
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        return self.head(self.lastact(x))


def build_network(space: SearchSpace, genotype: Any) -> nn.Module:
    """The discrete network of a genotype in a space (raises SpaceError if they do not fit)."""
    space.check(genotype)
    if isinstance(space, DartsSpace):
        return DartsNetwork(space, genotype)
    if isinstance(space, NB201Space):
        return NB201Network(space, genotype)
    if hasattr(space, "build_network"):  # spaces defined beside their method build their own (e.g. resnet18)
        return space.build_network(genotype)
    raise SpaceError(f"no network builder for space {type(space).__name__}")
