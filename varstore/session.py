"""Session: a thin runner for the guide's style of code.

State lives in the variables; a session runs ops and turns fetches into
host values. Closing it frees nothing.

>>> import varstore as tf
>>> v = tf.Variable([1, 2], name="s")
>>> with tf.Session() as sess:
...     sess.run(v.initializer)
...     sess.run({"v": v, "n": 3})
{'v': array([1, 2], dtype=int32), 'n': 3}
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import devices
from devices.errors import InvalidArgumentError

from .graph import Graph, get_default_graph
from .initializers import EvalContext, InitialValue
from .ops import Fetch, Op
from .variables import Variable


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
        """Run ops and fetch values: a Variable gives a host numpy copy, an op gives None,
        arrays and plain values come back as they are; lists, tuples and dicts keep their shape."""
        if self._closed:
            raise RuntimeError("Attempted to use a closed Session.")
        if feed_dict:
            raise InvalidArgumentError("Session.run: feed_dict is not supported (there are no placeholders); "
                                       "assign values to variables instead")
        return self._fetch(fetches)

    def _fetch(self, f: Any) -> Any:
        if isinstance(f, Variable):
            return f.numpy()
        if isinstance(f, (Op, Fetch)):
            return f._fetch(self)
        if isinstance(f, InitialValue):
            return devices.to_host(f.evaluate(devices.get_device(devices.current_device()), EvalContext()))
        if hasattr(f, "_fetch"):  # e.g. a save handle or an optimizer step
            return f._fetch(self)
        if isinstance(f, dict):
            return type(f)((k, self._fetch(v)) for k, v in f.items())
        if isinstance(f, tuple) and hasattr(f, "_fields"):  # namedtuple
            return type(f)(*(self._fetch(v) for v in f))
        if isinstance(f, (list, tuple)):
            return type(f)(self._fetch(v) for v in f)
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
