"""Saving and restoring many small variables in runs (TensorRun, CheckpointReader.read_many):
the same guarantees as one variable at a time. Speed is benchmarks/many_variables.py's."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import varstore as tf
from devices.errors import InvalidArgumentError
from varstore.checkpoint import CheckpointReader, write_checkpoint
from varstore.checkpoint import reader as reader_mod

N = 1300  # more than one vectored read (reader.RUN_TENSORS) and a few hundred each side of it


@pytest.fixture(autouse=True)
def fresh_graph():
    tf.reset_default_graph()
    yield
    tf.reset_default_graph()


def values(n: int, seed: int = 0) -> list:
    """Small arrays of mixed dtypes and shapes, 0-d and empty ones among them."""
    rng = np.random.default_rng(seed)
    kinds = [("float32", (16,)), ("int64", (3,)), ("bool", (2, 2)), (ml_dtypes.bfloat16, (5,)),
             ("float64", ()), ("float32", (0, 3)), ("uint8", (7,)), ("float16", (4, 1))]
    out = []
    for i in range(n):
        dtype, shape = kinds[i % len(kinds)]
        out.append((rng.standard_normal(shape) * 100).astype(dtype))
    return out


def model(n: int, seed: int = 0) -> list:
    vs = [tf.Variable(a, name=f"block{i // 100}/v{i}") for i, a in enumerate(values(n, seed))]
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
    return vs


def current(vs) -> list:
    return [v.storage.array for v in vs]


def test_restore_in_runs_into_existing_and_new_buffers(tmp_path):
    vs = model(N)
    saver = tf.train.Saver()
    path = saver.save(None, str(tmp_path / "m.ckpt"), write_meta_graph=False)
    want = [a.copy() for a in current(vs)]
    buffers = current(vs)
    for v, a in zip(vs, values(N, seed=1)):
        v.storage.array[...] = a  # change every value in place
    vs[5].storage.forget()  # uninitialized: restored into a new array
    vs[904].storage.adopt(np.repeat(want[904], 2)[::2])  # strided: restored one at a time
    saver.restore(None, path)
    for i, (v, a) in enumerate(zip(vs, want)):
        got = v.storage.array
        assert got.dtype == a.dtype and got.shape == a.shape and got.tobytes() == a.tobytes(), i
        if i not in (5, 904):
            assert got is buffers[i]  # read into the existing buffer


@pytest.mark.parametrize("where", ["data", "header"])
def test_a_corrupt_tensor_in_a_run_is_named_and_leaves_every_touched_variable_uninitialized(tmp_path, where):
    vs = model(N)
    path = tf.train.Saver().save(None, str(tmp_path / "m.ckpt"), write_meta_graph=False)
    key = sorted(v.op.name for v in vs)[700]
    with CheckpointReader(path) as r:
        offset = r._index.offsets[r._pos(key)] - (1 if where == "header" else 0)
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0xFF]))
    with pytest.raises(tf.errors.DataLossError, match=f"'{key}'.*" + ("checksum" if where == "data" else "bin32")):
        tf.train.Saver().restore(None, path)
    assert not any(v.is_initialized for v in vs)


def test_an_uninitialized_variable_in_a_run_fails_the_save_by_name(tmp_path):
    vs = model(50)
    vs[20].storage.forget()
    with pytest.raises(tf.errors.FailedPreconditionError, match=vs[20].op.name):
        tf.train.Saver().save(None, str(tmp_path / "m.ckpt"), write_meta_graph=False)
    assert list(tmp_path.iterdir()) == []
    assert all(not v.storage.lock._is_owned() for v in vs)  # every lock of the run let go


def test_read_many_in_any_order_across_large_tensors_and_gaps(tmp_path, monkeypatch):
    monkeypatch.setattr(reader_mod, "RUN_TENSORS", 7)
    rng = np.random.default_rng(3)
    tensors = []
    for i in range(60):
        n = 300_000 if i % 17 == 5 else int(rng.integers(0, 40))  # a few large ones between runs
        tensors.append((f"t{i:02d}", rng.standard_normal(n).astype("float32")))
    path = tmp_path / "c"
    write_checkpoint(path, tensors, fsync=False)
    order = list(range(60))
    rng.shuffle(order)
    names = [tensors[i][0] for i in order[:25]] + [tensors[i][0] for i in range(0, 60, 3)]  # a repeat
    with CheckpointReader(path) as r:
        outs = [np.empty(r.shape(n), r.dtype(n)) for n in names]
        r.read_many(names, outs)
        for n, out in zip(names, outs):
            assert np.array_equal(out, dict(tensors)[n]), n


def test_read_many_checks_every_out_before_reading(tmp_path):
    path = tmp_path / "c"
    write_checkpoint(path, [("a", np.ones(4, "float32")), ("b", np.ones(3, "int32"))], fsync=False)
    with CheckpointReader(path) as r:
        a = np.zeros(4, "float32")
        with pytest.raises(InvalidArgumentError, match="'b'"):
            r.read_many(["a", "b"], [a, np.zeros(4, "int32")])
        read_only = np.zeros(3, "int32")
        read_only.flags.writeable = False
        with pytest.raises(InvalidArgumentError, match="'b'"):
            r.read_many(["a", "b"], [a, read_only])
        assert not a.any()  # nothing was read
        with pytest.raises(tf.errors.NotFoundError, match="'c'"):
            r.read_many(["a", "c"], [a, a])
