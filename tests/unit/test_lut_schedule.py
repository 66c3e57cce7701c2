"""WorkQueue: the op keys a device's agents share (server/lut/schedule.py)."""
from __future__ import annotations

import threading
import time

from hilnas.server.lut.schedule import WorkQueue


def test_items_come_out_in_order_and_taking_ahead_stops_when_few_are_left():
    q = WorkQueue(["a", "b", "c", "d", "e"], agents=2)
    assert q.take() == "a" and q.take(ahead=True) == "b" and q.take(ahead=True) == "c"
    # two left for two agents: an agent with a model in flight takes no more ...
    assert q.take(ahead=True) is None and len(q) == 2
    # ... but an idle agent does
    assert q.take() == "d" and q.take() == "e" and q.take() is None
    assert q.outstanding == 5


def test_a_lost_agents_items_go_back_first_and_fewer_agents_allow_more_ahead():
    q = WorkQueue(["a", "b", "c", "d"], agents=3)
    taken = [q.take(), q.take()]
    q.give_back(taken)
    assert q.outstanding == 0 and len(q) == 4
    assert q.take() == "a" and q.take(ahead=True) is None   # 3 left, 3 agents
    q.agent_lost()
    assert q.take(ahead=True) == "b"                         # 3 left, 2 agents


def test_skipped_items_are_dropped_when_taken():
    failed = {"b"}
    q = WorkQueue(["a", "b", "c", "b"], agents=1, skip=lambda k: k in failed)
    assert [q.take(), q.take(), q.take()] == ["a", "c", None]


def test_wait_for_work_waits_for_outstanding_items_and_ends_when_all_are_done():
    q = WorkQueue(["a", "b"], agents=2)
    a, b = q.take(), q.take()
    results: list[bool] = []
    waiter = threading.Thread(target=lambda: results.append(q.wait_for_work()))
    waiter.start()
    time.sleep(0.1)
    assert waiter.is_alive()        # nothing queued, but two items may still come back
    q.give_back([b])                # an agent was lost with b unanswered
    waiter.join(5)
    assert results == [True] and q.take() == "b"
    q.done(a)
    q.done(b)
    assert q.wait_for_work() is False   # nothing queued, nothing outstanding: the build is over


def test_stop_wakes_every_waiter_and_takes_nothing_more():
    q = WorkQueue(["a", "b"], agents=2)
    q.take()
    q.take()
    results: list[bool] = []
    waiters = [threading.Thread(target=lambda: results.append(q.wait_for_work())) for _ in range(2)]
    for w in waiters:
        w.start()
    q.stop()
    for w in waiters:
        w.join(5)
    assert results == [False, False]
    q.give_back(["a"])
    assert q.take() is None
