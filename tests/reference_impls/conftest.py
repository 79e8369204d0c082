import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Toy tensors are tiny: intra-op threads only add contention (up to 100x slower on a busy
    2-core machine), so every reference-implementation test runs on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
