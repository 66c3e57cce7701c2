"""The device model: prices a costed graph (``graph.GraphCost``) on a ``DeviceProfile``.

Per kernel, a roofline: ``max(compute, memory) + dispatch``, where compute is FLOPs over the
op's share of peak and memory is bytes over a bandwidth that drops once the node's working set
no longer fits the cache. Effects that are not additive over operators, on purpose (a LUT that
sums per-op micro-models is therefore not exact, as on real hardware):
- fused epilogues (BN, bias, activation after Conv/Gemm) cost no dispatch and no memory pass;
- a per-model overhead (session run, input/output copies) is paid once per inference;
- weights stay in cache between inferences only while the whole model's weights fit in it;
- identical nodes are computed once only when the profile's runtime merges them (``cse``);
- a control-flow node (Loop, Scan, If) costs its body's kernels plus one dispatch per trip,
  times its trip count (``control_flow.py``).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from hilnas.agent.sim.graph import GraphCost, NodeCost
from hilnas.agent.sim.profile import DeviceProfile

# Fused epilogues that still do arithmetic; BN and constant affine ops fold into the weights.
_EPILOGUE_OPS = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh"}


@dataclass(frozen=True)
class NodeTime:
    """The simulated time of one node, split by what bounds it (us)."""

    name: str
    op_type: str
    compute_us: float
    memory_us: float
    dispatch_us: float
    total_us: float
    flops: float          # FLOPs actually executed (0 for folded BN)
    bytes_moved: int      # bytes read and written, weights included


class DeviceModel:
    """Latency (ms) and energy (mJ) per inference of a costed graph on one device profile."""

    def __init__(self, profile: DeviceProfile):
        self.profile = profile

    def node_times(self, costs: GraphCost | Iterable[NodeCost], *, freq_scale: float = 1.0,
                   threads: int = 0, params_resident: bool | None = None) -> tuple[NodeTime, ...]:
        """Time of every node that is not folded away, in graph order. ``params_resident``
        overrides whether the weights stay cached between inferences (default: they do when
        the weights of all the given nodes fit the cache)."""
        c = self.profile.compute
        nodes = [n for n in _nodes(costs) if _runs(n, c.cse)]
        by_name = {n.name: n for n in nodes}
        cores = self.profile.device.cpu_cores
        thread_scale = min(threads, cores) / cores if threads > 0 and c.scales_with_threads else 1.0
        flops_per_us = c.peak_gflops * 1e3 * freq_scale * thread_scale
        # Weights stay cache-resident across inferences only if all of them fit.
        if params_resident is None:
            params_resident = sum(n.params_bytes for n in nodes) <= c.cache_bytes
        params_bw = c.cache_bandwidth_gbs if params_resident else c.mem_bandwidth_gbs
        out = []
        for n in nodes:
            if n.body or n.trips:
                # Control flow: the body's kernels and one dispatch per iteration, trips times.
                inner = self.node_times(n.body, freq_scale=freq_scale, threads=threads,
                                        params_resident=params_resident)
                dispatch = c.dispatch_us / freq_scale
                per_trip = sum(t.total_us for t in inner) + dispatch
                out.append(NodeTime(n.name, n.op_type, n.trips * sum(t.compute_us for t in inner),
                                    n.trips * sum(t.memory_us for t in inner), dispatch * (n.trips + 1),
                                    n.trips * per_trip + dispatch, n.trips * sum(t.flops for t in inner),
                                    int(min(n.trips * sum(t.bytes_moved for t in inner), 2 ** 62))))
                continue
            if n.fused_into:
                head = by_name.get(n.fused_into, n)
                flops = n.flops if n.op_type in _EPILOGUE_OPS else 0.0
                compute = flops / (flops_per_us * c.efficiency_of(head.op_type, head.variant)
                                   * _occupancy(n, c.parallel_outputs))   # element-wise: the head's shape
                out.append(NodeTime(n.name, n.op_type, compute, 0.0, 0.0, compute, flops, 0))
                continue
            busy = _occupancy(n, c.parallel_outputs)   # a small kernel keeps part of the ALUs busy
            compute = n.flops / (flops_per_us * c.efficiency_of(n.op_type, n.variant) * busy)
            act = n.bytes_read + n.bytes_written
            working_set = act + n.params_bytes
            in_cache = 1.0 if working_set <= c.cache_bytes else c.cache_bytes / working_set
            act_us = act / 1e3 * (in_cache / c.cache_bandwidth_gbs + (1 - in_cache) / c.mem_bandwidth_gbs)
            memory = act_us / c.memory_efficiency_of(n.op_type) + n.params_bytes / (params_bw * 1e3)
            dispatch = c.dispatch_us / freq_scale
            out.append(NodeTime(n.name, n.op_type, compute, memory, dispatch,
                                max(compute, memory) + dispatch, n.flops, n.bytes_moved))
        return tuple(out)

    def kernel_times_us(self, nodes: "NodeArrays", *, params_resident: bool):
        """Vectorised ``node_times(...).total_us`` of many independent nodes at once (same
        formulas; calibration prices thousands of nodes per step). Nodes that do not run on
        this profile (merged duplicates) cost 0."""
        import numpy as np

        c = self.profile.compute
        flops_per_us = c.peak_gflops * 1e3
        eff = np.array([c.efficiency_of(op, variant) for op, variant in nodes.eff_keys])[nodes.eff_index]
        busy = np.maximum(np.minimum(1.0, nodes.out_elems / c.parallel_outputs), 1e-9) if c.parallel_outputs > 0 else 1.0
        compute = nodes.flops / (flops_per_us * eff * busy)
        act = nodes.act_bytes
        working_set = act + nodes.params_bytes
        in_cache = np.where(working_set <= c.cache_bytes, 1.0, c.cache_bytes / np.maximum(working_set, 1))
        act_us = act / 1e3 * (in_cache / c.cache_bandwidth_gbs + (1 - in_cache) / c.mem_bandwidth_gbs)
        mem_eff = np.array([c.memory_efficiency_of(op) for op in nodes.mem_keys])[nodes.mem_index]
        params_bw = c.cache_bandwidth_gbs if params_resident else c.mem_bandwidth_gbs
        memory = act_us / mem_eff + nodes.params_bytes / (params_bw * 1e3)
        total = np.where(nodes.fused, compute, np.maximum(compute, memory) + c.dispatch_us)
        if c.cse:
            total = np.where(nodes.duplicate, 0.0, total)
        return total

    def overhead_us(self, costs: GraphCost | Iterable[NodeCost], *, freq_scale: float = 1.0) -> float:
        """Once per inference: the runtime's run call plus copying inputs in and outputs out."""
        c = self.profile.compute
        io = costs.input_bytes + costs.output_bytes if isinstance(costs, GraphCost) else 0
        return c.model_overhead_us / freq_scale + io / (c.mem_bandwidth_gbs * 1e3)

    def latency_ms(self, costs: GraphCost | Iterable[NodeCost], *, freq_scale: float = 1.0,
                   threads: int = 0) -> float:
        """Noise-free latency of one inference, ms."""
        costs = costs if isinstance(costs, GraphCost) else tuple(costs)
        kernels = sum(t.total_us for t in self.node_times(costs, freq_scale=freq_scale, threads=threads))
        return (kernels + self.overhead_us(costs, freq_scale=freq_scale)) / 1e3

    def energy_mj(self, costs: GraphCost | Iterable[NodeCost], *, latency_ms: float | None = None,
                  freq_scale: float = 1.0, threads: int = 0) -> float:
        """Idle-subtracted (net) energy of one inference, mJ: static power over the latency plus
        dynamic energy of the FLOPs and bytes. Add ``idle_power_w * latency_ms`` for gross."""
        costs = costs if isinstance(costs, GraphCost) else tuple(costs)
        times = self.node_times(costs, freq_scale=freq_scale, threads=threads)
        if latency_ms is None:
            latency_ms = (sum(t.total_us for t in times) + self.overhead_us(costs, freq_scale=freq_scale)) / 1e3
        e = self.profile.energy
        io = costs.input_bytes + costs.output_bytes if isinstance(costs, GraphCost) else 0
        gflops = sum(t.flops for t in times) / 1e9
        gbytes = (sum(t.bytes_moved for t in times) + io) / 1e9
        return e.static_power_w * latency_ms + e.dynamic_mj_per_gflop * gflops + e.dynamic_mj_per_gb * gbytes


class NodeArrays:
    """Independent nodes as arrays for ``DeviceModel.kernel_times_us``. A fused epilogue is
    given with its head (op type and variant) and counts only its own arithmetic."""

    def __init__(self, nodes: Iterable[tuple[NodeCost, NodeCost | None]]):
        import numpy as np

        flops, act, params, fused, dup, eff_idx, mem_idx, outs = [], [], [], [], [], [], [], []
        eff_keys: dict[tuple[str, str], int] = {}
        mem_keys: dict[str, int] = {}
        for n, head in nodes:
            if head is not None:
                flops.append(n.flops if n.op_type in _EPILOGUE_OPS else 0.0)
                key = (head.op_type, head.variant)
                act.append(0)
                params.append(0)
            else:
                flops.append(n.flops)
                key = (n.op_type, n.variant)
                act.append(n.bytes_read + n.bytes_written)
                params.append(n.params_bytes)
            fused.append(head is not None)
            outs.append(_out_elems(n))
            dup.append(n.folded == "duplicate")
            eff_idx.append(eff_keys.setdefault(key, len(eff_keys)))
            mem_idx.append(mem_keys.setdefault(n.op_type, len(mem_keys)))
        self.flops = np.array(flops, float)
        self.act_bytes = np.array(act, float)
        self.params_bytes = np.array(params, float)
        self.fused = np.array(fused, bool)
        self.out_elems = np.array(outs, float)
        self.duplicate = np.array(dup, bool)
        self.eff_keys, self.eff_index = list(eff_keys), np.array(eff_idx, int)
        self.mem_keys, self.mem_index = list(mem_keys), np.array(mem_idx, int)


def _out_elems(n: NodeCost) -> float:
    """Output elements of a node (from its shape; from its bytes as float32 when unknown)."""
    if n.output_shape and all(d > 0 for d in n.output_shape):
        return float(math.prod(n.output_shape))
    return max(1.0, n.bytes_written / 4)


def _occupancy(n: NodeCost, parallel_outputs: float) -> float:
    """Share of the device a kernel keeps busy (1 unless ``parallel_outputs`` is set)."""
    return max(1e-9, min(1.0, _out_elems(n) / parallel_outputs)) if parallel_outputs > 0 else 1.0


def _runs(n: NodeCost, cse: bool) -> bool:
    """Survives the runtime's graph optimiser: not folded, or a duplicate the runtime keeps."""
    return not n.folded or (n.folded == "duplicate" and not cse)


def _nodes(costs: GraphCost | Iterable[NodeCost]) -> Iterable[NodeCost]:
    return costs.nodes if isinstance(costs, GraphCost) else costs
