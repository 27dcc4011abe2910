"""Tensors and operations: what ``Session.run`` runs, and the two execution modes.

Graph mode (TF 1.x's default): building an op changes nothing; each
``sess.run`` of it applies it once. Eager mode (``tf.enable_eager_execution()``
or the scoped ``tf.eager_mode()``): ops run when they are called. One
implementation of each op serves both: eager mode runs the op it built.

>>> import varstore as tf
>>> tf.reset_default_graph()
>>> v = tf.Variable(0, name="counter")
>>> inc = v.assign_add(1)          # nothing happens yet
>>> with tf.Session() as sess:
...     sess.run(v.initializer)
...     _ = sess.run(inc); _ = sess.run(inc)
...     int(sess.run(v))
2
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from devices.errors import InvalidArgumentError

from .graph import Graph, get_default_graph

# -- execution mode ------------------------------------------------------------------
_eager_default = False
_mode = threading.local()


def executing_eagerly() -> bool:
    """True when ops run as they are called (eager mode), False in graph mode (the default).

    >>> import varstore as tf
    >>> tf.executing_eagerly()
    False
    >>> with tf.eager_mode():
    ...     tf.executing_eagerly()
    True
    """
    stack = getattr(_mode, "stack", None)
    return stack[-1] if stack else _eager_default


def enable_eager_execution(config: Any = None, device_policy: Any = None, execution_mode: Any = None) -> None:
    """Switch the process to eager mode: variables initialize when created, ops run when called.

    TF 1.x asks for this at program start; here it may be called at any time. A test or
    library that wants eager mode for a while only uses :func:`eager_mode` instead.
    """
    global _eager_default
    _eager_default = True


def disable_eager_execution() -> None:
    """Back to graph mode (the default) for the whole process."""
    global _eager_default
    _eager_default = False


@contextlib.contextmanager
def eager_mode(enabled: bool = True) -> Iterator[None]:
    """Eager (or, with ``enabled=False``, graph) mode inside the block, for this thread only.

    >>> import numpy as np, varstore as tf
    >>> with tf.eager_mode():
    ...     w = tf.Variable([1.0, 2.0], name="w_eager")      # initialized now
    ...     _ = w.assign_add([1.0, 1.0])                    # applied now
    ...     w.numpy().tolist()
    [2.0, 3.0]
    """
    stack = getattr(_mode, "stack", None)
    if stack is None:
        stack = _mode.stack = []
    stack.append(bool(enabled))
    try:
        yield
    finally:
        stack.pop()


def graph_mode() -> contextlib.AbstractContextManager:
    """Graph mode inside the block, for this thread (undoes an enclosing :func:`eager_mode`)."""
    return eager_mode(False)


# -- one run ---------------------------------------------------------------------------
class RunContext:
    """One ``Session.run``: the feeds, each node's value (computed at most once), the
    operations already run, and which variables' initializers ran.

    ``run_variables``: variables whose initializer this run executes (the others, if
    initialized, keep their value when read through ``initialized_value()``).
    """

    def __init__(self, run_variables: Any = (), on_initialized: Callable | None = None,
                 feeds: dict | None = None, session: Any = None):
        self.run_variables = set(map(id, run_variables))
        self.done: set[int] = set()
        self.in_progress: list = []
        self.on_initialized = on_initialized
        self.feeds: dict[int, Any] = feeds or {}
        self.session = session
        self.cache: dict[tuple, Any] = {}
        self.ran: dict[int, Any] = {}  # id -> the operation (kept alive: ids stay unique)
        # Arrays a variable adopted as its buffer (or a caller's fed array): a node that
        # hands one out again hands out a copy, so no two owners share memory.
        self._owned: set[int] = set()

    def ensure(self, var: Any) -> None:
        """Initialize ``var`` in this run if it is due (see Variable._initialize_in)."""
        var._initialize_in(self)

    def adopt(self, array: Any) -> bool:
        """Claim ``array`` for keeping: True the first time, False if someone may share it."""
        key = id(array)
        if key in self._owned:
            return False
        self._owned.add(key)
        return True

    def shared(self, array: Any) -> bool:
        """Whether ``array`` may be someone else's (a variable's buffer, a fed array)."""
        return id(array) in self._owned

    def value(self, node: Any, device: Any) -> Any:
        """``node``'s value on ``device`` in this run (computed once; feeds win)."""
        key = (id(node), device.name)
        hit = self.cache.get(key)
        if hit is not None:
            hit = hit[1]
            return device.asarray(hit, copy=True) if id(hit) in self._owned else hit
        for c in getattr(node, "control_inputs", ()):
            run_node(c, self)
        fed = self.feeds.get(id(node), _MISSING)
        if fed is not _MISSING:
            out = node._feed(fed, device)
            self._owned.add(id(out))  # the caller's array: never adopted without a copy
        else:
            out = node._eval(device, self)
        # The node is kept with its value: a node made during the run (and dropped) must not
        # have its id reused by another node that would then hit this entry.
        self.cache[key] = (node, out)
        return out


_MISSING = object()


def run_node(node: Any, ctx: RunContext) -> None:
    """Run an operation, or evaluate a tensor for its effects (control inputs, ``group``)."""
    if hasattr(node, "_run"):  # an Operation, or a tensor's op (t.op)
        node._run(ctx)
    elif hasattr(node, "_eval"):
        ctx.value(node, node._home_device())
    else:
        raise InvalidArgumentError(f"expected an operation or a tensor, received {type(node).__name__}")


def run_now(node: Any, session: Any = None, feed_dict: Any = None) -> Any:
    """Run ``node`` outside any session (eager mode, ``op.run()`` without a default session)."""
    from .session import Session, get_default_session
    sess = session or get_default_session()
    if sess is None:
        sess = Session(graph=getattr(node, "graph", None))
    return sess.run(node, feed_dict=feed_dict)


# -- control dependencies --------------------------------------------------------------
_control = threading.local()


@contextlib.contextmanager
def control_dependencies(control_inputs: Any) -> Iterator[None]:
    """Ops and tensors created inside run ``control_inputs`` first. ``None`` clears the outer ones.

    >>> import varstore as tf
    >>> tf.reset_default_graph()
    >>> v = tf.Variable(1.0, name="cd")
    >>> with tf.control_dependencies([v.assign_add(1.0)]):
    ...     after = tf.identity(v)
    >>> with tf.Session() as sess:
    ...     sess.run(v.initializer)
    ...     float(sess.run(after))
    2.0
    """
    stack = getattr(_control, "stack", None)
    if stack is None:
        stack = _control.stack = []
    if control_inputs is None:
        stack.append(None)
    else:
        stack.append([c for c in map(_as_control, control_inputs) if c is not None])
    try:
        yield
    finally:
        stack.pop()


def current_control_inputs() -> tuple:
    """The control inputs a node created now depends on (innermost ``None`` stops the search)."""
    out: list = []
    for entry in reversed(getattr(_control, "stack", None) or ()):
        if entry is None:
            break
        out = entry + out
    return tuple(out)


def _as_control(c: Any) -> Any:
    if isinstance(c, Operation) or hasattr(c, "_eval"):
        return c
    if hasattr(c, "initializer") and hasattr(c, "storage"):  # a Variable's op: nothing to run
        return None
    raise InvalidArgumentError(f"control_dependencies: expected operations or tensors, received {type(c).__name__}")


# -- operations ------------------------------------------------------------------------
def _registry(graph: Graph) -> dict:
    return graph.__dict__.setdefault("_ops_by_name", {})


def register(graph: Graph, name: str, node: Any) -> None:
    """Make ``node`` findable by ``graph.get_operation_by_name(name)``."""
    _registry(graph)[name] = node


def lookup(graph: Graph, name: str) -> Any:
    return _registry(graph).get(name)


def op_name(base: str, name: str | None = None, graph: Graph | None = None) -> str:
    """A unique op name under the current name scope: ``name`` if given, else ``base``."""
    return (graph or get_default_graph()).unique_name(name or base)


class Operation:
    """An op: when run (once per ``Session.run``) it runs its control inputs, then its action.

    ``fn(ctx)`` is the action (None: a no-op or a group). ``sess.run(op)`` returns None.
    """

    def __init__(self, name: str, fn: Callable[[RunContext], Any] | None = None, control_inputs: Any = (),
                 type: str = "NoOp", graph: Graph | None = None, *, exact_name: bool = False):
        self.graph = graph or get_default_graph()
        self.name = name if exact_name else op_name(name, graph=self.graph)
        self.type = type
        self._fn = fn
        self.control_inputs = tuple(control_inputs) + current_control_inputs()
        register(self.graph, self.name, self)

    @property
    def inputs(self) -> tuple:
        return ()

    @property
    def outputs(self) -> list:
        return []

    def _run(self, ctx: RunContext) -> None:
        if id(self) in ctx.ran:
            return
        ctx.ran[id(self)] = self
        for c in self.control_inputs:
            run_node(c, ctx)
        if self._fn is not None:
            self._fn(ctx)

    def run(self, feed_dict: Any = None, session: Any = None) -> None:
        """Run it in ``session`` (default: the default session, else a one-off run)."""
        run_now(self, session, feed_dict)

    def _fetch_value(self, ctx: RunContext) -> None:
        self._run(ctx)
        return None

    def __repr__(self) -> str:
        return f"<varstore.Operation '{self.name}' type={self.type}>"


def group(*inputs: Any, name: str | None = None) -> Operation:
    """One op that runs all of ``inputs`` (ops or tensors).

    >>> import varstore as tf
    >>> tf.reset_default_graph()
    >>> a, b = tf.Variable(1, name="a"), tf.Variable(2, name="b")
    >>> both = tf.group(a.assign(10), b.assign(20))
    >>> with tf.Session() as sess:
    ...     sess.run(tf.global_variables_initializer()); sess.run(both)
    ...     [int(x) for x in sess.run([a, b])]
    [10, 20]
    """
    flat: list = []
    for x in inputs:
        if isinstance(x, (list, tuple)):
            flat.extend(x)
        elif isinstance(x, dict):
            flat.extend(x.values())
        else:
            flat.append(x)
    node = Operation(name or "group_deps", control_inputs=[c for c in map(_as_control, flat) if c is not None])
    if executing_eagerly():
        node.run()
    return node


def no_op(name: str | None = None) -> Operation:
    """An op that does nothing (a target for control dependencies)."""
    return Operation(name or "NoOp")
