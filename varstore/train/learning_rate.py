"""Learning-rate schedules of the global step (TF 1.x's ``tf.train.*_decay``), and ``global_step``.

Each schedule is a tensor: an optimizer given one reads its value in every
step's run, so the rate follows the step counter as the train op advances it.

>>> import varstore as tf
>>> tf.reset_default_graph()
>>> step = tf.Variable(0, trainable=False, name="global_step")
>>> lr = tf.train.exponential_decay(1.0, step, decay_steps=2, decay_rate=0.5, staircase=True)
>>> with tf.Session() as sess:
...     sess.run(step.initializer); _ = sess.run(step.assign(4))
...     float(sess.run(lr))
0.25
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import devices

from ..ops import RunContext
from ..tensors import Tensor, convert_to_tensor


class _Schedule(Tensor):
    """A float32 scalar computed on the host from the global step's value in the run."""

    _base_name = "learning_rate"

    def __init__(self, global_step: Any, fn: Callable[[float], float], name: str | None):
        if global_step is None:
            raise ValueError("global_step is required for a learning-rate schedule")
        self._step = convert_to_tensor(global_step)
        self._fn = fn
        self.shape, self.dtype = (), np.dtype(np.float32)
        self._setup(self._base_name, name)

    def _eval(self, device: Any, ctx: RunContext) -> Any:
        step = float(devices.to_host(ctx.value(self._step, self._step._home_device())))
        return device.asarray(np.asarray(self._fn(step), np.float32))

    def _home_device(self) -> Any:
        return devices.get_device("/cpu:0")

    def variables(self) -> list:
        return self._step.variables()


def _of_progress(global_step: Any, decay_steps: float, staircase: bool, rule: Callable[[float], float],
                 name: str) -> Tensor:
    """A schedule of ``p = global_step / decay_steps`` (floored with ``staircase``)."""
    steps = float(decay_steps)

    def f(step: float) -> float:
        p = step / steps
        return rule(math.floor(p) if staircase else p)
    return _Schedule(global_step, f, name)


def exponential_decay(learning_rate: float, global_step: Any, decay_steps: float, decay_rate: float,
                      staircase: bool = False, name: str | None = None) -> Tensor:
    """``learning_rate * decay_rate ** (global_step / decay_steps)`` (the exponent floored with ``staircase``)."""
    lr, rate = float(learning_rate), float(decay_rate)
    return _of_progress(global_step, decay_steps, staircase, lambda p: lr * rate ** p, name or "ExponentialDecay")


def inverse_time_decay(learning_rate: float, global_step: Any, decay_steps: float, decay_rate: float,
                       staircase: bool = False, name: str | None = None) -> Tensor:
    """``learning_rate / (1 + decay_rate * global_step / decay_steps)``."""
    lr, rate = float(learning_rate), float(decay_rate)
    return _of_progress(global_step, decay_steps, staircase, lambda p: lr / (1.0 + rate * p),
                        name or "InverseTimeDecay")


def natural_exp_decay(learning_rate: float, global_step: Any, decay_steps: float, decay_rate: float,
                      staircase: bool = False, name: str | None = None) -> Tensor:
    """``learning_rate * exp(-decay_rate * global_step / decay_steps)``."""
    lr, rate = float(learning_rate), float(decay_rate)
    return _of_progress(global_step, decay_steps, staircase, lambda p: lr * math.exp(-rate * p),
                        name or "NaturalExpDecay")


def polynomial_decay(learning_rate: float, global_step: Any, decay_steps: float, end_learning_rate: float = 0.0001,
                     power: float = 1.0, cycle: bool = False, name: str | None = None) -> Tensor:
    """From ``learning_rate`` to ``end_learning_rate`` over ``decay_steps`` (restarting with ``cycle``)."""
    lr, steps, end, pw = float(learning_rate), float(decay_steps), float(end_learning_rate), float(power)

    def f(step: float) -> float:
        span = steps
        if cycle:
            span = steps * max(1.0, math.ceil(step / steps))
        else:
            step = min(step, steps)
        return (lr - end) * (1.0 - step / span) ** pw + end
    return _Schedule(global_step, f, name or "PolynomialDecay")


def cosine_decay(learning_rate: float, global_step: Any, decay_steps: float, alpha: float = 0.0,
                 name: str | None = None) -> Tensor:
    """Cosine from ``learning_rate`` down to ``alpha * learning_rate`` over ``decay_steps``."""
    lr, steps, a = float(learning_rate), float(decay_steps), float(alpha)

    def f(step: float) -> float:
        done = min(step, steps) / steps
        return lr * ((1.0 - a) * 0.5 * (1.0 + math.cos(math.pi * done)) + a)
    return _Schedule(global_step, f, name or "CosineDecay")


def piecewise_constant(x: Any, boundaries: Sequence[float], values: Sequence[float],
                       name: str | None = None) -> Tensor:
    """``values[i]`` while ``x`` is in ``(boundaries[i-1], boundaries[i]]``.

    >>> import varstore as tf
    >>> tf.reset_default_graph(); s = tf.Variable(5, name="s")
    >>> with tf.Session() as sess:
    ...     sess.run(s.initializer)
    ...     float(sess.run(tf.train.piecewise_constant(s, [3, 6], [1.0, 0.5, 0.1])))
    0.5
    """
    if len(values) != len(boundaries) + 1:
        raise ValueError(f"The length of boundaries should be 1 less than the length of values: "
                         f"received {len(boundaries)} boundaries and {len(values)} values")
    bounds, vals = [float(b) for b in boundaries], [float(v) for v in values]

    def f(step: float) -> float:
        for b, v in zip(bounds, vals):
            if step <= b:
                return v
        return vals[-1]
    return _Schedule(x, f, name or "PiecewiseConstant")


def global_step(sess: Any, global_step_tensor: Any) -> int:
    """The global step's value as a Python int: ``tf.train.global_step(sess, gs)``."""
    return int(sess.run(global_step_tensor))
