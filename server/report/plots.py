"""The report's figures as PNG bytes (matplotlib, the Agg backend: no display needed).

- ``pareto``: per device, test accuracy against measured latency (and energy, when measured) for
  every method and baseline, the 95 % CI as error bars, the Pareto front over all of them, the
  budgets as vertical lines, networks over their budget marked;
- ``tradeoff``: per device, the hypernetwork's family along lambda (LUT latency) and its
  accuracy/latency curve (the supernet's accuracy, a proxy: members are trained separately);
- ``lut_vs_measured``: LUT-predicted against measured latency of every network, with the ±10 % band.
"""
from __future__ import annotations

import io
from typing import Any, Sequence

_MARKERS = "osD^vP*Xh<>"
_DPI = 110


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both cost (lower) and accuracy (higher), by cost."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def pareto(device: str, networks: Sequence[dict[str, Any]], budgets: Sequence[dict[str, Any]]) -> bytes:
    """Accuracy vs measured latency (and energy) on one device, every method, front and budgets."""
    plt = _plt()
    from hilnas.server.report.tables import has_acc

    nets = [n for n in networks if n.get("measured_ms") is not None and has_acc(n)]
    axes_spec = [("latency_ms", "measured_ms", "ci95_ms", "measured latency (ms, median; bars: 95% CI)")]
    if any(n.get("measured_energy_mj") is not None for n in nets):
        axes_spec.append(("energy_mj", "measured_energy_mj", "energy_ci95_mj",
                          "measured energy per inference (mJ; bars: 95% CI)"))
    fig, axes = plt.subplots(1, len(axes_spec), figsize=(6.4 * len(axes_spec), 4.6), squeeze=False)
    methods = sorted({n["method"] for n in nets}, key=lambda m: (any(n["baseline"] for n in nets if n["method"] == m), m))
    for ax, (metric, key, ci_key, xlabel) in zip(axes[0], axes_spec):
        shown = [n for n in nets if n.get(key) is not None]
        for i, method in enumerate(methods):
            mine = [n for n in shown if n["method"] == method]
            if not mine:
                continue
            xs = [n[key] for n in mine]
            ys = [100 * n["test_acc"] for n in mine]
            err = [[max(n[key] - n[ci_key][0], 0) if n.get(ci_key) else 0 for n in mine],
                   [max(n[ci_key][1] - n[key], 0) if n.get(ci_key) else 0 for n in mine]]
            baseline = mine[0].get("baseline")
            color = f"C{i}"
            ax.errorbar(xs, ys, xerr=err, fmt=_MARKERS[i % len(_MARKERS)], color=color, ms=7, capsize=3,
                        mfc="white" if baseline else color, label=f"{method}{' (baseline)' if baseline else ''}")
        over = [n for n in shown if n.get("met") is False and n["budget_metric"] == metric]
        if over:
            ax.scatter([n[key] for n in over], [100 * n["test_acc"] for n in over], s=180, facecolors="none",
                       edgecolors="red", linewidths=1.5, label="over its budget", zorder=5)
        front = pareto_front([(n[key], 100 * n["test_acc"]) for n in shown])
        if len(front) > 1:
            ax.step(*zip(*front), where="post", color="grey", ls="--", lw=1, label="Pareto front (all methods)")
        drawn = [b for b in budgets if b.get("metric") == metric and b.get("feasible")]
        xs_all = [n[key] for n in shown] + [b["value"] for b in drawn]
        if xs_all:  # room on the right for the budgets' labels
            ax.set_xlim(min(xs_all) * 0.9, max(xs_all) * 1.3)
        for b in drawn:
            ax.axvline(b["value"], color="red", ls=":", lw=1.2)
            ax.annotate(f"budget {b['written']}\n= {b['value']:.3g} {b['unit']}", (b["value"], 1.0),
                        xycoords=("data", "axes fraction"), xytext=(3, -3), textcoords="offset points",
                        va="top", fontsize=7, color="red")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{device}: accuracy vs measured {'latency' if metric == 'latency_ms' else 'energy'}")
        ax.grid(alpha=0.3)
        if shown:
            ax.legend(fontsize=7, loc="lower right")
        else:
            ax.text(0.5, 0.5, "no measured networks", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    return _png(fig)


def tradeoff(device: str, curves: Sequence[dict[str, Any]]) -> bytes:
    """The hypernetwork's family on one device: LUT latency along lambda, and accuracy vs LUT latency."""
    plt = _plt()
    any_acc = any(p.get("supernet_acc") is not None for c in curves for p in c["points"])
    if any_acc:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    else:  # a family without accuracy along lambda (the pruning hypernetwork's): no empty second panel
        fig, ax1 = plt.subplots(1, 1, figsize=(6.5, 4.2))
        ax2 = None
    for i, c in enumerate(curves):
        pts = sorted(c["points"], key=lambda p: p["scale"])
        label = f"run {c['run_id']}, seed {c['seed']} (Lambda = {c['Lambda']:.3g})"
        xs = [p["scale"] for p in pts]
        ax1.plot(xs, [p["latency_ms"] for p in pts], "o-", color=f"C{i}", drawstyle="steps-post", label=label)
        with_acc = [p for p in pts if p.get("supernet_acc") is not None]
        if with_acc and ax2 is not None:  # one point per lambda of the grid: a cloud, not a path (the proxy is noisy)
            ax2.scatter([p["latency_ms"] for p in with_acc], [100 * p["supernet_acc"] for p in with_acc],
                        color=f"C{i}", label=label)
            front = pareto_front([(p["latency_ms"], 100 * p["supernet_acc"]) for p in with_acc])
            if len(front) > 1:
                ax2.step(*zip(*front), where="post", color=f"C{i}", ls="--", lw=1, label=f"{label}: its front")
    ax1.set_xlabel("trade-off coefficient lambda (scale, 0 = accuracy only)")
    ax1.set_ylabel("LUT latency of the derived network (ms)")
    ax1.set_title(f"{device}: the family along lambda (one training)")
    if ax2 is not None:
        ax2.set_xlabel("LUT latency of the derived network (ms)")
        ax2.set_ylabel("supernet accuracy at lambda (%, val; a proxy)")
        ax2.set_title(f"{device}: the trade-off curve (one point per lambda)")
    for ax in (ax1, ax2) if ax2 is not None else (ax1,):
        ax.grid(alpha=0.3)
        if ax.lines or ax.collections:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def lut_vs_measured(networks: Sequence[dict[str, Any]]) -> bytes:
    """LUT-predicted vs measured latency of every network, per device, with y = x and its ±10 % band."""
    plt = _plt()
    pts = [n for n in networks if n.get("predicted_ms") is not None and n.get("measured_ms") is not None]
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    devices = sorted({n["device"] for n in pts})
    for i, device in enumerate(devices):
        mine = [n for n in pts if n["device"] == device]
        within = sum(abs(n["predicted_ms"] - n["measured_ms"]) <= 0.1 * n["measured_ms"] for n in mine)
        ax.scatter([n["measured_ms"] for n in mine], [n["predicted_ms"] for n in mine], color=f"C{i}",
                   marker=_MARKERS[i % len(_MARKERS)], label=f"{device}: {within} of {len(mine)} within ±10%")
    if pts:
        values = [n["measured_ms"] for n in pts] + [n["predicted_ms"] for n in pts]
        lo, hi = min(values) / 1.3, max(values) * 1.3
        line = [lo, hi]
        ax.plot(line, line, color="black", lw=1, label="predicted = measured")
        ax.fill_between(line, [0.9 * lo, 0.9 * hi], [1.1 * lo, 1.1 * hi], color="grey", alpha=0.25,
                        label="±10% band")
        if hi / lo > 20:
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.legend(fontsize=7, loc="upper left")
    else:
        ax.text(0.5, 0.5, "no network has both a prediction and a measurement", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("measured latency (ms, median)")
    ax.set_ylabel("LUT-predicted latency (ms)")
    ax.set_title("LUT prediction vs measurement")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)
