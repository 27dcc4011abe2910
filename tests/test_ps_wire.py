"""The ps tier's wire format and operation registry, without Ray.

``encode_updates`` (the driver) and ``decode_updates`` (the task) are a pair: whatever
the driver encodes, the task decodes to the same arrays, whatever the dtypes, shapes,
dense or sparse updates, packed, large or by-key operands. The registry holds what a
task runs, filled by varstore at import; devices itself never imports varstore.
"""
from __future__ import annotations

import subprocess
import sys
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.backends.ps import wire
from devices.backends.ps.operations import Operations, register_operations, registered
from devices.dtypes import bfloat16
from devices.errors import FailedPreconditionError, InvalidArgumentError

DTYPES = [np.dtype(n) for n in ("bool", "int8", "uint16", "int32", "int64", "float16", "float32", "float64",
                                "complex64")] + [bfloat16]
for _dt in DTYPES:
    wire.valid_dtype(_dt)  # seen by the driver: host arrays of these dtypes are sent as they are (packed)


class OnTask:
    """Stands in for a RemoteArray: an operand that already lives on the task, by key."""

    def __init__(self, key: int, array: np.ndarray):
        self.key, self.array = key, array


class Sparse:
    def __init__(self, values, indices):
        self.values, self.indices = values, indices


def host_of(x) -> np.ndarray:
    """What PsDevice._host_of does: a C-contiguous host array of a supported native dtype."""
    want = wire.valid_dtype(x.dtype)
    if x.dtype != want or not x.flags.c_contiguous:
        out = np.empty(x.shape, want)
        np.copyto(out, x, casting="unsafe")
        return out
    return x


def local_key(x):
    return x.key if isinstance(x, OnTask) else None


def values_of(rng, shape, dtype) -> np.ndarray:
    raw = rng.integers(0, 256, size=int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, dtype=np.uint8)
    a = raw.view(dtype).reshape(shape)
    return a.astype(bool).astype(dtype) if dtype == np.bool_ else a


def same(a, b) -> bool:
    if isinstance(b, OnTask):
        return a is b.array  # the task's own array, never a copy
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


shapes = st.lists(st.integers(0, 5), min_size=0, max_size=3).map(tuple)
operand_kinds = st.sampled_from(["host", "strided", "swapped", "by_key"])
dense = st.tuples(st.just("dense"), st.sampled_from(DTYPES), shapes, operand_kinds)
sparse = st.tuples(st.just("sparse"), st.sampled_from(DTYPES), shapes, operand_kinds, operand_kinds,
                   st.integers(0, 4))
items = st.lists(st.one_of(dense, sparse), min_size=0, max_size=8)


def _operand(rng, kind, shape, dtype, store, keys):
    """(what the driver passes, what the task must see) for one operand."""
    if kind == "by_key":
        key = next(keys)
        store[key] = values_of(rng, shape, dtype)
        on_task = OnTask(key, store[key])
        return on_task, on_task
    a = values_of(rng, shape, dtype)
    if kind == "strided" and a.ndim and a.size > 1:
        a = np.repeat(a, 2, axis=-1)[..., ::2]  # same values, not C-contiguous
        assert not a.flags.c_contiguous
    elif kind == "swapped" and dtype.itemsize > 1 and dtype != bfloat16 and dtype.kind != "b":
        a = a.astype(dtype.newbyteorder())  # a supported dtype in the other byte order: converted
    return a, host_of(a)


@settings(max_examples=150, deadline=None)
@given(items=items, n_slots=st.integers(0, 2), pack_max=st.sampled_from([0, 16, wire.PACK_MAX]),
       seed=st.integers(0, 2**32 - 1), on_gpu=st.booleans())
def test_what_the_driver_encodes_the_task_decodes(items, n_slots, pack_max, seed, on_gpu):
    rng = np.random.default_rng(seed)
    keys = iter(range(1000, 10**6))
    store: dict[int, np.ndarray] = {}
    var_keys, slot_keys, grads, expected = [], [], [], []
    for item in items:
        kind, dtype, shape = item[:3]
        var_key = next(keys)
        store[var_key] = values_of(rng, shape, dtype)
        var_keys.append(var_key)
        slots = []
        for _ in range(n_slots):
            k = next(keys)
            store[k] = values_of(rng, shape, dtype)
            slots.append(k)
        slot_keys += slots
        if kind == "dense":
            g, want = _operand(rng, item[3], shape, dtype, store, keys)
            grads.append(g)
            expected.append((var_key, slots, want, None))
        else:
            rows = item[5]
            vshape = (rows,) + shape[1:]
            values, want_values = _operand(rng, item[3], vshape, dtype, store, keys)
            indices, want_indices = _operand(rng, item[4], (rows,), np.dtype(np.int64), store, keys)
            grads.append(Sparse(values, indices))
            expected.append((var_key, slots, want_values, want_indices))
    names = [f"slot{i}" for i in range(n_slots)]
    with mock.patch.object(wire, "PACK_MAX", pack_max):
        batch, data, nbytes = wire.encode_updates(var_keys, slot_keys, n_slots, grads, local_key, host_of)
    assert all(col.dtype == np.int64 for col in batch)
    assert nbytes == sum(a.nbytes for a in data[0]) + sum(b.nbytes for b in data[1])
    copies = []

    def convert(x):  # what a GPU does with host data: copy it in
        copies.append(x)
        return np.array(x)

    got = list(wire.decode_updates(batch, data, names, store.__getitem__, convert if on_gpu else None))
    assert len(got) == len(expected)
    for (var, slots, grad, indices), (var_key, slot_ks, want, want_indices) in zip(got, expected):
        assert var is store[var_key]
        assert list(slots) == names and all(slots[n] is store[k] for n, k in zip(names, slot_ks))
        assert same(grad, want)
        if want_indices is None:
            assert indices is None
        else:
            assert same(indices, want_indices)
    if not on_gpu:
        assert not copies  # on a CPU host data is used as handed over


def test_small_ready_gradients_travel_packed_one_buffer_per_dtype():
    grads = [np.ones(3, np.float32), np.full((2, 2), 2, np.float64), np.arange(4, dtype=np.float32)]
    for g in grads:
        wire.valid_dtype(g.dtype)  # the driver has seen these dtypes: they are sent as they are
    store = {i: np.zeros_like(g) for i, g in enumerate(grads)}
    batch, (arrays, bufs), nbytes = wire.encode_updates(list(store), [], 0, grads, local_key, host_of)
    ops_a = batch[3].tolist()
    assert all(code >= wire.PACKED for code in ops_a) and arrays == []
    assert [b.dtype for b in bufs] == [np.float32, np.float64] and [b.size for b in bufs] == [7, 4]
    assert nbytes == 7 * 4 + 4 * 8
    out = [g.tolist() for _, _, g, _ in wire.decode_updates(batch, (arrays, bufs), [], store.__getitem__)]
    assert out == [g.tolist() for g in grads]


def test_a_large_gradient_travels_as_itself():
    g = np.ones(wire.PACK_MAX // 4, np.float32)
    wire.valid_dtype(g.dtype)
    batch, (arrays, bufs), _ = wire.encode_updates([5], [], 0, [g], local_key, host_of)
    assert batch[3].tolist() == [0] and arrays[0] is g and bufs == []


def test_a_key_the_task_lost_raises_key_error_naming_it():
    batch, data, _ = wire.encode_updates([5], [], 0, [OnTask(9, np.zeros(2))], local_key, host_of)
    with pytest.raises(KeyError) as info:
        list(wire.decode_updates(batch, data, [], {5: np.zeros(2)}.__getitem__))
    assert info.value.args[0] == 9


# -- the registry --------------------------------------------------------------------------

@pytest.fixture
def saved_operations():
    saved = registered()
    yield
    register_operations(**saved._asdict())


def test_varstore_registers_its_operations_by_reference():
    import varstore.initializers as init
    from varstore.train import kernels
    ops = registered("apply_dense", "apply_sparse", "build_initial", "new_context")
    assert ops == Operations(kernels.apply_dense, kernels.apply_sparse, init.from_description, init.RunContext)
    import pickle
    assert pickle.loads(pickle.dumps(ops)) == ops  # module-level: a task gets them by name


def test_a_missing_operation_is_a_failed_precondition(saved_operations):
    register_operations(apply_sparse=None)
    with pytest.raises(FailedPreconditionError, match="apply_sparse"):
        registered("apply_dense", "apply_sparse")
    assert registered("apply_dense").apply_dense is not None


def test_register_operations_refuses_unknown_names_and_non_callables(saved_operations):
    with pytest.raises(InvalidArgumentError, match="unknown"):
        register_operations(apply=len)
    with pytest.raises(InvalidArgumentError, match="callable"):
        register_operations(apply_dense=3)


def test_the_ps_backend_imports_neither_ray_nor_varstore():
    code = ("import sys, devices.backends.ps, devices.cluster; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'varstore')); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
