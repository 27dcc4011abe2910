"""The registry: variables, collections, name scopes, unique names, the default graph.

>>> import varstore as tf
>>> g = tf.Graph()
>>> with g.as_default(), tf.name_scope("layer1"):
...     g.unique_name("weights"), g.unique_name("weights")
('layer1/weights', 'layer1/weights_1')
"""
from __future__ import annotations

import contextlib
import operator
import threading
from collections.abc import Iterator
from typing import Any

from devices.errors import InvalidArgumentError


class GraphKeys:
    """Standard collection names (TF 1.x's)."""

    GLOBAL_VARIABLES = "variables"
    TRAINABLE_VARIABLES = "trainable_variables"
    LOCAL_VARIABLES = "local_variables"
    MODEL_VARIABLES = "model_variables"
    GLOBAL_STEP = "global_step"
    SAVERS = "savers"
    REGULARIZATION_LOSSES = "regularization_losses"  # what get_variable's regularizer returns
    MOVING_AVERAGE_VARIABLES = "moving_average_variables"


class Graph:
    """Holds variables by collection and hands out unique, scoped names."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._collections: dict[str, list] = {}
        self._used: dict[str, int] = {}
        self._local = threading.local()  # name-scope stack is per thread, as in TF
        self.seed: int | None = None
        self._op_counter = 0
        # get_variable's variables by name (var_scope._VariableStore), and each thread's current
        # variable scope (var_scope._ScopeState): made on first use, per graph as in TF.
        self._variable_store: Any = None
        self._var_scopes: Any = None

    # -- names ---------------------------------------------------------------
    def _scope(self) -> str:
        return getattr(self._local, "scope", "")

    def unique_name(self, name: str, mark_as_used: bool = True) -> str:
        """``name`` under the current scope, suffixed ``_1``, ``_2``... if already taken."""
        if not isinstance(name, str) or not name or name.startswith("/") or name.endswith("/"):
            raise InvalidArgumentError(f"name: expected a non-empty name without leading or trailing '/', "
                                       f"received {name!r}")
        full = f"{self._scope()}/{name}" if self._scope() else name
        with self._lock:
            key = full.lower()  # TF compares names case-insensitively for uniqueness
            n = self._used.get(key, 0)
            unique = full
            if n:
                while True:
                    unique = f"{full}_{n}"
                    if unique.lower() not in self._used:
                        break
                    n += 1
            if mark_as_used:
                self._used[key] = n + 1
                self._used.setdefault(unique.lower(), 1)
            return unique

    @contextlib.contextmanager
    def name_scope(self, name: str | None) -> Iterator[str]:
        """Prefix names created inside with ``name/`` (made unique); None or "" resets to the root.

        A name ending in "/" re-enters that exact scope, as in TF.
        """
        old = self._scope()
        if not name:
            new = ""
        elif name.endswith("/"):
            new = name[:-1]
        else:
            new = self.unique_name(name)
        self._local.scope = new
        try:
            yield new + "/" if new else ""
        finally:
            self._local.scope = old

    def get_name_scope(self) -> str:
        """The current name scope, without a trailing "/" ("" at the root).

        >>> g = Graph()
        >>> with g.as_default(), name_scope("a"), name_scope("b"):
        ...     g.get_name_scope()
        'a/b'
        """
        return self._scope()

    def next_op_id(self) -> int:
        with self._lock:
            self._op_counter += 1
            return self._op_counter

    # -- collections ---------------------------------------------------------
    def add_to_collection(self, name: str, value: Any) -> None:
        with self._lock:
            self._collections.setdefault(name, []).append(value)

    def add_to_collections(self, names, value: Any) -> None:
        for n in ([names] if isinstance(names, str) else set(names)):
            self.add_to_collection(n, value)

    def get_collection(self, name: str, scope: str | None = None) -> list:
        """A copy of the collection; with ``scope``, only items whose name starts with it."""
        with self._lock:
            items = list(self._collections.get(name, ()))
        if scope is None:
            return items
        return [v for v in items if getattr(v, "name", "").startswith(scope)]

    def get_collection_ref(self, name: str) -> list:
        with self._lock:
            return self._collections.setdefault(name, [])

    def get_all_collection_keys(self) -> list[str]:
        with self._lock:
            return sorted(self._collections)

    def clear_collection(self, name: str) -> None:
        with self._lock:
            self._collections.pop(name, None)

    # -- default -------------------------------------------------------------
    @contextlib.contextmanager
    def as_default(self) -> Iterator[Graph]:
        """Make this the default graph of the current thread inside the block."""
        stack = _default_stack()
        stack.append(self)
        try:
            yield self
        finally:
            stack.remove(self)

    def get_variable_by_name(self, name: str):
        """The variable whose op name (``"scope/v"``) is ``name``, or None."""
        for v in self.get_collection(GraphKeys.GLOBAL_VARIABLES) + self.get_collection(GraphKeys.LOCAL_VARIABLES):
            if v._name == name:
                return v
        return None

    # -- ops by name (varstore.ops registers each named op here) -------------------
    def get_operation_by_name(self, name: str) -> Any:
        """The op named ``name`` (``"scope/v"``, ``"scope/v/Assign"``, ``"init"``).

        KeyError if there is none, as TF; a Variable's op is ``v.op``.
        """
        if not isinstance(name, str) or ":" in name:
            raise ValueError(f"Name {name!r} appears to refer to a Tensor, not an Operation")
        node = self.__dict__.get("_ops_by_name", {}).get(name)
        if node is None:
            raise KeyError(f"The name {name!r} refers to an Operation not in the graph.")
        return node.op if hasattr(node, "op") and not hasattr(node, "_run") else node

    def get_tensor_by_name(self, name: str) -> Any:
        """The tensor named ``name`` (``"scope/v:0"``): a Variable for a variable's name, as TF's ref.

        KeyError if there is none, ValueError for an op name without ``:0``, as TF.
        """
        if not isinstance(name, str) or ":" not in name:
            raise ValueError(f"The name {name!r} looks like an (invalid) Operation name, not a Tensor. "
                             f"Tensor names must be of the form \"<op_name>:<output_index>\".")
        op, _, index = name.rpartition(":")
        node = self.__dict__.get("_ops_by_name", {}).get(op)
        if node is None or index != "0" or not hasattr(node, "dtype"):
            raise KeyError(f"The name {name!r} refers to a Tensor which does not exist. "
                           f"The operation, {op!r}, does not exist in the graph.")
        return node


_tls = threading.local()
_global_default = Graph()


def _default_stack() -> list:
    s = getattr(_tls, "stack", None)
    if s is None:
        s = _tls.stack = []
    return s


def get_default_graph() -> Graph:
    """The innermost ``as_default`` graph of this thread, else the process-wide one."""
    s = _default_stack()
    return s[-1] if s else _global_default


def reset_default_graph() -> None:
    """Replace the process-wide default graph with a new, empty one."""
    global _global_default
    if _default_stack():
        raise AssertionError("Do not use tf.reset_default_graph() inside a graph.as_default() block")
    _global_default = Graph()


def name_scope(name: str | None, default_name: str | None = None, values: Any = None):
    """``with name_scope("layer1"):`` prefixes new variable names with ``layer1/``."""
    return get_default_graph().name_scope(name or default_name)


def add_to_collection(name: str, value: Any) -> None:
    get_default_graph().add_to_collection(name, value)


def get_collection(name: str, scope: str | None = None) -> list:
    return get_default_graph().get_collection(name, scope)


def set_random_seed(seed: int | None) -> None:
    """Set the graph-level seed: with op-level seeds, random initial values become reproducible.

    >>> import varstore as tf
    >>> tf.set_random_seed(1)
    """
    g = get_default_graph()
    g.seed = as_seed(seed, "set_random_seed")
    g._op_counter = 0


def as_seed(seed: Any, what: str = "seed") -> int | None:
    """A seed as an int (None stays None); anything else is InvalidArgumentError (1.5 is no seed)."""
    if seed is None:
        return None
    try:
        if isinstance(seed, bool):
            raise TypeError
        return operator.index(seed)
    except TypeError:
        raise InvalidArgumentError(f"{what}: expected an integer seed, received {seed!r}") from None
