import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small models and inputs: one thread is as fast, and immune to a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
