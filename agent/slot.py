"""The device's measurement slot: one measurement at a time, others wait in a bounded FIFO queue.

Concurrent timing on one device would corrupt both measurements, so every benchmark holds the
slot while it runs. A request that finds ``queue_size`` others already waiting is refused at
once (the servicer answers RESOURCE_EXHAUSTED); a request whose deadline passes while it waits
gives up (DEADLINE_EXCEEDED) without ever touching the device.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from contextlib import contextmanager
from typing import Iterator

from hilnas.agent.device import AgentError
from hilnas.agent.results import Status


class MeasurementSlot:
    """A FIFO mutex with a bounded wait queue and deadline-aware waiting."""

    def __init__(self, queue_size: int):
        if queue_size < 0:
            raise ValueError("queue_size must be >= 0")
        self.queue_size = queue_size
        self._cond = threading.Condition()
        self._busy = False
        self._waiting: deque[object] = deque()

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting)

    @contextmanager
    def hold(self, deadline: float | None = None) -> Iterator[None]:
        """Hold the slot; ``deadline`` is a ``time.monotonic()`` instant or None."""
        with self._cond:
            if self._busy or self._waiting:
                if len(self._waiting) >= self.queue_size:
                    raise AgentError(Status.BUSY, f"measurement queue full ({self.queue_size} waiting); retry later")
                ticket = object()
                self._waiting.append(ticket)
                try:
                    while self._busy or self._waiting[0] is not ticket:
                        remaining = None if deadline is None else deadline - time.monotonic()
                        if remaining is not None and remaining <= 0:
                            raise AgentError(Status.TIMEOUT, "deadline expired while waiting for the measurement slot")
                        self._cond.wait(remaining)
                finally:
                    self._waiting.remove(ticket)
                    self._cond.notify_all()
            self._busy = True
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
