"""Swapping cupy in tests (for none, or for tests/fakecupy) without leaving caches behind.

A module of its own, not conftest.py: ``tests/tf_oracle`` has a conftest too, and ``from conftest
import ...`` would find whichever of the two was imported last.
"""
from __future__ import annotations

import contextlib

from devices import manager
from devices.backends import gpu


@contextlib.contextmanager
def gpu_caches_reset():
    """While inside: the caches that remember the cupy module and the GPU count start empty,
    and GPU devices the manager had cached are hidden. On the way out both are put back, so a
    test that swaps ``cupy`` (for none, or for the fake) leaves nothing behind."""
    gpu.cupy_module.cache_clear()
    gpu.gpu_count.cache_clear()
    with manager._lock:
        hidden = {s: d for s, d in manager._cache.items() if d.kind == "gpu"}
        for s in hidden:
            del manager._cache[s]
    try:
        yield
    finally:
        gpu.cupy_module.cache_clear()
        gpu.gpu_count.cache_clear()
        with manager._lock:
            for s in [s for s, d in manager._cache.items() if d.kind == "gpu"]:
                del manager._cache[s]
            manager._cache.update(hidden)
