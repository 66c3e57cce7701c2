"""Where the training loop reports progress when its caller did not pass ``progress=``.

A search calls ``train`` deep inside (a supernet search, random search's short trainings, the
hypernetwork's run), and a searcher has no business knowing how a command shows progress. So the
command sets a reporter for the duration of a search with ``reporting_to(fn)``, and every
``train`` call inside it sends its events there: each weight step and each epoch end, with the
hooks' ``progress_metrics()`` (a Lagrange multiplier, the current cost). Like logging, this is
ambient; unlike logging, it is scoped to the ``with`` block and to the thread (a ``ContextVar``).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hilnas.searchers.train.types import TrainEvent

Reporter = Callable[["TrainEvent"], None]

_REPORTER: ContextVar[Reporter | None] = ContextVar("hilnas_train_reporter", default=None)


@contextlib.contextmanager
def reporting_to(reporter: Reporter | None) -> Iterator[None]:
    """Send the events of every ``train`` call in this block (and this thread) to ``reporter``."""
    token = _REPORTER.set(reporter)
    try:
        yield
    finally:
        _REPORTER.reset(token)


def current_reporter() -> Reporter | None:
    return _REPORTER.get()


__all__ = ["Reporter", "current_reporter", "reporting_to"]
