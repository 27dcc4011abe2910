"""Shared fixtures. Placement state lives in module globals of ``devices.manager``;
the fixtures here isolate it so tests can be run in any order."""
from __future__ import annotations

import contextlib
import sys

import pytest

from devices import manager
from devices.backends import gpu


@pytest.fixture(autouse=True)
def _restore_soft_placement():
    """A test that turns soft placement off must not leak strict mode into the next one."""
    saved = manager._soft
    yield
    manager._soft = saved


@pytest.fixture(autouse=True)
def _graph_mode_after_each_test():
    """A test that enables eager mode for the process must not run the next one eagerly."""
    yield
    import varstore.ops as ops
    ops.disable_eager_execution()
    ops._mode.__dict__.pop("stack", None)


@pytest.fixture
def placement(monkeypatch):
    """Default placement settings and a fresh "already warned" set.

    Soft placement warns once per process for each spec; clearing the set lets a
    test observe that first warning whatever ran before it. Yields the manager.
    """
    monkeypatch.delenv("VARSTORE_SOFT_PLACEMENT", raising=False)
    manager.set_soft_placement(None)
    with manager._lock:
        saved = set(manager._warned)
        manager._warned.clear()
    yield manager
    with manager._lock:
        manager._warned.clear()
        manager._warned.update(saved)


_MISSING = object()


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


@pytest.fixture
def no_cupy(placement):
    """Simulate a machine where ``import cupy`` fails, even on a machine with a card.

    ``sys.modules['cupy'] = None`` makes the import raise ImportError (see gpu_caches_reset).
    """
    saved_module = sys.modules.get("cupy", _MISSING)
    sys.modules["cupy"] = None
    try:
        with gpu_caches_reset():
            yield
    finally:
        if saved_module is _MISSING:
            del sys.modules["cupy"]
        else:
            sys.modules["cupy"] = saved_module
