"""How a LUT build spreads its measurements over the agents of one device key.

One shared queue of op keys (every pass of every key, pass-major, so a pass still interleaves
over all keys); each agent pulls from it as it frees up, through a stream that keeps at most
``depth`` models in flight on that agent: one measuring, the next already uploaded, so the board
never waits for the network between two models. A model is pulled ahead of time only while the
queue holds more keys than there are live agents, so at the end no agent sits on a key that an
idle one could measure. A lost agent's unanswered keys go back to the front of the queue.

What this replaced, measured with ``benchmarks/bench_fleet.py``: fixed batches of 16 keys per
stream, and a barrier after every pass. 51 DARTS keys in batches of 16 give 4 batches, so 5 to 8
agents were no faster than 4, and every pass waited for its slowest agent (docs/performance.md).
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Callable, Iterable, Iterator

from hilnas.agent.results import BenchmarkRequest, BenchmarkResult
from hilnas.server.client import AgentClient


class WorkQueue:
    """Op keys waiting to be measured, shared by the agents of one device key (thread-safe).

    An item is *outstanding* from ``take`` until ``done`` or ``give_back``; ``wait_for_work``
    returns False only once nothing is queued or outstanding (or every agent is lost, or
    ``stop`` was called), so an agent that runs dry stays available for a lost agent's keys.
    """

    def __init__(self, items: Iterable[str], *, agents: int, skip: Callable[[str], bool] = lambda _: False):
        self._items: deque[str] = deque(items)
        self._skip = skip
        self._cond = threading.Condition()
        self.outstanding = 0
        self.agents = agents
        self.stopped = False

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def take(self, *, ahead: bool = False) -> str | None:
        """The next item, or None. ``ahead``: the caller still has a model in flight; granted
        only while more items are queued than there are live agents."""
        with self._cond:
            if self.stopped or (ahead and len(self._items) <= self.agents):
                return None
            while self._items:
                item = self._items.popleft()
                if not self._skip(item):
                    self.outstanding += 1
                    return item
            return None

    def done(self, item: str) -> None:
        with self._cond:
            self.outstanding -= 1
            self._cond.notify_all()

    def give_back(self, items: list[str]) -> None:
        """Unanswered items of a lost agent, first in line again."""
        with self._cond:
            self._items.extendleft(reversed(items))
            self.outstanding -= len(items)
            self._cond.notify_all()

    def agent_lost(self) -> None:
        with self._cond:
            self.agents -= 1
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self.stopped = True
            self._cond.notify_all()

    def wait_for_work(self) -> bool:
        """Block until an item is queued (True) or the build is over for this agent (False)."""
        with self._cond:
            while not self.stopped and not self._items and self.outstanding > 0:
                self._cond.wait()
            return not self.stopped and bool(self._items)


class AgentFeed:
    """One stream to one agent, fed from the queue with at most ``depth`` models in flight.

    One feed per stream: gRPC's sending thread may still sit in ``_requests`` after the stream
    failed, and a closed feed takes nothing more from the queue."""

    def __init__(self, client: AgentClient, queue: WorkQueue, make_request: Callable[[str], BenchmarkRequest], *,
                 depth: int, max_models: int, stop: threading.Event):
        self.client, self.queue, self.make_request = client, queue, make_request
        self.depth, self.max_models, self.stop = depth, max_models, stop
        self.in_flight: deque[str] = deque()     # sent, not yet answered, in order
        self._cond = threading.Condition()
        self._closed = False                     # the stream is over: take nothing more

    def _requests(self) -> Iterator[BenchmarkRequest]:
        """Runs on gRPC's sending thread: yields the next model when the agent has room."""
        for _ in range(self.max_models):
            with self._cond:
                while True:
                    if self.stop.is_set() or self._closed:
                        return
                    busy = len(self.in_flight)
                    item = None if busy >= self.depth else self.queue.take(ahead=busy > 0)
                    if item is not None:
                        self.in_flight.append(item)
                        break
                    if busy == 0:          # nothing queued for us now: end the stream
                        return
                    self._cond.wait(0.5)   # a result frees room (or the queue refills)
            yield self.make_request(item)

    def run(self, timeout_s: float, reply_timeout_s: float | None = None) -> Iterator[tuple[str, BenchmarkResult]]:
        """(op key, result) as they arrive. ``AgentUnavailable`` propagates; the caller then
        calls ``give_back_unanswered``."""
        try:
            for result in self.client.benchmark_stream(self._requests(), timeout_s=timeout_s,
                                                       reply_timeout_s=reply_timeout_s):
                with self._cond:
                    item = self.in_flight.popleft()
                    self._cond.notify_all()    # room for the next model while this one is recorded
                yield item, result
        finally:
            with self._cond:
                self._closed = True            # gRPC's sending thread may still be in _requests
                self._cond.notify_all()

    def give_back_unanswered(self) -> int:
        with self._cond:
            self._closed = True
            items = list(self.in_flight)
            self.in_flight.clear()
        self.queue.give_back(items)
        return len(items)
