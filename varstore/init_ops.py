"""TF 1.x's initializer objects (``tf.zeros_initializer()``, ``tf.glorot_uniform_initializer()``...):
called with a shape (and dtype), each makes a deferred initial value (``initializers.py``).

>>> import varstore as tf
>>> tf.zeros_initializer()([2, 3]).shape.as_list()
[2, 3]
"""
from __future__ import annotations

import math
from typing import Any

from devices.dtypes import as_dtype
from devices.errors import InvalidArgumentError
from devices.shapes import as_shape, num_elements

from .initializers import Constant, Fill, InitialValue, RandomNormal, RandomUniform


class Initializer:
    """Called with a shape (and dtype) to make a deferred value: ``zeros_initializer()([3])``."""

    dtype: Any = "float32"

    def __call__(self, shape, dtype=None, partition_info=None) -> InitialValue:
        return self._make(as_shape(shape), as_dtype(dtype or self.dtype))

    def _make(self, shape, dtype):
        raise NotImplementedError


class zeros_initializer(Initializer):
    def __init__(self, dtype="float32"):
        self.dtype = dtype

    def _make(self, shape, dtype):
        return Fill(shape, 0, dtype)


class ones_initializer(zeros_initializer):
    def _make(self, shape, dtype):
        return Fill(shape, 1, dtype)


class constant_initializer(Initializer):
    def __init__(self, value=0, dtype="float32"):
        self.value, self.dtype = value, dtype

    def _make(self, shape, dtype):
        return Constant(self.value, dtype, shape)


class random_normal_initializer(Initializer):
    def __init__(self, mean=0.0, stddev=1.0, seed=None, dtype="float32"):
        self.mean, self.stddev, self.seed, self.dtype = mean, stddev, seed, dtype

    def _make(self, shape, dtype):
        return RandomNormal(shape, self.mean, self.stddev, dtype, self.seed)


class truncated_normal_initializer(random_normal_initializer):
    def _make(self, shape, dtype):
        return RandomNormal(shape, self.mean, self.stddev, dtype, self.seed, truncated=True)


class random_uniform_initializer(Initializer):
    def __init__(self, minval=0, maxval=None, seed=None, dtype="float32"):
        self.minval, self.maxval, self.seed, self.dtype = minval, maxval, seed, dtype

    def _make(self, shape, dtype):
        return RandomUniform(shape, self.minval, self.maxval, dtype, self.seed)


def _fans(shape):
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = num_elements(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


class variance_scaling_initializer(Initializer):
    """TF 1.x's variance scaling: stddev = sqrt(scale / n), n from mode (fan_in, fan_out, fan_avg)."""

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None, dtype="float32"):
        if scale <= 0:
            raise InvalidArgumentError(f"variance_scaling: scale must be positive, received {scale}")
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise InvalidArgumentError(f"variance_scaling: mode must be fan_in, fan_out or fan_avg, received {mode!r}")
        if distribution == "normal":  # TF 1.x's "normal" is the truncated one
            distribution = "truncated_normal"
        if distribution not in ("truncated_normal", "untruncated_normal", "uniform"):
            raise InvalidArgumentError(f"variance_scaling: unknown distribution {distribution!r}")
        self.scale, self.mode, self.distribution, self.seed, self.dtype = scale, mode, distribution, seed, dtype

    def __call__(self, shape, dtype=None, partition_info=None) -> InitialValue:
        # A part of a partitioned variable takes its fans from the full shape, as in TF.
        shape = as_shape(shape)
        scale_shape = shape if partition_info is None else as_shape(partition_info.full_shape)
        return self._draw(shape, as_dtype(dtype or self.dtype), scale_shape)

    def _make(self, shape, dtype):
        return self._draw(shape, dtype, shape)

    def _draw(self, shape, dtype, scale_shape):
        fan_in, fan_out = _fans(scale_shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        s = self.scale / max(1.0, n)
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * s)
            return RandomUniform(shape, -limit, limit, dtype, self.seed)
        if self.distribution == "truncated_normal":
            # 0.879... is the stddev of a unit normal truncated at 2: undo the shrinkage.
            return RandomNormal(shape, 0.0, math.sqrt(s) / 0.87962566103423978, dtype, self.seed, truncated=True)
        return RandomNormal(shape, 0.0, math.sqrt(s), dtype, self.seed)


def glorot_uniform_initializer(seed=None, dtype="float32") -> variance_scaling_initializer:
    """Xavier uniform: variance_scaling(1.0, "fan_avg", "uniform")."""
    return variance_scaling_initializer(1.0, "fan_avg", "uniform", seed, dtype)


def glorot_normal_initializer(seed=None, dtype="float32") -> variance_scaling_initializer:
    """Xavier normal: variance_scaling(1.0, "fan_avg", "truncated_normal")."""
    return variance_scaling_initializer(1.0, "fan_avg", "truncated_normal", seed, dtype)


def he_normal(seed=None) -> variance_scaling_initializer:
    return variance_scaling_initializer(2.0, "fan_in", "truncated_normal", seed)


def he_uniform(seed=None) -> variance_scaling_initializer:
    return variance_scaling_initializer(2.0, "fan_in", "uniform", seed)
