from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _few_threads():
    # two threads at most; fewer when OMP_NUM_THREADS says so (several test runs sharing the cores)
    torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"../shared/data with MNIST is not beside this checkout ({SHARED_DATA})")
    return SHARED_DATA
