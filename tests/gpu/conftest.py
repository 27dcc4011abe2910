"""Tests under tests/gpu need a real CUDA card: all of them are skipped unless cupy
imports and sees at least one device. They run on a GPU machine by one prepared
script; on CPU-only CI they show up as skipped, never as failures."""
from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def gpu_state() -> tuple[int, str]:
    """(number of CUDA devices, why none) as cupy sees them."""
    try:
        import cupy
    except Exception as e:  # ImportError, or CUDA libraries that fail to load
        return 0, f"cupy is not importable ({type(e).__name__}: {e})"
    try:
        n = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as e:  # CUDARuntimeError: no driver, no card
        return 0, f"cupy sees no CUDA device ({type(e).__name__}: {e})"
    return n, "" if n else "cupy sees no CUDA device"


def pytest_collection_modifyitems(config, items):
    mine = [item for item in items if HERE in Path(str(item.fspath)).resolve().parents]
    if not mine:
        return
    n, why = gpu_state()
    for item in mine:
        item.add_marker(pytest.mark.gpu)
        if n == 0:
            item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture(scope="session")
def n_gpus() -> int:
    return gpu_state()[0]
