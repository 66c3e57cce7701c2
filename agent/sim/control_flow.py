"""Control flow on the simulated device: how often a Loop, Scan or If runs its subgraph.

A control-flow node runs its body ``trips`` times per inference; the device model prices it as
``trips x (the body's kernels + one dispatch per iteration) + one dispatch`` (``model.py``), so a
Loop of 10^15 trips costs what the host would spend on it (and times out as the host does)
instead of nothing. The trip count is the one the host would run:

- Loop: the constant maximum trip count M, or 0 when the initial condition is a constant false.
  A Loop whose count is known only at run time (no M, or an M computed from data) is refused with
  UNSUPPORTED_OP: the simulator cannot tell how long the host would run it. Deviation: an early
  exit through the body's own condition is not modelled; M is taken as the count (an upper bound).
- Scan: the length of its first scan input along its scan axis; unknown: refused likewise.
- If: a constant condition picks its branch; otherwise the dearer branch is costed (an upper
  bound, with a warning), since the host's input decides.

Nodes inside a body are costed with the main graph's formulas, without folding or fusion.
"""
from __future__ import annotations

from typing import Any, Callable

from hilnas.agent.results import Status

CONTROL_FLOW = ("Loop", "Scan", "If")


def control_flow_cost(node, name: str, tensors, warnings: list[str],
                      cost_node: Callable[..., Any]) -> tuple[float, tuple]:
    """(trips, body node costs) of one control-flow node; raises GraphError when unknowable."""
    from hilnas.agent.sim.graph import GraphError

    attrs = {a.name: a for a in node.attribute}

    def body(attr_name: str) -> tuple:
        if attr_name not in attrs or not attrs[attr_name].HasField("g"):
            raise GraphError(Status.INVALID_MODEL, f"{node.op_type} {name!r} has no {attr_name}")
        graph = attrs[attr_name].g
        inner = tensors.inner(graph)
        names = [f"{name}/{n.name or n.op_type}#{i}" for i, n in enumerate(graph.node)]
        return tuple(cost_node(n, nm, inner, "", warnings) for n, nm in zip(graph.node, names))

    def refuse(why: str) -> GraphError:
        return GraphError(Status.UNSUPPORTED_OP, f"the simulated device cannot cost {node.op_type} {name!r}: {why}; "
                                                 "the host would run it, for a time the simulator cannot know")

    if node.op_type == "If":
        cond = tensors.value_of(node.input[0]) if node.input else None
        if cond is not None:
            return 1.0, body("then_branch" if bool(cond) else "else_branch")
        branches = [body("then_branch"), body("else_branch")]
        warnings.append(f"If {name!r}: the condition is known only at run time; costed as its dearer branch")
        return 1.0, max(branches, key=lambda nodes: (sum(n.total_flops for n in nodes),
                                                     sum(n.bytes_moved for n in nodes)))
    if node.op_type == "Loop":
        max_trips = node.input[0] if len(node.input) > 0 else ""
        cond_name = node.input[1] if len(node.input) > 1 else ""
        cond = tensors.value_of(cond_name) if cond_name else None
        if cond is not None and not bool(cond):
            return 0.0, body("body")
        if not max_trips:
            raise refuse("it has no maximum trip count (it runs until a data-dependent condition)")
        m = tensors.value_of(max_trips)
        if m is None:
            raise refuse("its trip count is computed at run time")
        return float(max(0, int(m))), body("body")
    # Scan (opset >= 9): the scan inputs are the last num_scan_inputs inputs.
    n_scan = attrs["num_scan_inputs"].i if "num_scan_inputs" in attrs else 0
    if n_scan < 1 or n_scan > len(node.input):
        raise GraphError(Status.INVALID_MODEL, f"Scan {name!r} has no scan inputs")
    first = node.input[len(node.input) - n_scan]
    axes = list(attrs["scan_input_axes"].ints) if "scan_input_axes" in attrs else [0]
    shape = tensors.shape.get(first)
    axis = axes[0] if axes else 0
    if not shape or not -len(shape) <= axis < len(shape) or shape[axis] < 0:
        raise refuse("the length of its scan input is known only at run time")
    return float(shape[axis]), body("body")
