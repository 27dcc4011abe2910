"""tf.train.init_from_checkpoint: TF 1.x's warm start (assignment maps, errors and timing checked
against tensorflow-cpu 2.21's compat.v1), over our checkpoints, sharded ones and TF bundles."""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_gpu_fake import fake_cupy  # noqa: F401 - the fake-cupy fixture, shared

import varstore as tf
from varstore.checkpoint import write_checkpoint
from varstore.checkpoint.shards import SHARDS_KEY, shard_file_name
from varstore.errors import InvalidArgumentError, NotFoundError

pytestmark = pytest.mark.filterwarnings("ignore::devices.PlacementWarning")


@pytest.fixture(autouse=True)
def fresh_graph():
    tf.reset_default_graph()
    yield
    tf.reset_default_graph()


def _save(directory, fmt="varstore", step=3) -> str:
    """A checkpoint holding old/a [1, 2], old/b [[3]], old/sub/c 5, x 7 (a fresh graph, then reset)."""
    with tf.name_scope("old"):
        tf.Variable([1.0, 2.0], name="a")
        tf.Variable([[3.0]], name="b")
        with tf.name_scope("sub"):
            tf.Variable(5.0, name="c")
    tf.Variable(7.0, name="x")
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        path = tf.train.Saver(format=fmt).save(sess, os.path.join(str(directory), "m.ckpt"), global_step=step)
    tf.reset_default_graph()
    return path


def _new(name, shape):
    return tf.Variable(tf.zeros(shape), name=name)


@pytest.fixture
def ckpt(tmp_path):
    _save(tmp_path)
    return str(tmp_path)


def test_scope_to_scope(ckpt):
    with tf.name_scope("new"):
        a, b = _new("a", [2]), _new("b", [1, 1])
        with tf.name_scope("sub"):
            c = _new("c", [])
    tf.train.init_from_checkpoint(ckpt, {"old/": "new/"})
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        ra, rb, rc = sess.run([a, b, c])
    assert ra.tolist() == [1.0, 2.0] and rb.tolist() == [[3.0]] and float(rc) == 5.0


def test_one_variable_by_name_and_by_object(ckpt):
    with tf.name_scope("new"):
        a = _new("a", [2])
    z = _new("zz", [2])
    tf.train.init_from_checkpoint(ckpt, {"old/a": "new/a"})
    tf.train.init_from_checkpoint(ckpt, {"old/a": z})
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        assert sess.run(a).tolist() == [1.0, 2.0]
        assert sess.run(z).tolist() == [1.0, 2.0]


def test_root_to_scope(ckpt):
    with tf.name_scope("new"):
        x = _new("x", [])
        with tf.name_scope("old"):
            a = _new("a", [2])
    tf.train.init_from_checkpoint(ckpt, {"/": "new/"})
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        assert float(sess.run(x)) == 7.0
        assert sess.run(a).tolist() == [1.0, 2.0]


def test_nothing_happens_until_the_initializer_runs(ckpt):
    a = _new("a", [2])
    tf.train.init_from_checkpoint(ckpt, {"old/a": a})
    with tf.Session() as sess:
        assert sess.run(tf.report_uninitialized_variables()).tolist() == [b"a"]
        sess.run(a.initializer)
        assert sess.run(a).tolist() == [1.0, 2.0]
        sess.run(a.assign([9.0, 9.0]))
        sess.run(a.initializer)  # each run of the initializer loads again, as TF's restore op
        assert sess.run(a).tolist() == [1.0, 2.0]


def test_the_checkpoint_is_read_when_the_initializer_runs(tmp_path):
    path = _save(tmp_path)
    a = _new("a", [2])
    tf.train.init_from_checkpoint(path, {"old/a": a})
    os.remove(path)  # TF's restore op opens the file when run: gone by then is an error then
    with tf.Session() as sess, pytest.raises(NotFoundError):
        sess.run(a.initializer)


def test_a_directory_means_its_latest_checkpoint_at_call_time(tmp_path):
    _save(tmp_path, step=3)
    a = _new("a", [2])
    tf.train.init_from_checkpoint(str(tmp_path), {"old/a": a})
    assert a.initial_value.ckpt_file.endswith("m.ckpt-3")


def test_a_file_path(tmp_path):
    path = _save(tmp_path)
    a = _new("a", [2])
    tf.train.init_from_checkpoint(path, {"old/a": "a"})
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        assert sess.run(a).tolist() == [1.0, 2.0]


def test_initialized_value_sees_the_checkpoint(ckpt):
    v = _new("v", [2])
    w = tf.Variable(v.initialized_value() * 2.0, name="w")
    tf.train.init_from_checkpoint(ckpt, {"old/a": v})
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        assert sess.run(w).tolist() == [2.0, 4.0]


def test_scope_without_variables_does_nothing(ckpt):
    a = _new("a", [2])
    tf.train.init_from_checkpoint(ckpt, {"old/": "nothere/"})
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        assert sess.run(a).tolist() == [0.0, 0.0]


def test_shape_mismatch(ckpt):
    with tf.name_scope("new"):
        _new("a", [3])
    with pytest.raises(ValueError, match=r"Shape of variable new/a:0 \(\(3,\)\) doesn't match with shape of "
                                         r"tensor old/a \(\[2\]\)"):
        tf.train.init_from_checkpoint(ckpt, {"old/a": "new/a"})


def test_missing_tensor(ckpt):
    _new("a", [2])
    with pytest.raises(ValueError, match="Tensor old/zzz is not found in"):
        tf.train.init_from_checkpoint(ckpt, {"old/zzz": "a"})


def test_missing_tensor_in_a_scope(ckpt):
    with tf.name_scope("new"):
        _new("q", [2])
    with pytest.raises(ValueError, match=r"Tensor old/q \(q in old/\) is not found in"):
        tf.train.init_from_checkpoint(ckpt, {"old/": "new/"})


@pytest.mark.parametrize("mapping, scopes, ckpt_name", [
    ({"old/a": "new/q"}, "new", "old/a"),     # no such variable: read as a scope, which needs a '/'
    ({"old/a": "new/"}, "new", "old/a"),      # a variable's tensor to a scope
    ({"old": "new"}, "", "old"),
])
def test_a_name_that_is_no_variable_must_be_scope_to_scope(ckpt, mapping, scopes, ckpt_name):
    with tf.name_scope("new"):
        _new("a", [2])
    with pytest.raises(ValueError, match=f"Assignment map with scope only name {scopes} should map to scope only "
                                         f"{ckpt_name}. Should be 'scope/': 'other_scope/'."):
        tf.train.init_from_checkpoint(ckpt, mapping)


def test_scope_to_a_variable_name(ckpt):
    with tf.name_scope("new"):
        _new("a", [2])
    with pytest.raises(ValueError, match="Tensor old/ is not found in"):
        tf.train.init_from_checkpoint(ckpt, {"old/": "new/a"})


def test_entries_are_applied_in_checkpoint_name_order(ckpt):
    # TF sorts by checkpoint name: "old/" (scope) first, then "old/a" -> new/b fails on shape.
    with tf.name_scope("new"):
        _new("a", [2])
        _new("b", [1, 1])
    with pytest.raises(ValueError, match=r"Shape of variable new/b:0"):
        tf.train.init_from_checkpoint(ckpt, {"old/a": "new/b", "old/": "new/"})


def test_missing_checkpoint(tmp_path):
    _new("a", [2])
    with pytest.raises(NotFoundError):
        tf.train.init_from_checkpoint(str(tmp_path / "nonexistent"), {"old/a": "a"})
    with pytest.raises(ValueError, match="Couldn't find 'checkpoint' file or checkpoints in given directory"):
        tf.train.init_from_checkpoint(str(tmp_path), {"old/a": "a"})  # a directory without checkpoints


def test_dtype_mismatch_fails_when_run(ckpt):
    a = tf.Variable([0, 0], name="a")
    tf.train.init_from_checkpoint(ckpt, {"old/a": a})  # TF too accepts it here and fails in the restore op
    with tf.Session() as sess, pytest.raises(InvalidArgumentError, match="expected dtype int32 does not equal "
                                                                          "original dtype float32"):
        sess.run(a.initializer)


def test_tf_bundle(tmp_path):
    _save(tmp_path, fmt="tf")
    with tf.name_scope("new"):
        a = _new("a", [2])
    tf.train.init_from_checkpoint(str(tmp_path), {"old/": "new/"})
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        assert sess.run(a).tolist() == [1.0, 2.0]


def test_eager_mode_loads_at_once(ckpt):
    with tf.eager_mode():
        z = tf.Variable([0.0, 0.0], name="z")
        tf.train.init_from_checkpoint(ckpt, {"old/a": z})
        assert z.numpy().tolist() == [1.0, 2.0]


def test_partitioned_parts_by_list(ckpt):
    class SliceInfo:
        def __init__(self, full_shape, var_offset, var_shape):
            self.full_shape, self.var_offset, self.var_shape = full_shape, var_offset, var_shape

    p0, p1 = _new("w/part_0", [1]), _new("w/part_1", [1])
    p0._save_slice_info, p1._save_slice_info = SliceInfo([2], [0], [1]), SliceInfo([2], [1], [1])
    tf.train.init_from_checkpoint(ckpt, {"old/a": "w"})  # found by name: w/part_0, w/part_1
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        assert [x.tolist() for x in sess.run([p0, p1])] == [[1.0], [2.0]]


@pytest.mark.usefixtures("fake_cupy")
def test_a_gpu_variable_is_loaded_on_its_device(ckpt):
    with tf.device("/gpu:1"):
        a = _new("a", [2])
    tf.train.init_from_checkpoint(ckpt, {"old/a": a})
    with tf.Session() as sess:
        sess.run(a.initializer)
        assert sess.run(a).tolist() == [1.0, 2.0]
    assert type(a.value()).__module__.startswith("cupy") and "GPU:1" in a.device


def test_sharded_checkpoint(tmp_path):
    # A main file and one shard, as a ps-sharded save writes them (docs/FORMAT.md): each tensor is
    # read from the file that holds it.
    path = str(tmp_path / "model.ckpt-5")
    shard = shard_file_name("model.ckpt-5", 0, 1, "0a1b2c3d")
    write_checkpoint(str(tmp_path / shard), [("old/a", np.array([1.0, 2.0], np.float32))],
                     extra={"shard_of": "model.ckpt-5", "save_id": "0a1b2c3d", "shard": 0, "num_shards": 1})
    write_checkpoint(path, [("x", np.array(7.0, np.float32))],
                     extra={SHARDS_KEY: [{"file": shard, "device": "/job:ps/task:0", "tensors": 1}],
                            "save_id": "0a1b2c3d"})
    with tf.name_scope("new"):
        a = _new("a", [2])
    x = _new("x", [])
    tf.train.init_from_checkpoint(path, {"old/": "new/", "x": x})
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        assert sess.run(a).tolist() == [1.0, 2.0] and float(sess.run(x)) == 7.0


def test_get_variable_and_a_partitioned_variable(ckpt):
    # As TF: get_variable's variables by name, and a partitioned variable (parts w/part_0,
    # w/part_1) from one whole tensor, each part its slice.
    with tf.variable_scope("new"):
        a = tf.get_variable("a", [2])
        b = tf.get_variable("b", [1, 1])
    w = tf.get_variable("w", [2], partitioner=tf.fixed_size_partitioner(2))
    tf.train.init_from_checkpoint(ckpt, {"old/": "new/", "old/a": "w"})
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        assert sess.run(a).tolist() == [1.0, 2.0] and sess.run(b).tolist() == [[3.0]]
        assert [p.tolist() for p in sess.run(list(w))] == [[1.0], [2.0]]


def test_a_partitioned_variable_object_and_scope(ckpt):
    with tf.variable_scope("new"):
        a = tf.get_variable("a", [2], partitioner=tf.fixed_size_partitioner(2))
        tf.get_variable("b", [1, 1])
    tf.train.init_from_checkpoint(ckpt, {"old/": "new/"})  # new/a/part_* count as new/a
    c = tf.get_variable("c", [2], partitioner=tf.fixed_size_partitioner(2))
    tf.train.init_from_checkpoint(ckpt, {"old/a": c})
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        assert sess.run(a).tolist() == [1.0, 2.0]
        assert sess.run(c).tolist() == [1.0, 2.0]


_names = st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=3).map("/".join)


@settings(max_examples=15, deadline=None)
@given(names=st.lists(_names, min_size=1, max_size=4, unique=True),
       old=st.sampled_from(["old/", "x/y/", "/"]), new=st.sampled_from(["new/", "p/q/", "/"]))
def test_scope_maps_carry_every_variable_across(tmp_path_factory, names, old, new):
    # Every variable under `new` gets the tensor of the same relative name under `old`, as TF's rule.
    assume(not any(n != m and m.startswith(n + "/") for n in names for m in names))  # no var is a scope
    tf.reset_default_graph()
    d = str(tmp_path_factory.mktemp("ckpt"))
    prefix = lambda scope, n: n if scope == "/" else scope + n  # noqa: E731
    values = {n: np.full([i + 1], float(i), np.float32) for i, n in enumerate(names)}
    write_checkpoint(os.path.join(d, "m"), [(prefix(old, n), v) for n, v in values.items()])
    made = {n: tf.Variable(tf.zeros([i + 1]), name=prefix(new, n)) for i, n in enumerate(names)}
    tf.train.init_from_checkpoint(os.path.join(d, "m"), {old: new})
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for n, v in made.items():
            assert sess.run(v).tolist() == values[n].tolist()
