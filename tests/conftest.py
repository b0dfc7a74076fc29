import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests use one thread: results do not depend on the machine's core count."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
