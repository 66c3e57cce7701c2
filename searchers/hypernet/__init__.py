"""Hypernetwork search (DARTS-CC with hardware control, seeds 002 and 004): one run, a whole family.

- ``search``: the method (``HypernetConfig``, the hypernetwork, the supernets, ``search``);
- ``tradeoff``: the coordinates of lambda (a point on the simplex times a scale);
- ``objective``: seed 002's cost terms and the architecture-step hook;
- ``bound``: Lambda from seed 004's Theorem 1;
- ``derive`` / ``family``: genotypes from the trained hypernetwork, the curve, budgets;
- ``io``: saving a trained hypernetwork so later budgets need no training.
"""
from hilnas.searchers.hypernet.search import *  # noqa: F401,F403  (the public names, as listed there)
from hilnas.searchers.hypernet.search import __all__  # noqa: F401
