"""Shared fixtures. Placement state lives in module globals of ``devices.manager``;
the fixtures here isolate it so tests can be run in any order."""
from __future__ import annotations

import sys

import pytest
from cupy_swap import gpu_caches_reset

from devices import manager


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
