"""Fixtures shared by every test folder."""
import pytest


@pytest.fixture
def one_torch_thread():
    """Tiny models run fastest on one thread; spinning OpenMP workers on a busy 2-core machine
    made the search and training tests several times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def host_agent(tmp_path):
    """This host's agent on loopback (port 0), with a real worker."""
    from loopback import start_agent

    running = start_agent(tmp_path)
    yield running
    running.stop(0)


@pytest.fixture
def sim_agent(tmp_path):
    """A simulated Raspberry Pi 4 agent on loopback (port 0)."""
    from loopback import start_agent

    running = start_agent(tmp_path, simulate="raspi4", seed=1)
    yield running
    running.stop(0)
