"""Session: a thin runner for the guide's style of code.

State lives in the variables; a session runs ops and turns fetches into
host values. Closing it frees nothing.

>>> import varstore as tf
>>> tf.reset_default_graph()
>>> v = tf.Variable([1, 2], name="s")
>>> x = tf.placeholder(tf.int32, [2])
>>> with tf.Session() as sess:
...     sess.run(v.initializer)
...     sess.run({"v": v, "sum": v + x, "n": 3}, feed_dict={x: [10, 20]})
{'v': array([1, 2], dtype=int32), 'sum': array([11, 22], dtype=int32), 'n': 3}
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import devices
from devices.errors import InvalidArgumentError

from .graph import Graph, get_default_graph
from .ops import Operation, RunContext
from .tensors import Tensor, check_feed_shape
from .variables import Variable


def _scalar(a: Any) -> Any:
    """A 0-d array as a numpy scalar, as TF's ``sess.run`` gives it."""
    return a[()] if isinstance(a, np.ndarray) and a.ndim == 0 else a


@dataclass
class GPUOptions:
    allow_growth: bool = False
    per_process_gpu_memory_fraction: float = 1.0
    visible_device_list: str = ""


@dataclass
class ConfigProto:
    """TF's session config. ``allow_soft_placement`` sets the process-wide placement mode
    (placement happens when variables are created); ``log_device_placement`` prints each
    variable's device when it is initialized."""

    allow_soft_placement: bool | None = None
    log_device_placement: bool = False
    gpu_options: GPUOptions = field(default_factory=GPUOptions)
    device_count: dict = field(default_factory=dict)
    intra_op_parallelism_threads: int = 0
    inter_op_parallelism_threads: int = 0


_tls = threading.local()


class Session:
    """``with tf.Session() as sess: sess.run(init_op)``"""

    def __init__(self, target: str = "", graph: Graph | None = None, config: ConfigProto | None = None):
        self.graph = graph or get_default_graph()
        self.config = config or ConfigProto()
        self._log_device_placement = bool(self.config.log_device_placement)
        if self.config.allow_soft_placement is not None:
            devices.set_soft_placement(self.config.allow_soft_placement)
        self._closed = False

    def run(self, fetches: Any, feed_dict: Any = None, options: Any = None, run_metadata: Any = None) -> Any:
        """Run ops and fetch values, in one run: each op applies once, each tensor is computed
        once, ``feed_dict`` replaces tensors (placeholders) by values.

        A Variable or tensor gives a host numpy copy (a 0-d value as a numpy scalar, as TF),
        an op gives None; lists, tuples, namedtuples and dicts keep their shape.
        """
        if self._closed:
            raise RuntimeError("Attempted to use a closed Session.")
        ctx = RunContext(feeds=self._feeds(feed_dict), session=self)
        return self._fetch(fetches, ctx)

    def _feeds(self, feed_dict: Any) -> dict:
        if not feed_dict:
            return {}
        out = {}
        for key, value in dict(feed_dict).items():
            t = self.graph.get_tensor_by_name(key) if isinstance(key, str) else key
            if isinstance(t, Variable):
                raise InvalidArgumentError(f"Session.run: cannot feed the variable {t.name}; feed a placeholder "
                                           f"or assign the variable instead")
            if not isinstance(t, Tensor):
                raise TypeError(f"The key of feed_dict must be a tensor or its name, received {type(key).__name__}")
            shape = getattr(value, "shape", None)
            check_feed_shape(t, tuple(shape) if shape is not None else np.shape(value))
            out[id(t)] = value
        return out

    def _fetch(self, f: Any, ctx: RunContext) -> Any:
        if f is None:
            raise TypeError("Fetch argument None has invalid type <class 'NoneType'>")
        # A tensor's graph is known when it was named in one (an unnamed intermediate has none).
        g = f.__dict__.get("graph") if isinstance(f, (Variable, Tensor, Operation)) else None
        if g is not None and g is not self.graph:
            raise ValueError(f"Fetch {getattr(f, 'name', f)!r} is not an element of this session's graph")
        if isinstance(f, Variable):
            return _scalar(f.numpy())
        if isinstance(f, Tensor):
            value = ctx.value(f, f._home_device())
            host = devices.to_host(value) if not isinstance(value, np.ndarray) else value
            if host is value and ctx.shared(value):
                host = host.copy()
            return _scalar(host)
        if hasattr(f, "_fetch_value"):  # an Operation: run it, fetch None
            return f._fetch_value(ctx)
        if isinstance(f, str):
            try:
                node = self.graph.get_tensor_by_name(f) if ":" in f else self.graph.get_operation_by_name(f)
            except KeyError as e:
                raise ValueError(f"Fetch argument {f!r} cannot be interpreted as a Tensor. ({e.args[0]})") from None
            return self._fetch(node, ctx)
        if hasattr(f, "_fetch"):  # e.g. a save handle
            return f._fetch(self)
        if isinstance(f, dict):
            return type(f)((k, self._fetch(v, ctx)) for k, v in f.items())
        if isinstance(f, tuple) and hasattr(f, "_fields"):  # namedtuple
            return type(f)(*(self._fetch(v, ctx) for v in f))
        if isinstance(f, (list, tuple)):
            return type(f)(self._fetch(v, ctx) for v in f)
        if hasattr(f, "__cuda_array_interface__"):
            return devices.to_host(f)
        return f

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> Session:
        stack = getattr(_tls, "stack", None) or []
        stack.append(self)
        _tls.stack = stack
        return self

    def __exit__(self, *exc) -> None:
        _tls.stack.remove(self)
        self.close()

    def as_default(self) -> Session:
        return self


class InteractiveSession(Session):
    pass


def get_default_session() -> Session | None:
    stack = getattr(_tls, "stack", None)
    return stack[-1] if stack else None
