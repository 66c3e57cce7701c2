"""The store with a LUT for the search tests; the agent fixtures (host_agent, sim_agent) live in
tests/conftest.py and the helpers in tests/loopback.py."""
import pytest

from loopback import build_lut, client_for, search_space


@pytest.fixture
def lut_store(tmp_path, sim_agent):
    """(store, client): a workspace store holding the simulated Pi's LUT of ``loopback.search_space()``."""
    from hilnas.server.store import Store

    client = client_for(sim_agent)
    store = Store.open(tmp_path / "ws")
    build_lut(store, client, search_space())
    yield store, client
    store.close()
