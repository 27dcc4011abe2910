"""Partitioned variables: one logical variable stored as several Variables ("parts") split
along one axis, each placed on its own device, and TF 1.x's partitioners.

``tf.get_variable(..., partitioner=...)`` makes them (``var_scope.py``). A part is an
ordinary Variable named ``<name>/part_<i>``; it carries a :class:`SaveSliceInfo` that
says where it sits in the full variable, so the Saver writes the parts as one tensor under
the full name (``train/partitioned_save.py``), as TF does.

>>> import varstore as tf
>>> tf.reset_default_graph()
>>> emb = tf.get_variable("emb", [10, 4], partitioner=tf.fixed_size_partitioner(3))
>>> [v.op.name for v in emb], [v.shape.as_list() for v in emb]
(['emb/part_0', 'emb/part_1', 'emb/part_2'], [[4, 4], [3, 4], [3, 4]])
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from devices.dtypes import as_dtype
from devices.errors import InvalidArgumentError
from devices.shapes import TensorShape, as_shape, num_elements

from . import initializers as _init

# Set once a partitioned variable exists in this process: until then the Saver does no
# per-variable work to look for parts (saves of many ordinary variables stay as they were).
_any_parts = False


def any_parts() -> bool:
    """True once any partitioned variable was made in this process."""
    return _any_parts


def _element_size(dtype: Any, bytes_per_string_element: int) -> int:
    if _is_string(dtype):
        return bytes_per_string_element
    return as_dtype(dtype).itemsize


def _is_string(dtype: Any) -> bool:
    return dtype in (str, bytes, "string") or getattr(dtype, "kind", None) in ("U", "S", "O")


def _check_axis(axis: int, shape: Sequence[int]) -> None:
    if not 0 <= axis < len(shape):
        raise InvalidArgumentError(f"Cannot partition variable along axis {axis} when shape is only {tuple(shape)}")


# -- the partitioners ------------------------------------------------------------------------
def fixed_size_partitioner(num_shards: int, axis: int = 0) -> Callable[..., list[int]]:
    """A partitioner that splits ``axis`` into ``num_shards`` parts (fewer if the axis is shorter).

    >>> fixed_size_partitioner(3)(shape=TensorShape((10, 4)), dtype="float32")
    [3, 1]
    >>> fixed_size_partitioner(8, axis=1)(shape=TensorShape((10, 4)), dtype="float32")
    [1, 4]
    """
    if not isinstance(num_shards, int) or isinstance(num_shards, bool) or num_shards < 1:
        raise InvalidArgumentError(f"fixed_size_partitioner: num_shards must be a positive int, received {num_shards!r}")

    def _partitioner(shape: Sequence[int], **unused_args: Any) -> list[int]:
        _check_axis(axis, shape)
        partitions = [1] * len(shape)
        partitions[axis] = min(num_shards, int(shape[axis]))
        return partitions

    return _partitioner


def min_max_variable_partitioner(max_partitions: int = 1, axis: int = 0, min_slice_size: int = 256 << 10,
                                 bytes_per_string_element: int = 16) -> Callable[..., list[int]]:
    """A partitioner giving each part at least ``min_slice_size`` bytes, with at most
    ``max_partitions`` parts (TF 1.x's rule: ``max(1, min(shape[axis], max_partitions,
    ceil(bytes / min_slice_size)))``).

    >>> p = min_max_variable_partitioner(max_partitions=16)
    >>> p(shape=TensorShape((1024, 1024)), dtype="float32")    # 4 MiB / 256 KiB
    [16, 1]
    """
    def _partitioner(shape: Sequence[int], dtype: Any) -> list[int]:
        _check_axis(axis, shape)
        total_size_bytes = num_elements(tuple(shape)) * _element_size(dtype, bytes_per_string_element)
        partitions = total_size_bytes / min_slice_size
        partitions_list = [1] * len(shape)
        # No more parts than the axis has rows, or than max_partitions allows.
        partitions_list[axis] = max(1, min(int(shape[axis]), max_partitions, int(math.ceil(partitions))))
        return partitions_list

    return _partitioner


def variable_axis_size_partitioner(max_shard_bytes: int, axis: int = 0, bytes_per_string_element: int = 16,
                                   max_shards: int | None = None) -> Callable[..., list[int]]:
    """A partitioner keeping each part under ``max_shard_bytes`` where splitting ``axis`` can
    (every row its own part otherwise), at most ``max_shards`` parts.

    >>> p = variable_axis_size_partitioner(max_shard_bytes=100)
    >>> p(shape=TensorShape((100, 10)), dtype="float32")      # 2 rows of 40 bytes per part
    [50, 1]
    """
    if max_shard_bytes < 1 or bytes_per_string_element < 1:
        raise InvalidArgumentError(
            "Both max_shard_bytes and bytes_per_string_element must be positive. "
            f"Currently, max_shard_bytes is {max_shard_bytes} and bytes_per_string_element is "
            f"{bytes_per_string_element}")
    if max_shards and max_shards < 1:
        raise InvalidArgumentError(f"max_shards must be positive, received {max_shards}")

    def _partitioner(shape: Sequence[int], dtype: Any) -> list[int]:
        _check_axis(axis, shape)
        partitions = [1] * len(shape)
        # TF's arithmetic, floats included, so the part counts are the same.
        bytes_per_slice = 1.0 * (num_elements(tuple(shape)) / shape[axis]) * _element_size(
            dtype, bytes_per_string_element)
        slices_per_shard = max(1, math.floor(max_shard_bytes / bytes_per_slice))
        axis_shards = int(math.ceil(1.0 * shape[axis] / slices_per_shard))
        if max_shards:
            axis_shards = min(max_shards, axis_shards)
        partitions[axis] = axis_shards
        return partitions

    return _partitioner


def call_partitioner(partitioner: Callable[..., Any], shape: tuple[int, ...], dtype: Any) -> list[int]:
    """Run ``partitioner`` on the full shape and check its answer as TF does: one entry per
    axis, each at least 1, at most one above 1."""
    if len(shape) < 1:
        raise InvalidArgumentError(f"A partitioned Variable must have rank at least 1, shape: {shape}")
    slicing = partitioner(shape=TensorShape(shape), dtype=as_dtype(dtype))
    if not isinstance(slicing, Sequence) or isinstance(slicing, str):
        raise InvalidArgumentError(f"Partitioner must return a sequence, but saw: {slicing!r}")
    slicing = [int(p) for p in slicing]
    if len(slicing) != len(shape):
        raise InvalidArgumentError(f"Partitioner returned a partition list that does not match the "
                                   f"Variable's rank: {slicing} vs. {shape}")
    if any(p < 1 for p in slicing):
        raise InvalidArgumentError(f"Partitioner returned zero partitions for some axes: {slicing}")
    if sum(p > 1 for p in slicing) > 1:
        raise InvalidArgumentError(f"Can only slice a variable along one dimension: shape: {shape}, "
                                   f"partitioning: {slicing}")
    return slicing


def slice_dim_and_count(partitions: Sequence[int]) -> tuple[int, int]:
    """(axis, number of parts) of a partition list; (0, 1) when nothing is split."""
    for dim, n in enumerate(partitions):
        if n > 1:
            return dim, n
    return 0, 1


def iter_slices(full_shape: Sequence[int], num_slices: int, slice_dim: int) -> Iterator[tuple[list[int], list[int]]]:
    """(offset, shape) of each part: the first ``full % n`` parts get one extra row (TF's rule).

    >>> list(iter_slices([10, 4], 3, 0))
    [([0, 0], [4, 4]), ([4, 0], [3, 4]), ([7, 0], [3, 4])]
    """
    excess = full_shape[slice_dim] % num_slices
    offset = [0] * len(full_shape)
    min_len = full_shape[slice_dim] // num_slices
    for i in range(num_slices):
        shape = list(full_shape)
        shape[slice_dim] = min_len + (i < excess)
        yield offset[:], shape
        offset[slice_dim] += shape[slice_dim]


class _Slice(_init.InitialValue):
    """One part of a deferred full value (get_variable with a value initializer and a partitioner)."""

    def __init__(self, full: _init.InitialValue, offset: Sequence[int], shape: Sequence[int]):
        self.full, self.dtype, self.shape = full, full.dtype, tuple(shape)
        self.index = tuple(slice(o, o + n) for o, n in zip(offset, shape))

    def _eval(self, device: Any, ctx: Any) -> Any:
        # The full value is computed once per run and every part takes its slice of that one
        # value (as TF's parts slice one initializer tensor): a random one is drawn once.
        cache = getattr(ctx, "_partitioned_full_values", None)
        if cache is None:
            cache = {}
            ctx._partitioned_full_values = cache
        hit = cache.get(id(self.full))
        if hit is None:
            hit = cache[id(self.full)] = (self.full.evaluate(device, ctx), device)
        full, home = hit
        piece = full[self.index]
        if home is not device:  # a part on another device: through the host
            import devices
            piece = device.asarray(devices.to_host(piece))
        out = device.empty(self.shape, self.dtype)
        out[...] = piece
        return out

    def dependencies(self) -> list:
        return self.full.dependencies()

    def variables(self) -> list:
        return self.full.variables()


def slice_value(value: _init.InitialValue, offset: Sequence[int], shape: Sequence[int]) -> _init.InitialValue:
    """The part at ``offset`` of shape ``shape`` of a full initial value (a constant is sliced now)."""
    if isinstance(value, _init.Constant):
        index = tuple(slice(o, o + n) for o, n in zip(offset, shape))
        return _init.Constant(value.array[index].copy(), value.dtype)
    return _Slice(value, offset, shape)


class PartitionInfo:
    """What an initializer is told about the part it fills: the full shape and the part's
    offset in it (TF's ``_PartitionInfo``: variance scaling takes its fans from the full shape)."""

    def __init__(self, full_shape: Sequence[int], var_offset: Sequence[int]):
        self.full_shape, self.var_offset = list(full_shape), list(var_offset)

    def single_offset(self, shape: Sequence[int]) -> int:
        dim = self.single_slice_dim(shape)
        return 0 if dim is None else self.var_offset[dim]

    def single_slice_dim(self, shape: Sequence[int]) -> int | None:
        """The one axis along which the part is smaller than the full variable (None: none)."""
        dims = [i for i, (s, f) in enumerate(zip(shape, self.full_shape)) if s != f]
        if len(dims) > 1:
            raise InvalidArgumentError(f"Cannot use single_slice_dim() with shape {list(shape)} of full shape "
                                       f"{self.full_shape}: it differs along more than one axis")
        return dims[0] if dims else None


class SaveSliceInfo:
    """Where a part sits in its full variable (``part._save_slice_info``, as in TF)."""

    def __init__(self, full_name: str, full_shape: Sequence[int], var_offset: Sequence[int],
                 var_shape: Sequence[int]):
        self.full_name = full_name
        self.full_shape, self.var_offset, self.var_shape = list(full_shape), list(var_offset), list(var_shape)

    @property
    def spec(self) -> str:
        """TF's slice spec string: ``"10 4 0,4:0,4"`` (full shape, then offset,length per axis)."""
        full = " ".join(str(d) for d in self.full_shape)
        sl = ":".join(f"{o},{n}" for o, n in zip(self.var_offset, self.var_shape))
        return f"{full} {sl}"


class PartitionedVariable:
    """One variable stored as parts split along one axis (what ``get_variable`` returns with a
    partitioner). Iterating gives the parts (Variables named ``<name>/part_<i>``), in order.

    >>> import varstore as tf
    >>> tf.reset_default_graph()
    >>> w = tf.get_variable("w", [6, 2], partitioner=tf.fixed_size_partitioner(2))
    >>> w.name, w.shape.as_list(), len(w), w.get_partitions()
    ('w', [6, 2], 2, [2, 1])
    """

    def __init__(self, name: str, shape: Sequence[int], dtype: Any, variable_list: list, partitions: Sequence[int]):
        global _any_parts
        if not variable_list:
            raise InvalidArgumentError(f"PartitionedVariable {name}: expected at least one part, received none")
        self._name, self._shape, self._dtype = name, as_shape(shape), as_dtype(dtype)
        self._variable_list = list(variable_list)
        self._partitions = [int(p) for p in partitions]
        self._axis, _ = slice_dim_and_count(self._partitions)
        _any_parts = True

    @property
    def name(self) -> str:
        """The full variable's name (no ``:0``): its checkpoint key."""
        return self._name

    @property
    def shape(self) -> TensorShape:
        """The full shape (all parts together)."""
        return TensorShape(self._shape)

    def get_shape(self) -> TensorShape:
        return TensorShape(self._shape)

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def graph(self) -> Any:
        return self._variable_list[0].graph

    @property
    def axis(self) -> int:
        """The axis along which the parts are split."""
        return self._axis

    def __iter__(self) -> Iterator[Any]:
        return iter(self._variable_list)

    def __len__(self) -> int:
        num_partition_axes = sum(p > 1 for p in self._partitions)
        if num_partition_axes > 1:  # never built so; kept as TF's check
            raise InvalidArgumentError(f"Cannot get a length for {num_partition_axes} > 1 partition axes")
        return len(self._variable_list)

    def get_variable_list(self) -> list:
        """The parts, in order (a new list)."""
        return list(self._variable_list)

    _get_variable_list = get_variable_list  # TF's spelling

    def get_partitions(self) -> list[int]:
        """Parts per axis, e.g. ``[3, 1]`` for 3 parts along axis 0."""
        return list(self._partitions)

    _get_partitions = get_partitions  # TF's spelling

    @property
    def initializer(self) -> Any:
        """An op that initializes every part."""
        from .variables import variables_initializer
        return variables_initializer(self._variable_list, name=f"{self._name}/init")

    def as_tensor(self) -> Any:
        """The full value as a tensor: the parts joined along the split axis (``sess.run`` it).

        >>> import varstore as tf
        >>> tf.reset_default_graph()
        >>> w = tf.get_variable("w", [5, 2], partitioner=tf.fixed_size_partitioner(2))
        >>> with tf.Session() as sess:
        ...     sess.run(tf.global_variables_initializer())
        ...     sess.run(w.as_tensor()).shape
        (5, 2)
        """
        from .tensors import concat  # the graph's tensor ops, imported when first used
        return concat(self._variable_list, self._axis, name=f"{self._name}/ConcatPartitions/concat")

    def numpy(self) -> np.ndarray:
        """The full value on the host: the parts' values joined along the split axis."""
        return np.concatenate([np.asarray(v.numpy()) for v in self._variable_list], axis=self._axis)

    def eval(self, session: Any = None) -> np.ndarray:
        return self.numpy()

    def _fetch(self, session: Any) -> np.ndarray:  # sess.run(pv): the full value, as TF's as_tensor()
        return self.numpy()

    def __repr__(self) -> str:
        return (f"<varstore.PartitionedVariable '{self._name}' shape={self._shape} dtype={self._dtype.name} "
                f"parts={len(self._variable_list)}>")
