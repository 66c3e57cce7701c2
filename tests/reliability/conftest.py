"""Agents on loopback for the reliability suites (helpers in tests/loopback.py)."""
import pytest

from loopback import start_agent


@pytest.fixture
def host_agent(tmp_path):
    running = start_agent(tmp_path)
    yield running
    running.stop(0)


@pytest.fixture
def sim_agent(tmp_path):
    running = start_agent(tmp_path, simulate="raspi4", seed=1)
    yield running
    running.stop(0)
