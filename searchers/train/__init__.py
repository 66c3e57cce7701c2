"""The one training loop (``loop``) with its types, hooks, checkpoints and evaluation.

``from hilnas.searchers.train import ...`` is the one import callers need.
"""
from hilnas.searchers.train.loop import *  # noqa: F401,F403
from hilnas.searchers.train.loop import __all__  # noqa: F401
