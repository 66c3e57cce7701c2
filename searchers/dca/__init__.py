"""DCA-NAS (seed 001): differentiable search under a device budget, as a constrained problem.

- ``search``: the method's entry point, ``DcaConfig`` and the learned ``LagrangeMultiplier``;
- ``architect``: the architecture step (and the cost terms of the baselines);
- ``bilevel``: the supernet search DCA-NAS, DARTS and the fixed penalty share;
- ``lug``: seed 001's lookup graph from a device budget to a search-time budget;
- ``repair``: the last resort for a derived cell over budget;
- ``baselines``: DARTS, the fixed penalty and random search through the same entry point.
"""
from hilnas.searchers.dca.search import DcaConfig, LagrangeMultiplier, search

__all__ = ["DcaConfig", "LagrangeMultiplier", "search"]
