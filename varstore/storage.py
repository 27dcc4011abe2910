"""A variable's storage: its array on its device, the lock that guards it, its shape.

This is the named internal surface through which the Saver, the optimizers and
the ps tier read and replace a variable's value (``var.storage``), instead of
reaching into the Variable. A value is read, written or replaced only under
``lock``, so that a save never sees a torn tensor and a restore that fails
part-way can put the variable back to uninitialized.

>>> import numpy as np
>>> s = Storage("v", (2,))
>>> s.require()
Traceback (most recent call last):
...
devices.errors.FailedPreconditionError: Attempting to use uninitialized value v
>>> s.adopt(np.zeros(3)); s.shape
(3,)
"""
from __future__ import annotations

import gc
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import compress
from operator import methodcaller
from typing import Any

from devices.errors import FailedPreconditionError


class Storage:
    """One variable's array (None until initialized or after a failed restore)."""

    __slots__ = ("owner", "array", "lock", "shape")

    def __init__(self, owner: str, shape: tuple[int, ...]):
        self.owner = owner  # the variable's name, for errors
        self.array: Any = None
        self.lock = threading.RLock()
        self.shape = tuple(shape)

    def require(self) -> Any:
        """The array; FailedPreconditionError naming the variable when it has none."""
        array = self.array
        if array is None:
            raise FailedPreconditionError(f"Attempting to use uninitialized value {self.owner}")
        return array

    def adopt(self, array: Any) -> None:
        """Take ``array`` (already on the variable's device, its dtype) as the value (restore)."""
        with self.lock:
            self.array = array
            self.shape = tuple(array.shape)

    def forget(self) -> None:
        """Back to uninitialized: a failed restore must not leave a half-written value usable."""
        with self.lock:
            self.array = None


_try_acquire, _release = methodcaller("acquire", False), methodcaller("release")


@contextmanager
def holding(locks: list) -> Iterator[None]:
    """Hold every lock in ``locks`` (re-entrant locks; one may appear twice): an optimizer
    step, or a save or restore of a run of small variables.

    They are first tried in the given order without waiting. If one is taken, all are
    let go and taken again waiting, in one global order (by id): a thread only ever
    waits while holding locks taken in that order, so two holders of overlapping
    variables cannot wait on each other in a cycle. (Other paths hold one variable
    lock at a time, or, for a GPU step, GPU variables' locks: never these.)
    """
    locks = list(locks)
    got = list(map(_try_acquire, locks))  # one C loop: no Python code runs between the calls
    held = locks
    if not all(got):
        deque(map(_release, compress(locks, got)), maxlen=0)
        held = []
    try:
        if not held:
            for lock in sorted(locks, key=id):
                lock.acquire()
                held.append(lock)
        yield
    finally:
        deque(map(_release, reversed(held)), maxlen=0)


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a save or restore of many variables builds its
    columns: each collection would walk every object of the program (every variable), and
    an index of thousands of tensors allocates enough to trigger several (measured: 30% of
    a 16,000-variable restore). Reference counting still frees everything meanwhile."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
