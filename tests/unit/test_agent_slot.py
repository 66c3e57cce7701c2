import threading
import time

import pytest

from hilnas.agent.device import AgentError
from hilnas.agent.results import Status
from hilnas.agent.slot import MeasurementSlot


def test_one_holder_at_a_time_and_fifo_order():
    slot = MeasurementSlot(queue_size=4)
    order, inside, max_inside = [], [0], [0]
    lock = threading.Lock()
    gate = threading.Event()

    def worker(i):
        with slot.hold():
            with lock:
                inside[0] += 1
                max_inside[0] = max(max_inside[0], inside[0])
            order.append(i)
            if i == 0:
                gate.wait(5)
            with lock:
                inside[0] -= 1

    first = threading.Thread(target=worker, args=(0,))
    first.start()
    time.sleep(0.05)
    others = []
    for i in range(1, 4):
        t = threading.Thread(target=worker, args=(i,))
        t.start()
        others.append(t)
        while slot.waiting < i:  # enqueue in a known order
            time.sleep(0.005)
    gate.set()
    for t in [first, *others]:
        t.join(5)
    assert order == [0, 1, 2, 3]
    assert max_inside[0] == 1


def test_full_queue_is_refused_with_busy():
    slot = MeasurementSlot(queue_size=1)
    release = threading.Event()
    holder = threading.Thread(target=lambda: slot.hold().__enter__() or release.wait(5))
    with slot.hold():
        waiter = threading.Thread(target=lambda: slot.hold(time.monotonic() + 5).__enter__())
        waiter.start()
        while slot.waiting < 1:
            time.sleep(0.005)
        with pytest.raises(AgentError) as err:
            with slot.hold():
                pass
        assert err.value.status is Status.BUSY
    waiter.join(5)
    assert not holder.is_alive()


def test_deadline_expires_while_queued():
    slot = MeasurementSlot(queue_size=2)
    with slot.hold():
        result = {}

        def late():
            try:
                with slot.hold(time.monotonic() + 0.1):
                    result["got"] = True
            except AgentError as e:
                result["status"] = e.status

        t = threading.Thread(target=late)
        t.start()
        t.join(5)
    assert result == {"status": Status.TIMEOUT}
    assert slot.waiting == 0
    with slot.hold(time.monotonic() + 1):  # still usable
        pass
