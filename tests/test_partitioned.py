"""Partitioned variables: TF 1.x's partitioners (the same part counts), get_variable with a
partitioner, placement of the parts, and checkpoints that hold the full variable under its
full name, so they restore into any partitioning or into a plain variable.

Expectations were checked against tensorflow-cpu 2.21 (compat.v1 graph mode); TF_VECTORS
are its partitioners' answers, recorded from it.
"""
from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import varstore as tf
from varstore.errors import FailedPreconditionError, InvalidArgumentError
from varstore.partitioned import iter_slices
from varstore.train import replica_device_setter

pytestmark = pytest.mark.filterwarnings("ignore::devices.PlacementWarning")

FIX = Path(__file__).resolve().parent / "fixtures" / "tf"


@pytest.fixture(autouse=True)
def fresh_graph():
    tf.reset_default_graph()
    yield
    tf.reset_default_graph()


def full_value(pv) -> np.ndarray:
    """The parts' values joined, read the TF 1.x way (sess.run of each part)."""
    with tf.Session() as sess:
        parts = [sess.run(v) for v in pv]
    axis = next((i for i, n in enumerate(pv.get_partitions()) if n > 1), 0)
    return np.concatenate(parts, axis=axis)


def init_all():
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())


# -- the partitioners -----------------------------------------------------------------------------
def make(kind, args):
    return {"fixed": tf.fixed_size_partitioner, "minmax": tf.min_max_variable_partitioner,
            "axis": tf.variable_axis_size_partitioner}[kind](*args)


# (partitioner, its arguments, shape, dtype, TF's answer), from tensorflow-cpu 2.21.
TF_VECTORS = [
    ("fixed", [2, 1], [10, 64, 4097], "float32", [1, 2, 1]),
    ("minmax", [3, 1, 262144], [1, 3, 2], "float64", [1, 1, 1]),
    ("axis", [100, 1, 16, None], [2, 7, 1], "float16", [1, 1, 1]),
    ("fixed", [2, 1], [3, 2], "float16", [1, 2]),
    ("minmax", [3, 0, 64], [1], "float32", [1]),
    ("axis", [1048576, 0, 16, 50], [10], "float64", [1]),
    ("fixed", [1, 1], [7, 3, 7], "int8", [1, 1, 1]),
    ("minmax", [1, 1, 1000], [100, 3], "float16", [1, 1]),
    ("axis", [100, 1, 16, 3], [1, 64], "float32", [1, 3]),
    ("fixed", [100, 1], [64, 3], "int8", [1, 3]),
    ("minmax", [8, 0, 262144], [1], "float64", [1]),
    ("axis", [4096, 0, 16, 50], [4097], "int8", [2]),
    ("fixed", [8, 0], [1000], "float32", [8]),
    ("minmax", [8, 0, 1000], [2], "float16", [1]),
    ("axis", [100, 2, 16, 3], [10, 1000, 2], "int64", [1, 1, 2]),
    ("fixed", [3, 0], [100], "float32", [3]),
    ("minmax", [1, 2, 1000], [64, 3, 64], "float64", [1, 1, 1]),
    ("axis", [7, 2, 16, 50], [64, 10, 3], "float32", [1, 1, 3]),
    ("fixed", [8, 0], [10, 1000, 3], "float32", [8, 1, 1]),
    ("minmax", [8, 1, 262144], [100, 1, 7], "int64", [1, 1, 1]),
    ("axis", [100, 1, 16, None], [100, 3, 1], "float32", [1, 3, 1]),
    ("fixed", [2, 0], [3], "int8", [2]),
    ("minmax", [8, 1, 64], [64, 3], "float32", [1, 3]),
    ("axis", [100, 1, 16, 3], [3, 4097], "int8", [1, 3]),
    ("minmax", [4, 0, 64], [100, 10], "float32", [4, 1]),
    ("minmax", [4, 0, 64], [3, 10], "float32", [2, 1]),
    ("minmax", [4, 0, 64], [100], "float64", [4]),
    ("axis", [100], [100, 10], "float32", [50, 1]),
    ("axis", [100], [7, 3], "int8", [1, 1]),
]


@pytest.mark.parametrize("kind, args, shape, dtype, want", TF_VECTORS)
def test_partitioners_answer_as_tf(kind, args, shape, dtype, want):
    assert make(kind, args)(shape=tf.TensorShape(shape), dtype=tf.as_dtype(dtype)) == want


def _tf_fixed(shape, n, axis):
    out = [1] * len(shape)
    out[axis] = min(n, shape[axis])
    return out


def _tf_min_max(shape, itemsize, max_partitions, axis, min_slice_size):
    out = [1] * len(shape)
    out[axis] = max(1, min(shape[axis], max_partitions, int(math.ceil(math.prod(shape) * itemsize / min_slice_size))))
    return out


def _tf_axis_size(shape, itemsize, max_shard_bytes, axis, max_shards):
    out = [1] * len(shape)
    per_slice = 1.0 * (math.prod(shape) / shape[axis]) * itemsize
    slices_per_shard = max(1, math.floor(max_shard_bytes / per_slice))
    n = int(math.ceil(1.0 * shape[axis] / slices_per_shard))
    out[axis] = min(max_shards, n) if max_shards else n
    return out


shapes = st.lists(st.integers(1, 5000), min_size=1, max_size=3)
dtypes = st.sampled_from(["float16", "float32", "float64", "int8", "int64", "bool"])


@settings(max_examples=200, deadline=None)
@given(shapes, st.integers(1, 300), st.data())
def test_fixed_size_partitioner_is_tfs_rule(shape, n, data):
    axis = data.draw(st.integers(0, len(shape) - 1))
    assert tf.fixed_size_partitioner(n, axis)(shape=tf.TensorShape(shape), dtype=tf.float32) == \
        _tf_fixed(shape, n, axis)


@settings(max_examples=200, deadline=None)
@given(shapes, dtypes, st.integers(1, 1000), st.integers(1, 1 << 20), st.data())
def test_min_max_variable_partitioner_is_tfs_rule(shape, dtype, max_partitions, min_slice_size, data):
    axis = data.draw(st.integers(0, len(shape) - 1))
    got = tf.min_max_variable_partitioner(max_partitions, axis, min_slice_size)(shape=tf.TensorShape(shape),
                                                                                  dtype=tf.as_dtype(dtype))
    assert got == _tf_min_max(shape, np.dtype(dtype).itemsize, max_partitions, axis, min_slice_size)


@settings(max_examples=200, deadline=None)
@given(shapes, dtypes, st.integers(1, 1 << 22), st.one_of(st.none(), st.integers(1, 100)), st.data())
def test_variable_axis_size_partitioner_is_tfs_rule(shape, dtype, max_shard_bytes, max_shards, data):
    axis = data.draw(st.integers(0, len(shape) - 1))
    got = tf.variable_axis_size_partitioner(max_shard_bytes, axis, max_shards=max_shards)(
        shape=tf.TensorShape(shape), dtype=tf.as_dtype(dtype))
    assert got == _tf_axis_size(shape, np.dtype(dtype).itemsize, max_shard_bytes, axis, max_shards)


def test_partitioner_arguments_are_checked():
    with pytest.raises(ValueError, match="max_shard_bytes and bytes_per_string_element must be positive"):
        tf.variable_axis_size_partitioner(0)
    with pytest.raises(ValueError, match="max_shards must be positive"):
        tf.variable_axis_size_partitioner(10, max_shards=-1)
    with pytest.raises(ValueError, match="num_shards must be a positive int"):
        tf.fixed_size_partitioner(0)
    with pytest.raises(ValueError, match="Cannot partition variable along axis 2 when shape is only"):
        tf.get_variable("v", [4, 4], partitioner=tf.min_max_variable_partitioner(2, axis=2))


# -- get_variable with a partitioner -------------------------------------------------------------------
def test_parts_are_named_and_shaped_as_tf():
    with tf.variable_scope("s"):
        pv = tf.get_variable("emb", [10, 3], partitioner=tf.fixed_size_partitioner(3))
    assert isinstance(pv, tf.PartitionedVariable)
    assert (pv.name, pv.shape, pv.get_shape(), pv.dtype, len(pv)) == ("s/emb", (10, 3), (10, 3), np.float32, 3)
    assert [v.op.name for v in pv] == ["s/emb/part_0", "s/emb/part_1", "s/emb/part_2"]
    assert [v.shape for v in pv] == [(4, 3), (3, 3), (3, 3)]  # the first parts take the extra rows
    assert pv.get_partitions() == pv._get_partitions() == [3, 1]
    assert pv.get_variable_list() == pv._get_variable_list() == list(pv)
    assert [v._save_slice_info.spec for v in pv] == ["10 3 0,4:0,3", "10 3 4,3:0,3", "10 3 7,3:0,3"]
    # The parts are the variables of the graph; the PartitionedVariable is in no collection.
    assert tf.global_variables() == list(pv) == tf.trainable_variables()


def test_part_names_carry_the_output_index():
    # Depends on Variable.name becoming "<op name>:0" (TF 1.x's).
    pv = tf.get_variable("emb", [4, 2], partitioner=tf.fixed_size_partitioner(2))
    assert [v.name for v in pv] == ["emb/part_0:0", "emb/part_1:0"] and pv.name == "emb"


def test_split_along_another_axis():
    pv = tf.get_variable("ax1", [2, 5], partitioner=tf.fixed_size_partitioner(3, axis=1))
    assert [v.shape for v in pv] == [(2, 2), (2, 2), (2, 1)] and pv.get_partitions() == [1, 3]
    assert [v._save_slice_info.spec for v in pv] == ["2 5 0,2:0,2", "2 5 0,2:2,2", "2 5 0,2:4,1"]


def test_more_shards_than_rows_gives_one_part_per_row():
    pv = tf.get_variable("small", [2, 5], partitioner=tf.fixed_size_partitioner(4))
    assert [v.shape for v in pv] == [(1, 5), (1, 5)]


def test_a_scalar_is_never_partitioned():
    v = tf.get_variable("scalar", [], partitioner=tf.fixed_size_partitioner(2))
    assert isinstance(v, tf.Variable) and v.op.name == "scalar"


def test_the_scope_partitioner_applies_and_an_explicit_one_wins():
    with tf.variable_scope("s", partitioner=tf.fixed_size_partitioner(2)) as scope:
        a = tf.get_variable("a", [4, 2])
        b = tf.get_variable("b", [6], partitioner=tf.fixed_size_partitioner(3))
    assert scope.partitioner is not None and (len(a), len(b)) == (2, 3)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(1, 40), min_size=1, max_size=3), st.integers(1, 12), st.data())
def test_parts_tile_the_full_shape(shape, n, data):
    tf.reset_default_graph()
    axis = data.draw(st.integers(0, len(shape) - 1))
    pv = tf.get_variable("v", shape, partitioner=tf.fixed_size_partitioner(n, axis))
    assert len(pv) == min(n, shape[axis])
    sizes = [v.shape[axis] for v in pv]
    assert sum(sizes) == shape[axis] and max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    assert all(v.shape[:axis] + v.shape[axis + 1:] == tuple(shape[:axis] + shape[axis + 1:]) for v in pv)
    assert [list(o) for o, _ in iter_slices(shape, len(pv), axis)] == [v._save_slice_info.var_offset for v in pv]


# -- initial values -------------------------------------------------------------------------------------
def test_a_value_initializer_is_sliced_into_the_parts():
    full = np.arange(30.0, dtype=np.float32).reshape(10, 3)
    pv = tf.get_variable("c", initializer=tf.constant(full), partitioner=tf.fixed_size_partitioner(3))
    init_all()
    assert pv.shape == (10, 3)
    np.testing.assert_array_equal(full_value(pv), full)
    np.testing.assert_array_equal(pv.numpy(), full)


def test_as_tensor_is_the_full_value():
    pytest.importorskip("varstore.tensors")
    full = np.arange(30.0, dtype=np.float32).reshape(10, 3)
    pv = tf.get_variable("c", initializer=full, partitioner=tf.fixed_size_partitioner(3, axis=1))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        np.testing.assert_array_equal(sess.run(pv.as_tensor()), full)


def test_a_numpy_value_initializer_with_its_shape():
    full = np.arange(12, dtype=np.int64).reshape(6, 2)
    pv = tf.get_variable("n", [6, 2], initializer=full, partitioner=tf.fixed_size_partitioner(4))
    init_all()
    assert pv.dtype == np.int64
    np.testing.assert_array_equal(full_value(pv), full)


def test_a_deferred_value_initializer_is_sliced_when_initialized():
    pv = tf.get_variable("r", initializer=tf.random_normal([9, 2], seed=4), partitioner=tf.fixed_size_partitioner(3))
    init_all()
    got = full_value(pv)
    tf.reset_default_graph()
    ref = tf.Variable(tf.random_normal([9, 2], seed=4), name="r")
    with tf.Session() as sess:
        sess.run(ref.initializer)
        np.testing.assert_array_equal(got, sess.run(ref))


def test_an_initializer_object_fills_each_part():
    pv = tf.get_variable("o", [7, 2], initializer=tf.ones_initializer(), partitioner=tf.fixed_size_partitioner(3))
    init_all()
    assert full_value(pv).tolist() == [[1.0, 1.0]] * 7


def test_default_glorot_takes_its_fans_from_the_full_shape():
    pv = tf.get_variable("g", [1000, 10], partitioner=tf.fixed_size_partitioner(10))
    init_all()
    a = np.abs(full_value(pv))
    limit = np.sqrt(6.0 / (1000 + 10))  # each part alone (100 x 10) would allow sqrt(6 / 110), 3x more
    assert a.max() <= limit and a.max() > 0.95 * limit


def test_partition_info_reaches_an_initializer_that_asks_for_it():
    seen = []

    def init(shape, dtype=None, partition_info=None):
        seen.append((list(shape), partition_info.full_shape, partition_info.var_offset,
                     partition_info.single_offset(shape)))
        return np.zeros(shape, dtype)

    tf.get_variable("p", [5, 2], initializer=init, partitioner=tf.fixed_size_partitioner(2))
    assert seen == [([3, 2], [5, 2], [0, 0], 0), ([2, 2], [5, 2], [3, 0], 3)]


# -- reuse and errors ----------------------------------------------------------------------------------------
def test_reuse_returns_the_same_partitioned_variable_with_or_without_the_partitioner():
    with tf.variable_scope("s"):
        pv = tf.get_variable("emb", [10, 3], partitioner=tf.fixed_size_partitioner(3))
    with tf.variable_scope("s", reuse=True):
        assert tf.get_variable("emb") is pv
        assert tf.get_variable("emb", [10, 3], partitioner=tf.fixed_size_partitioner(3)) is pv
    with tf.variable_scope("s", reuse=tf.AUTO_REUSE):
        assert tf.get_variable("emb", [10, 3], partitioner=tf.fixed_size_partitioner(3)) is pv
    assert len(tf.global_variables()) == 3


def test_partitioned_errors_are_tfs():
    with tf.variable_scope("s"):
        tf.get_variable("emb", [10, 3], partitioner=tf.fixed_size_partitioner(3))
        tf.get_variable("plain", [4])
    with tf.variable_scope("s"):
        with pytest.raises(ValueError, match=r"^Partitioned variable with name s/emb already exists\. Did you mean "
                                             r"to set reuse=True or reuse=tf\.AUTO_REUSE in VarScope\?"):
            tf.get_variable("emb", [10, 3], partitioner=tf.fixed_size_partitioner(3))
        with pytest.raises(ValueError, match=r"^No partitioner was provided, but a partitioned version of the "
                                             r"variable was found: s/emb/part_0\."):
            tf.get_variable("emb", [10, 3])
        with pytest.raises(ValueError, match=r"^A partitioner was provided, but an unpartitioned version of the "
                                             r"variable was found: s/plain\."):
            tf.get_variable("plain", [4], partitioner=tf.fixed_size_partitioner(2))
    with tf.variable_scope("s", reuse=True):
        with pytest.raises(ValueError, match=r"Trying to reuse partitioned variable s/emb, but specified partitions "
                                             r"\[2, 1\] and found partitions \[3, 1\]\."):
            tf.get_variable("emb", [10, 3], partitioner=tf.fixed_size_partitioner(2))
        with pytest.raises(ValueError, match=r"Trying to reuse partitioned variable s/emb, but specified shape "
                                             r"\(11, 3\) and found shape \(10, 3\)\."):
            tf.get_variable("emb", [11, 3], partitioner=tf.fixed_size_partitioner(3))
        with pytest.raises(ValueError, match=r"^PartitionedVariable s/other does not exist, or was not created "
                                             r"with tf\.get_variable\(\)"):
            tf.get_variable("other", [4], partitioner=tf.fixed_size_partitioner(2))


def test_a_partitioner_must_answer_one_split_axis():
    with pytest.raises(ValueError, match="Can only slice a variable along one dimension"):
        tf.get_variable("a", [4, 4], partitioner=lambda shape, dtype: [2, 2])
    with pytest.raises(ValueError, match="does not match the Variable's rank"):
        tf.get_variable("b", [4, 4], partitioner=lambda shape, dtype: [2])
    with pytest.raises(ValueError, match="zero partitions for some axes"):
        tf.get_variable("c", [0, 3], partitioner=tf.fixed_size_partitioner(2))
    with pytest.raises(ValueError, match="Partitioner must be callable"):
        tf.get_variable("d", [4], partitioner=3)
    assert tf.global_variables() == []


# -- placement -----------------------------------------------------------------------------------------------------
def test_parts_round_robin_over_ps_tasks(placement):
    with tf.device(replica_device_setter(ps_tasks=2)):
        pv = tf.get_variable("emb", [9, 2], partitioner=tf.fixed_size_partitioner(3))
        after = tf.get_variable("after", [1])
    assert [v.requested_device for v in pv] == ["/job:ps/task:0", "/job:ps/task:1", "/job:ps/task:0"]
    assert after.requested_device == "/job:ps/task:1"
    assert all(v.device == "/device:CPU:0" for v in pv)  # soft placement: no cluster here
    init_all()
    assert full_value(pv).shape == (9, 2)


def test_parts_follow_a_device_scope(placement):
    with tf.device("/job:ps/task:3"):
        pv = tf.get_variable("emb", [4, 2], partitioner=tf.fixed_size_partitioner(2))
    assert {v.requested_device for v in pv} == {"/job:ps/task:3"}


# -- checkpoints -------------------------------------------------------------------------------------------------------
FULL = np.arange(30.0, dtype=np.float32).reshape(10, 3)


def _save_partitioned(tmp_path, n, fmt="varstore", **kw):
    with tf.variable_scope("s"):
        pv = tf.get_variable("emb", initializer=tf.constant(FULL), partitioner=tf.fixed_size_partitioner(n))
    other = tf.get_variable("other", [2], initializer=tf.ones_initializer())
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        path = tf.train.Saver(format=fmt, **kw).save(sess, str(tmp_path / "model.ckpt"))
    return path, pv, other


def test_saved_under_the_full_name_with_the_full_shape(tmp_path):
    path, _, _ = _save_partitioned(tmp_path, 3)
    assert tf.train.list_variables(path) == [("other", [2]), ("s/emb", [10, 3])]
    np.testing.assert_array_equal(tf.train.load_variable(path, "s/emb"), FULL)


@pytest.mark.parametrize("saved, restored", [(3, 4), (4, 3), (3, 1), (1, 5), (2, 2)])
def test_restore_into_another_number_of_parts(tmp_path, saved, restored):
    path, _, _ = _save_partitioned(tmp_path, saved)
    tf.reset_default_graph()
    with tf.variable_scope("s"):
        pv = tf.get_variable("emb", [10, 3], partitioner=tf.fixed_size_partitioner(restored))
    tf.get_variable("other", [2])
    with tf.Session() as sess:
        tf.train.Saver().restore(sess, path)  # no initializer needed
    assert len(pv) == restored
    np.testing.assert_array_equal(full_value(pv), FULL)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(1, 9), min_size=1, max_size=3), st.integers(1, 6), st.integers(1, 6), st.data())
def test_any_partitioning_restores_any_other(tmp_path_factory, shape, saved, restored, data):
    axis_saved = data.draw(st.integers(0, len(shape) - 1))
    axis_restored = data.draw(st.integers(0, len(shape) - 1))
    full = np.arange(math.prod(shape), dtype=np.float32).reshape(shape)
    tf.reset_default_graph()
    pv = tf.get_variable("w", initializer=full, partitioner=tf.fixed_size_partitioner(saved, axis_saved))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        path = tf.train.Saver().save(sess, str(tmp_path_factory.mktemp("ckpt") / "m"))
    tf.reset_default_graph()
    pv = tf.get_variable("w", shape, partitioner=tf.fixed_size_partitioner(restored, axis_restored))
    with tf.Session() as sess:
        tf.train.Saver().restore(sess, path)
    np.testing.assert_array_equal(full_value(pv), full)


def test_restore_into_a_plain_variable_and_back(tmp_path):
    path, _, _ = _save_partitioned(tmp_path, 3)
    tf.reset_default_graph()
    plain = tf.get_variable("s/emb", [10, 3])
    with tf.Session() as sess:
        tf.train.Saver([plain]).restore(sess, path)
        np.testing.assert_array_equal(sess.run(plain), FULL)
        back = tf.train.Saver([plain]).save(sess, str(tmp_path / "plain.ckpt"))
    tf.reset_default_graph()
    pv = tf.get_variable("s/emb", [10, 3], partitioner=tf.fixed_size_partitioner(4, axis=0))
    with tf.Session() as sess:
        tf.train.Saver().restore(sess, back)
    np.testing.assert_array_equal(full_value(pv), FULL)


def test_split_along_axis_1_round_trips(tmp_path):
    full = np.arange(24.0, dtype=np.float64).reshape(3, 8)
    pv = tf.get_variable("w", initializer=full, partitioner=tf.fixed_size_partitioner(3, axis=1))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        path = tf.train.Saver().save(sess, str(tmp_path / "m"))
    tf.reset_default_graph()
    pv = tf.get_variable("w", [3, 8], dtype=tf.float64, partitioner=tf.fixed_size_partitioner(2, axis=1))
    with tf.Session() as sess:
        tf.train.Saver().restore(sess, path)
    assert [v.shape for v in pv] == [(3, 4), (3, 4)]
    np.testing.assert_array_equal(full_value(pv), full)


@pytest.mark.parametrize("kw", [{"format": "tf"}, {"sharded": True}], ids=["tf-bundle", "sharded"])
def test_other_save_kinds_hold_the_full_variable(tmp_path, kw):
    path, _, _ = _save_partitioned(tmp_path, 3, fmt=kw.get("format", "varstore"), sharded=kw.get("sharded", False))
    assert ("s/emb", [10, 3]) in tf.train.list_variables(path)
    tf.reset_default_graph()
    with tf.variable_scope("s"):
        pv = tf.get_variable("emb", [10, 3], partitioner=tf.fixed_size_partitioner(2))
    with tf.Session() as sess:
        tf.train.Saver([pv]).restore(sess, path)
    np.testing.assert_array_equal(full_value(pv), FULL)


def test_async_save_holds_the_value_at_the_call(tmp_path):
    pv = tf.get_variable("emb", initializer=tf.constant(FULL), partitioner=tf.fixed_size_partitioner(3))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        handle = tf.train.Saver().save(sess, str(tmp_path / "m"), async_save=True)
        for v in pv:
            v.load(np.zeros(v.shape, np.float32))
        path = handle.result(60)
    np.testing.assert_array_equal(tf.train.load_variable(path, "emb"), FULL)


def test_saver_takes_a_partitioned_variable_in_a_list_or_as_a_dict_value(tmp_path):
    pv = tf.get_variable("emb", initializer=tf.constant(FULL), partitioner=tf.fixed_size_partitioner(3))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        a = tf.train.Saver([pv]).save(sess, str(tmp_path / "a"))
        b = tf.train.Saver({"renamed": pv}).save(sess, str(tmp_path / "b"))
        c = tf.train.Saver(tf.global_variables() + [pv]).save(sess, str(tmp_path / "c"))  # parts twice: once
        # A part as a dict value is an ordinary variable, saved alone under the key (as TF).
        d = tf.train.Saver({"first": pv.get_variable_list()[0]}).save(sess, str(tmp_path / "d"))
    assert tf.train.list_variables(a) == tf.train.list_variables(c) == [("emb", [10, 3])]
    assert tf.train.list_variables(b) == [("renamed", [10, 3])]
    assert tf.train.list_variables(d) == [("first", [4, 3])]
    np.testing.assert_array_equal(tf.train.load_variable(b, "renamed"), FULL)


def test_a_var_list_with_only_some_parts_is_refused():
    pv = tf.get_variable("emb", [10, 3], partitioner=tf.fixed_size_partitioner(3))
    with pytest.raises(InvalidArgumentError, match=r"parts \['emb/part_0'\] of partitioned variable 'emb'"):
        tf.train.Saver([pv.get_variable_list()[0]])


def test_a_plain_variable_named_as_a_partitioned_one_clashes_in_a_save():
    tf.get_variable("emb", [10, 3], partitioner=tf.fixed_size_partitioner(3))
    plain = tf.Variable(tf.zeros([10, 3]), name="emb")
    assert plain.op.name == "emb"
    with pytest.raises(InvalidArgumentError, match="Mixing slices and non-slices with the same name: emb"):
        tf.train.Saver()


def test_saving_an_uninitialized_part_names_it(tmp_path):
    pv = tf.get_variable("emb", [10, 3], partitioner=tf.fixed_size_partitioner(3))
    pv.get_variable_list()[0].initializer.run()
    with pytest.raises(FailedPreconditionError, match="emb/part_1"):
        tf.train.Saver().save(None, str(tmp_path / "m"))
    assert not any(n.startswith("m") for n in os.listdir(tmp_path))


def test_a_shape_mismatch_changes_no_part(tmp_path):
    path, _, _ = _save_partitioned(tmp_path, 3)
    tf.reset_default_graph()
    with tf.variable_scope("s"):
        pv = tf.get_variable("emb", [12, 3], partitioner=tf.fixed_size_partitioner(2), initializer=tf.zeros_initializer())
    tf.get_variable("other", [2])
    init_all()
    with pytest.raises(InvalidArgumentError, match=r"s/emb.*shape \(10, 3\).*\(12, 3\)"), tf.Session() as sess:
        tf.train.Saver().restore(sess, path)
    assert not full_value(pv).any()


@pytest.mark.skipif(not (FIX / "v1_partitioned").is_dir(), reason="TF fixtures absent")
@pytest.mark.parametrize("n", [1, 2, 5])
def test_restore_what_tensorflow_saved_partitioned(n):
    import importlib.util
    spec = importlib.util.spec_from_file_location("tf_fixture_values", FIX / "values.py")
    values = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(values)
    want = values.partitioned_vars()
    rows = tf.get_variable("part/rows", [10, 4], partitioner=tf.fixed_size_partitioner(n))
    cols = tf.get_variable("part/cols", [6, 9], dtype=tf.int64, partitioner=tf.fixed_size_partitioner(n, axis=1))
    plain = tf.get_variable("plain", [4], dtype=tf.float64)
    with tf.Session() as sess:
        tf.train.Saver().restore(sess, str(FIX / "v1_partitioned" / "model.ckpt-1"))
        np.testing.assert_array_equal(sess.run(plain).view(np.uint64), want["plain"].view(np.uint64))
    assert full_value(rows).view(np.uint32).tolist() == want["part/rows"].view(np.uint32).tolist()
    np.testing.assert_array_equal(full_value(cols), want["part/cols"])


def _tf_python() -> str | None:
    env = os.environ.get("VARSTORE_TF_PYTHON")
    if env:
        return env
    return sys.executable if importlib.util.find_spec("tensorflow") is not None else None


@pytest.mark.skipif(_tf_python() is None, reason="needs TensorFlow: set VARSTORE_TF_PYTHON or install it")
def test_tensorflow_restores_our_partitioned_save_into_its_own_parts(tmp_path):
    path, _, _ = _save_partitioned(tmp_path, 3, fmt="tf")
    script = textwrap.dedent(f"""
        import numpy as np
        import tensorflow.compat.v1 as tf
        tf.disable_v2_behavior()
        pv = tf.get_variable("s/emb", [10, 3], partitioner=tf.fixed_size_partitioner(4))
        plain = tf.get_variable("other", [2])
        with tf.Session() as sess:
            tf.train.Saver().restore(sess, {str(path)!r})
            full = sess.run(pv.as_tensor())
        assert [v.shape.as_list() for v in pv] == [[3, 3], [3, 3], [2, 3], [2, 3]]
        assert (full == np.arange(30.0, dtype=np.float32).reshape(10, 3)).all(), full
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    r = subprocess.run([_tf_python(), "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]


def test_a_meta_graph_rebuilds_partitioned_variables_and_their_saver(tmp_path):
    """import_meta_graph + restore, without the model's code: the parts come back with their
    slice information, and the imported Saver reads the full tensor into them."""
    emb = tf.get_variable("emb", [10, 4], partitioner=tf.fixed_size_partitioner(3),
                          initializer=tf.random_normal_initializer(seed=3))
    saver = tf.train.Saver()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        full = np.concatenate(sess.run(list(emb)))
        path = saver.save(sess, str(tmp_path / "m.ckpt"))
    tf.reset_default_graph()
    imported = tf.train.import_meta_graph(path + ".meta")
    with tf.Session() as sess:
        imported.restore(sess, path)
        parts = tf.global_variables()
        assert [v.op.name for v in parts] == ["emb/part_0", "emb/part_1", "emb/part_2"]
        np.testing.assert_array_equal(np.concatenate(sess.run(parts)), full)
        np.testing.assert_array_equal(sess.run(tf.concat(parts, 0)), full)
    assert parts[1]._save_slice_info.var_offset == [4, 0]


def test_convert_to_tensor_joins_the_parts():
    w = tf.get_variable("w", partitioner=tf.fixed_size_partitioner(2),
                        initializer=tf.constant(np.arange(12.0, dtype=np.float32).reshape(6, 2)))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        np.testing.assert_array_equal(sess.run(tf.convert_to_tensor(w) * 2.0), np.arange(12.0).reshape(6, 2) * 2)
