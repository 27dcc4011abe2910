"""What travels to a ps task and how: size limits, dtypes sent as they are, and the
operand encoding of a batched optimizer update, encoder and decoder side by side.

No Ray here: the driver's client decides what goes through ``ray.put``, the task's
server runs what :func:`decode_updates` yields. A batch, as :func:`encode_updates`
builds it and the task receives it::

    batch = (var_keys[n], slot_keys[n, slots], sparse[k], ops_a[n], ops_b[n])   # int64 columns
    data  = (arrays, bufs)          # host arrays sent whole; one packed buffer per dtype

Operand codes (``ops_a``; ``ops_b`` is a sparse update's indices, else 0):

- ``~key`` (negative): an array already on the task, by its key;
- ``i`` (``0 <= i < PACKED``): ``arrays[i]``;
- ``PACKED | b << 48 | offset``: a dense gradient of its variable's shape, packed in
  ``bufs[b]`` from element ``offset`` (small gradients: one buffer per dtype instead of
  one object each, ~10 us apiece both ways in Ray).

>>> import numpy as np
>>> g = np.ones(3, np.float32)
>>> batch, data, nbytes = encode_updates([7], [], 0, [g], lambda a: None, np.asarray)
>>> [(var.tolist(), grad.tolist()) for var, _, grad, _ in
...  decode_updates(batch, data, [], {7: np.zeros(3, np.float32)}.__getitem__)]
[([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])]
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ...dtypes import as_dtype

# Data at least this large (per call) goes through ray.put; smaller data rides inside the call.
BY_VALUE_MAX = 256 << 10
# Gradients below this size travel packed (one buffer per dtype, see encode_updates); larger
# ones as arrays of their own. Ray serializes each array of a list as an object of its own,
# ~10 us apiece both ways: for 2000 small gradients that was a third of the step.
PACK_MAX = 64 << 10
# Operand codes in a batch (int64): ~key for an array on the task (negative), i for the i-th
# array sent, PACKED | buffer << 48 | element offset for a packed one.
PACKED = 1 << 62
OFFSET_MASK = (1 << 48) - 1
_BUFFER_MASK = 0x3FFF

_valid_dtypes: dict = {}
_ready_dtypes: set = set()  # dtypes a host array may have as it is (supported, native order)


def valid_dtype(dtype: Any) -> np.dtype:
    """``as_dtype`` (supported dtypes only, native byte order), remembered per dtype: it is on
    the path of every gradient, and numpy's dtype introspection costs microseconds."""
    try:
        return _valid_dtypes[dtype]
    except (KeyError, TypeError):
        pass
    dt = as_dtype(dtype)
    try:
        _valid_dtypes[dtype] = dt
    except TypeError:  # an unhashable spelling
        pass
    if isinstance(dtype, np.dtype) and dtype == dt and dtype.isnative:
        _ready_dtypes.add(dtype)
    return dt


def ready(a: Any) -> bool:
    """True for a host array that can be sent as it is (the common gradient)."""
    return type(a) is np.ndarray and a.dtype in _ready_dtypes and a.flags.c_contiguous


def encode_updates(var_keys: Sequence[int], slot_keys: Sequence[int], n_slots: int, grads: Sequence[Any],
                   local_key: Callable[[Any], int | None],
                   host_of: Callable[[Any], np.ndarray]) -> tuple[tuple, tuple, int]:
    """One batched update as ``(batch, data, nbytes)`` (the module docstring has the layout).

    ``var_keys``: the variables' keys on the task; ``slot_keys``: ``n_slots`` keys per
    variable, flat. ``grads``: one per variable, a host array of the variable's shape
    (dense), an object with ``values``/``indices`` (sparse), or anything ``host_of`` turns
    into a C-contiguous host array of a supported dtype. ``local_key(g)`` is the key of an
    operand already on the task (sent by key), None otherwise. ``nbytes``: the host data's size.
    """
    arrays: list[np.ndarray] = []
    groups: dict = {}  # dtype -> [arrays, elements so far, buffer index]
    sparse, ops_a, ops_b = [], [], []

    def operand(g: Any) -> int:
        key = local_key(g)
        if key is not None:
            return ~key
        arrays.append(host_of(g))
        return len(arrays) - 1

    last_dtype, grp = None, None
    for g in grads:
        if type(g) is np.ndarray and (g.dtype is last_dtype or g.dtype in _ready_dtypes):
            if g.nbytes < PACK_MAX:  # a dense gradient has its variable's shape: only the offset travels
                if g.dtype is not last_dtype:
                    last_dtype = g.dtype
                    grp = groups.get(last_dtype)
                    if grp is None:
                        grp = groups[last_dtype] = [[], 0, len(groups)]
                ops_a.append(PACKED | grp[2] << 48 | grp[1])
                grp[0].append(g)  # concatenated in C order below, whatever its strides
                grp[1] += g.size
            else:
                ops_a.append(len(arrays))
                arrays.append(g if g.flags.c_contiguous else np.ascontiguousarray(g))
            ops_b.append(0)
        elif hasattr(g, "indices") and hasattr(g, "values"):
            sparse.append(len(ops_a))
            ops_a.append(operand(g.values))
            ops_b.append(operand(g.indices))
        else:
            ops_a.append(operand(g))
            ops_b.append(0)
    batch = (np.array(var_keys, np.int64), np.array(slot_keys, np.int64).reshape(len(var_keys), n_slots),
             np.array(sparse, np.int64), np.array(ops_a, np.int64), np.array(ops_b, np.int64))
    data = (arrays, [np.concatenate(grp[0], axis=None) for grp in groups.values()])
    nbytes = sum(a.nbytes for a in arrays) + sum(b.nbytes for b in data[1])
    return batch, data, nbytes


def decode_updates(batch: tuple, data: tuple, slot_names: Sequence[str], lookup: Callable[[int], Any],
                   convert: Callable[[Any], Any] | None = None) -> Iterator[tuple[Any, dict, Any, Any]]:
    """Yield ``(var, slots, grad, indices)`` per variable of an encoded batch, in order:
    ``indices`` is None for a dense update; for a sparse one ``grad`` is its values.

    ``lookup(key)``: an array on the task (KeyError for a key it lost). ``convert``: host
    data to the device's arrays (None: used as handed over, read-only views on a CPU). A
    packed gradient comes out as a view of its buffer with its variable's shape.
    """
    arrays, bufs = data
    var_keys, slot_keys, sparse, ops_a, ops_b = batch
    sparse = set(sparse.tolist())

    def operand(code: int, like: Any) -> Any:
        if code < 0:
            return lookup(~code)
        if code >= PACKED:
            o = code & OFFSET_MASK
            x = bufs[(code >> 48) & _BUFFER_MASK][o:o + like.size].reshape(like.shape)
        else:
            x = arrays[code]
        return x if convert is None else convert(x)

    for n, (var_key, keys, a, b) in enumerate(zip(var_keys.tolist(), slot_keys.tolist(), ops_a.tolist(),
                                                  ops_b.tolist())):
        var = lookup(var_key)
        slots = dict(zip(slot_names, map(lookup, keys)))
        if n in sparse:
            yield var, slots, operand(a, None), operand(b, None)
        elif a >= PACKED and convert is None:  # the common case, inline
            o = a & OFFSET_MASK
            yield var, slots, bufs[(a >> 48) & _BUFFER_MASK][o:o + var.size].reshape(var.shape), None
        else:
            yield var, slots, operand(a, var), None
