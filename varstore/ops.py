"""Things ``Session.run`` accepts besides values: ops that act when run, and lazy fetches."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Op:
    """An action deferred until ``sess.run(op)`` or ``op.run()`` (TF's initializer ops)."""

    def __init__(self, name: str, fn: Callable[[Any], Any]):
        self.name = name
        self._fn = fn

    def run(self, session: Any | None = None, feed_dict: Any = None) -> None:
        """Run it now (the session only supplies options such as placement logging)."""
        self._fn(session)

    def _fetch(self, session):
        self._fn(session)
        return None

    def __repr__(self) -> str:
        return f"<Op {self.name}>"


class Fetch:
    """A value computed when fetched (``is_variable_initialized``, ``report_uninitialized_variables``).

    Also usable directly: ``bool()``, ``len()`` and iteration evaluate it at that moment.
    """

    def __init__(self, name: str, fn: Callable[[], Any]):
        self.name = name
        self._fn = fn

    def eval(self, session: Any | None = None) -> Any:
        return self._fn()

    def _fetch(self, session):
        return self._fn()

    def __bool__(self) -> bool:
        return bool(self._fn())

    def __len__(self) -> int:
        return len(self._fn())

    def __iter__(self):
        return iter(self._fn())

    def __eq__(self, other) -> bool:
        return self._fn() == other

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"<Fetch {self.name}: {self._fn()!r}>"
