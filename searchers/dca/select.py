"""Which rule decides NB201's edges on the prediction: ``DcaConfig.select = "auto"`` resolved per space.

On NB201 the alphas of a supernet near 16-26 % validation accuracy decide the early edges for pooling, skip or none
where a conv of the same cost fits (DARTS-PT's finding); the supernet's validation score (``"perturbation"``)
lowered the benchmark's median regret on seeds 0-2 from 2.05 to 1.65 points, chosen on held-out seed 3
(docs/performance.md, "Edges decided by the supernet's accuracy"). Elsewhere ``"alpha"``: the DARTS space's band
target is met with it and perturbation was never measured there (its node decisions do not take ``select``).
"""
from __future__ import annotations

from typing import Any

from hilnas.searchers.dca.progressive import SELECT
from hilnas.searchers.spaces import NB201Space

AUTO = "auto"
SELECT_CHOICES = (AUTO, *SELECT)   # what DcaConfig.select / --select accept


def resolve_select(select: str, space: Any) -> str:
    """The rule a search on ``space`` runs with: an explicit ``select`` as given, ``"auto"`` by the space."""
    if select not in SELECT_CHOICES:
        raise ValueError(f"select must be one of {', '.join(SELECT_CHOICES)}, got {select!r}")
    if select != AUTO:
        return select
    return "perturbation" if isinstance(space, NB201Space) else "alpha"
