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
