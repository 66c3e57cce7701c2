"""Defect 9: error details never show where the agent keeps its files."""
from __future__ import annotations

import pytest

from loopback import FAST, client_for, start_agent
from hilnas.agent.results import Status
from testmodels import custom_op_model, hang_model

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("simulate", [None, "raspi4"], ids=["host", "simulated"])
def test_errors_do_not_expose_the_cache_path(tmp_path, simulate):
    running = start_agent(tmp_path / "agent-home", simulate=simulate)
    try:
        with client_for(running) as c:
            errors = [c.benchmark(custom_op_model(), config=FAST).error,
                      c.benchmark(hang_model(), config=FAST, timeout_s=3).error,
                      c.benchmark(b"\x00garbage", config=FAST).error]
            assert c.benchmark(custom_op_model(), config=FAST).status is Status.UNSUPPORTED_OP
        for e in errors:
            assert e and str(tmp_path) not in e and "agent-home" not in e, e
        if simulate is None:
            assert "<model cache>/" in errors[0]   # the runtime's own message, path replaced
    finally:
        running.stop(0)
