"""The hypernetwork search's per-space defaults: what ``"auto"`` resolves to (``HypernetConfig.resolved``).

The family settings that gave the targets differ by space (docs/performance.md, issue 12 item 5): on the DARTS space
``sandwich`` weights + phase 1 + the pinned anchor (12 distinct members, span 0.96, median of seeds 0-2, sixth
session); on the full-size NB201 ``sandwich-children`` weights + phase 1 + the pinned anchor + the relaxed step, with Lambda
moved to the family's knee after each epoch and the scale drawn uniformly (span 0.94, 7 distinct members, median of
seeds 0-2; the setting before it, the straight-through step without the anchor or the knee, gave 7 / 0.54; seventh
session, "Λ at the family's knee"). The ``"median"`` derivation met both family targets at full size (eighth session:
12 distinct, span 0.99) but its members at small budgets were far worse cells on the search-quality proxy (median
regret at the budgets 37.6 points against 4.8), so ``derivation`` stays ``"argmax"`` on every space. The
``"conv-median"`` derivation (ninth session: convolutions kept until the argmax frees an edge) fixed those members
(regret at the budgets 4.4) but one seed's member-regret median was 0.59 point above the argmax's, over the 0.5 its
decision rule allowed, so it too is an option only. On the issue-11 search-quality proxy (NB201 C=8 N=1) both NB201 settings span
100 % of the reachable range on seeds 0-2. A user who gives none of these flags gets the measured setting of the
space; a flag given explicitly wins, field by field. Spaces without a measured setting keep the earlier defaults
(``FALLBACK``).
"""
from __future__ import annotations

AUTO = "auto"

# field -> the value before per-space defaults (the hypernetwork's behaviour on any other space)
FALLBACK = {"weight_lambda": "drawn", "arch_step": "relaxed", "phase1": "none", "anchor": "none",
            "scale_sampling": "log", "knee": "none", "derivation": "argmax"}

# space name -> field -> value; every field of FALLBACK is given
PER_SPACE = {
    "darts": {"weight_lambda": "sandwich", "arch_step": "relaxed", "phase1": "dearest", "anchor": "pinned",
              "scale_sampling": "log", "knee": "none", "derivation": "argmax"},
    "nb201": {"weight_lambda": "sandwich-children", "arch_step": "relaxed", "phase1": "dearest", "anchor": "pinned",
              "scale_sampling": "uniform", "knee": "family", "derivation": "argmax"},
}


def resolve(space_name: str, given: dict[str, str]) -> dict[str, str]:
    """``given`` (field -> value, ``AUTO`` where not chosen) with each ``AUTO`` replaced by the space's value.

    The pinned anchor needs phase 1: an ``AUTO`` anchor resolves to ``"none"`` when phase 1 was turned off
    explicitly, so an explicit ``phase1="none"`` stays valid on the DARTS space.
    """
    table = PER_SPACE.get(space_name, FALLBACK)
    out = {k: table[k] if v == AUTO else v for k, v in given.items()}
    if given.get("anchor") == AUTO and out.get("phase1") == "none":
        out["anchor"] = "none"
    return out


__all__ = ["AUTO", "FALLBACK", "PER_SPACE", "resolve"]
