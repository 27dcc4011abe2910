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

import threading
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
