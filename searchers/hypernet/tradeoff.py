"""The coordinates of lambda: a trade-off point (a direction on the simplex over op types and a scale),
the simplex checks, and how the scale is drawn on [0, Lambda] and shown to the hypernetwork (``ScaleMap``).

See ``hypernet`` for the method; this module is shared by its training hooks and its family.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import torch

if TYPE_CHECKING:
    from hilnas.searchers.hypernet import HypernetConfig

_SIMPLEX_TOL = 1e-6


class TradeOffError(ValueError):
    """A trade-off point is not on the simplex, or its scale is outside the trained range."""


@dataclass(frozen=True)
class TradeOff:
    """A point of the trade-off: a direction on the simplex over op types, and a scale.

    ``weights`` has one entry per op type with a cost (``HypernetResult.ops``), >= 0, summing to
    1. The coefficient of op type o is ``scale * weights[o] / max(weights)``: the centre gives
    every op type the scale, a vertex penalises one op type alone. scale 0 = accuracy only.
    """
    weights: tuple[float, ...]
    scale: float

    def coefficients(self) -> tuple[float, ...]:
        top = max(self.weights)
        return tuple(self.scale * w / top for w in self.weights)

    def to_dict(self) -> dict[str, Any]:
        return {"weights": list(self.weights), "scale": self.scale}


def center(k: int) -> tuple[float, ...]:
    """The centre of the simplex over ``k`` op types (every op type weighs the same)."""
    return tuple([1.0 / k] * k)


def check_simplex(weights: Sequence[float], ops: Sequence[str]) -> tuple[float, ...]:
    """``weights`` as a tuple when it is a point of the simplex over ``ops``; TradeOffError otherwise."""
    try:
        w = tuple(float(v) for v in weights)
    except (TypeError, ValueError):
        raise TradeOffError(f"lambda weights must be numbers, got {weights!r}") from None
    where = f"the simplex over the {len(ops)} op types ({', '.join(ops)})"
    if len(w) != len(ops):
        raise TradeOffError(f"lambda has {len(w)} weights; a point of {where} has {len(ops)}")
    if not all(math.isfinite(v) for v in w) or min(w) < 0:
        raise TradeOffError(f"lambda {list(w)} is not on {where}: every weight must be finite and >= 0")
    if abs(sum(w) - 1.0) > _SIMPLEX_TOL:
        raise TradeOffError(f"lambda {list(w)} is not on {where}: the weights sum to {sum(w):.6g}, not 1")
    return w


def parse_direction(text: str, ops: Sequence[str]) -> tuple[float, ...]:
    """``"sep_conv_3x3=0.5,skip_connect=0.5"`` (unnamed op types get 0) -> a simplex point over ``ops``."""
    w = dict.fromkeys(ops, 0.0)
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, raw = item.partition("=")
        if not sep or name.strip() not in w:
            raise TradeOffError(f"direction item {item!r} must be OP=WEIGHT with OP one of {', '.join(ops)}")
        try:
            w[name.strip()] = float(raw)
        except ValueError:
            raise TradeOffError(f"direction item {item!r}: {raw!r} is not a number") from None
    return check_simplex(list(w.values()), ops)


@dataclass(frozen=True)
class ScaleMap:
    """Where on [0, Lambda] the scale is drawn and how the hypernetwork sees it: a position v in [0, 1].

    In the relaxed problem the cross-entropy's gradient on the alphas is one to two orders of
    magnitude smaller than the normalised cost's, so the architecture changes at coefficients
    far below Lambda (the theorem bounds the discrete problem). "log" spreads positions evenly over
    ``u = scale / Lambda = floor ((1 + 1/floor)^v - 1)``: logarithmic above ``floor``, linear below
    it, 0 included; "uniform" is seed 004's ``u = v``.
    """
    floor: float | None      # None = uniform

    @classmethod
    def of(cls, config: HypernetConfig) -> ScaleMap:
        if config.scale_sampling not in ("log", "uniform"):   # "auto": HypernetConfig.resolved(space) first
            raise ValueError(f"ScaleMap: scale_sampling {config.scale_sampling!r}; resolve the config for the space "
                             f"first (HypernetConfig.resolved)")
        return cls(config.log_floor if config.scale_sampling == "log" else None)

    def fraction(self, v: float) -> float:
        return v if self.floor is None else self.floor * ((1.0 + 1.0 / self.floor) ** v - 1.0)

    def encode(self, coeffs: torch.Tensor, Lambda: float) -> torch.Tensor:
        """Hypernetwork input: each coefficient's position in [0, 1]."""
        u = (coeffs / Lambda).clamp(0.0, 1.0)
        return u if self.floor is None else torch.log1p(u / self.floor) / math.log1p(1.0 / self.floor)

