"""Agents on loopback (port 0) with real channels; the helpers live in tests/loopback.py."""
import pytest

from loopback import build_lut, client_for, search_space, start_agent


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


@pytest.fixture
def lut_store(tmp_path, sim_agent):
    """(store, client): a workspace store holding the simulated Pi's LUT of ``loopback.search_space()``."""
    from hilnas.server.store import Store

    client = client_for(sim_agent)
    store = Store.open(tmp_path / "ws")
    build_lut(store, client, search_space())
    yield store, client
    store.close()
