"""Saver: paths, var_list forms, restore checks, the state file and retention, failure safety."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import msgpack
import numpy as np
import pytest

import varstore as tf
from varstore.checkpoint.format import temp_name
from varstore.train.restore import exact_cast_allowed


@pytest.fixture(autouse=True)
def fresh_graph():
    tf.reset_default_graph()
    yield
    tf.reset_default_graph()


def make_vars():
    a = tf.Variable(np.arange(12, dtype=np.float32).reshape(3, 4), name="a")
    b = tf.Variable(np.array([1, 2, 3], dtype=np.int64), name="layer/b")
    tf.global_variables_initializer().run()
    return a, b


def snapshot(directory) -> dict:
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


# -- save -------------------------------------------------------------------------------
def test_save_returns_path_with_global_step(tmp_path):
    make_vars()
    saver = tf.train.Saver()
    assert saver.save(None, str(tmp_path / "model.ckpt"), global_step=1000) == str(tmp_path / "model.ckpt-1000")
    step = tf.train.get_or_create_global_step()
    with tf.Session() as sess:
        sess.run(step.initializer)
        set7 = step.assign(7)
        assert saver.save(sess, str(tmp_path / "model.ckpt"), global_step=step).endswith("model.ckpt-0")
        sess.run(set7)  # the step's value when save is called names the file
        assert saver.save(sess, str(tmp_path / "model.ckpt"), global_step=step).endswith("model.ckpt-7")
    padded = tf.train.Saver(pad_step_number=True).save(None, str(tmp_path / "p.ckpt"), global_step=3)
    assert padded.endswith("p.ckpt-00000003")


def test_save_into_a_missing_directory_is_a_clear_error(tmp_path):
    make_vars()
    with pytest.raises(tf.errors.NotFoundError, match="Parent directory"):
        tf.train.Saver().save(None, str(tmp_path / "nope" / "model.ckpt"))
    assert list(tmp_path.iterdir()) == []


def test_saving_an_uninitialized_variable_names_it_and_leaves_nothing(tmp_path):
    make_vars()
    tf.Variable(tf.zeros([2]), name="late")
    with pytest.raises(tf.errors.FailedPreconditionError, match="late"):
        tf.train.Saver().save(None, str(tmp_path / "model.ckpt"))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_failed_save_leaves_previous_checkpoints_and_state_byte_identical(tmp_path):
    a, b = make_vars()
    saver = tf.train.Saver()
    saver.save(None, str(tmp_path / "model.ckpt"), global_step=1)
    before = snapshot(tmp_path)
    tf.Variable(tf.zeros([2]), name="zz_uninitialized")  # sorts last: written after a and b
    with pytest.raises(tf.errors.FailedPreconditionError):
        saver.save(None, str(tmp_path / "model.ckpt"), global_step=2)
    assert snapshot(tmp_path) == before


def test_var_list_forms(tmp_path):
    a, b = make_vars()
    p1 = tf.train.Saver([a]).save(None, str(tmp_path / "list.ckpt"))
    assert tf.train.list_variables(p1) == [("a", [3, 4])]
    p2 = tf.train.Saver({"renamed": b, "x": a}).save(None, str(tmp_path / "dict.ckpt"))
    assert tf.train.list_variables(p2) == [("renamed", [3]), ("x", [3, 4])]
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.train.Saver({"k": np.zeros(3)})
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.train.Saver([])


def test_duplicate_names_in_var_list_are_a_value_error():
    a, _ = make_vars()
    with pytest.raises(ValueError, match="same name: a"):  # TF's class and words
        tf.train.Saver([a, a])


def test_a_variable_in_two_savers_changes_only_on_restore(tmp_path):
    a, b = make_vars()
    s1, s2 = tf.train.Saver([a]), tf.train.Saver({"a_again": a, "b": b})
    zero_a = a.assign(np.zeros((3, 4), np.float32))
    with tf.Session() as sess:
        p1 = s1.save(sess, str(tmp_path / "one.ckpt"))
        sess.run(zero_a)
        p2 = s2.save(sess, str(tmp_path / "two.ckpt"))
        s1.restore(sess, p1)  # restore runs when called, in graph mode too
        np.testing.assert_array_equal(sess.run(a), np.arange(12).reshape(3, 4))
        s2.restore(sess, p2)
        np.testing.assert_array_equal(sess.run(a), np.zeros((3, 4)))


@pytest.mark.parametrize("mode", ["graph", "eager"])
def test_save_and_restore_run_when_called_in_both_modes(tmp_path, mode):
    with tf.eager_mode(mode == "eager"):
        v = tf.Variable([1.0, 2.0], name="v")
        saver = tf.train.Saver([v])
        if mode == "graph":
            v.initializer.run()
        inc = v.assign_add([10.0, 10.0])  # graph mode: built, not run; eager mode: applied now
        path = saver.save(None, str(tmp_path / "m.ckpt"))
        saved = [1.0, 2.0] if mode == "graph" else [11.0, 12.0]
        assert tf.train.load_variable(path, "v").tolist() == saved
        if mode == "graph":
            tf.Session().run(inc)
        else:
            v.assign_add([10.0, 10.0])
        assert v.numpy().tolist() != saved
        saver.restore(None, path)  # no op to run: the values are back now
        assert v.numpy().tolist() == saved


def test_var_list_none_follows_the_graph(tmp_path):
    make_vars()
    saver = tf.train.Saver()
    c = tf.Variable(tf.ones([2]), name="c")
    c.initializer.run()
    path = saver.save(None, str(tmp_path / "m.ckpt"))
    assert [n for n, _ in tf.train.list_variables(path)] == ["a", "c", "layer/b"]


def test_file_is_a_stock_msgpack_stream(tmp_path):
    """A plain msgpack reader, knowing nothing of varstore, sees header, data, index, footer."""
    make_vars()
    path = tf.train.Saver().save(None, str(tmp_path / "m.ckpt"))
    with open(path, "rb") as f:
        objs = list(msgpack.Unpacker(f, raw=False, max_buffer_size=1 << 20))
    header, data_a, data_b, index, footer = [o for o in objs if o is not None]  # nils are padding
    assert header == ["varstore.checkpoint", 1]
    assert data_a == np.arange(12, dtype="<f4").tobytes() and data_b == np.array([1, 2, 3], "<i8").tobytes()
    assert (index["names"], index["dtypes"], index["shapes"]) == (["a", "layer/b"], ["float32", "int64"],
                                                                  [[3, 4], [3]])
    assert footer[:2] == ["varstore.index", 1]
    with open(path, "rb") as f:  # the footer locates the index
        f.seek(footer[2])
        assert msgpack.unpackb(f.read(footer[3]), raw=False) == index


# -- restore ----------------------------------------------------------------------------
def test_restore_writes_into_the_existing_buffer(tmp_path):
    a, b = make_vars()
    path = tf.train.Saver().save(None, str(tmp_path / "m.ckpt"))
    buf = a.value()
    a.load(np.full((3, 4), 5, np.float32))
    assert buf[0, 0] == 5
    tf.train.Saver().restore(None, path)
    assert a.value() is buf
    np.testing.assert_array_equal(buf, np.arange(12).reshape(3, 4))


def test_restore_reports_missing_key_with_close_names(tmp_path):
    a, b = make_vars()
    path = tf.train.Saver().save(None, str(tmp_path / "m.ckpt"))
    tf.reset_default_graph()
    lb = tf.Variable(tf.zeros([3], dtype=tf.int64), name="layer/bb")
    with pytest.raises(tf.errors.NotFoundError) as e:
        tf.train.Saver([lb]).restore(None, path)
    assert "layer/bb" in str(e.value) and "layer/b" in str(e.value).replace("layer/bb", "")
    assert not lb.is_initialized


def test_restore_shape_and_dtype_mismatch(tmp_path):
    make_vars()
    path = tf.train.Saver().save(None, str(tmp_path / "m.ckpt"))
    tf.reset_default_graph()
    a = tf.Variable(tf.zeros([4, 3]), name="a")
    with pytest.raises(tf.errors.InvalidArgumentError) as e:
        tf.train.Saver([a]).restore(None, path)
    assert "(3, 4)" in str(e.value) and "(4, 3)" in str(e.value)
    tf.reset_default_graph()
    a = tf.Variable(tf.zeros([3, 4], dtype=tf.float16), name="a")
    with pytest.raises(tf.errors.InvalidArgumentError, match="float32.*float16"):
        tf.train.Saver([a]).restore(None, path)


def test_exact_widening_casts_are_allowed_on_restore(tmp_path):
    v = tf.Variable(np.array([1.5, -2.25], dtype=tf.bfloat16), name="v")
    v.initializer.run()
    path = tf.train.Saver().save(None, str(tmp_path / "m.ckpt"))
    tf.reset_default_graph()
    w = tf.Variable(tf.zeros([2], dtype=tf.float32), name="v")
    tf.train.Saver().restore(None, path)
    assert w.dtype == np.float32 and w.numpy().tolist() == [1.5, -2.25]


@pytest.mark.parametrize("src,dst,ok", [
    ("float32", "float64", True), ("float16", "float32", True), ("bfloat16", "float32", True),
    ("int8", "int32", True), ("uint8", "int16", True), ("int16", "float32", True),
    ("float64", "float32", False), ("float32", "int32", False), ("float16", "bfloat16", False),
    ("bfloat16", "float16", False), ("int64", "float64", False), ("int32", "int8", False),
])
def test_exact_cast_rule(src, dst, ok):
    assert exact_cast_allowed(tf.as_dtype(src), tf.as_dtype(dst)) is ok


def test_restore_from_bad_paths(tmp_path):
    make_vars()
    saver = tf.train.Saver()
    # TF raises ValueError ("The passed save_path is not a valid checkpoint"); NotACheckpointError
    # is that ValueError and a NotFoundError, so both kinds of handler catch it
    for missing in (tmp_path / "missing.ckpt", tmp_path):
        with pytest.raises(tf.errors.NotACheckpointError, match="not a valid checkpoint") as e:
            saver.restore(None, str(missing))
        assert isinstance(e.value, tf.errors.NotFoundError) and isinstance(e.value, ValueError)
    with pytest.raises(ValueError, match="latest_checkpoint"):  # a directory: the hint
        saver.restore(None, str(tmp_path))
    (tmp_path / "text.ckpt").write_text("hello, not a checkpoint\n")
    with pytest.raises(tf.errors.NotFoundError):
        saver.restore(None, str(tmp_path / "text.ckpt"))
    with pytest.raises(tf.errors.InvalidArgumentError):
        saver.restore(None, None)


def test_corrupt_tensor_leaves_touched_variables_uninitialized(tmp_path):
    a, b = make_vars()
    path = tf.train.Saver().save(None, str(tmp_path / "m.ckpt"))
    from varstore.checkpoint import CheckpointReader
    with CheckpointReader(path) as r:
        # Flip a byte inside the second tensor (sorted: "a", then "layer/b").
        offset = r._index.offsets[r._pos("layer/b")]
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0xFF]))
    tf.reset_default_graph()
    a2 = tf.Variable(tf.zeros([3, 4]), name="a")
    b2 = tf.Variable(tf.zeros([3], dtype=tf.int64), name="layer/b")
    with pytest.raises(tf.errors.DataLossError, match="layer/b"):
        tf.train.Saver().restore(None, path)
    assert not a2.is_initialized and not b2.is_initialized


# -- state file and retention -----------------------------------------------------------------
def test_state_file_is_tf_text_with_relative_paths_and_moves_with_the_directory(tmp_path):
    make_vars()
    run = tmp_path / "run"
    run.mkdir()
    saver = tf.train.Saver(max_to_keep=2)
    for step in (1, 2, 3):
        saver.save(None, str(run / "model.ckpt"), global_step=step)
    text = (run / "checkpoint").read_text().splitlines()
    assert text[0] == 'model_checkpoint_path: "model.ckpt-3"'
    assert text[1:3] == ['all_model_checkpoint_paths: "model.ckpt-2"', 'all_model_checkpoint_paths: "model.ckpt-3"']
    moved = tmp_path / "moved"
    shutil.move(str(run), str(moved))
    assert tf.train.latest_checkpoint(str(moved)) == str(moved / "model.ckpt-3")
    st = tf.train.get_checkpoint_state(str(moved))
    assert st.all_model_checkpoint_paths == [str(moved / "model.ckpt-2"), str(moved / "model.ckpt-3")]
    tf.train.Saver().restore(None, tf.train.latest_checkpoint(str(moved)))


def test_max_to_keep_deletes_oldest_with_their_meta_files(tmp_path):
    make_vars()
    saver = tf.train.Saver(max_to_keep=2)
    for step in range(5):
        saver.save(None, str(tmp_path / "model.ckpt"), global_step=step)
    names = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert names == ["checkpoint", "model.ckpt-3", "model.ckpt-3.meta", "model.ckpt-4", "model.ckpt-4.meta"]
    assert saver.last_checkpoints == [str(tmp_path / "model.ckpt-3"), str(tmp_path / "model.ckpt-4")]


@pytest.mark.parametrize("keep", [None, 0])
def test_max_to_keep_none_or_zero_keeps_everything(tmp_path, keep):
    make_vars()
    saver = tf.train.Saver(max_to_keep=keep)
    for step in range(4):
        saver.save(None, str(tmp_path / "model.ckpt"), global_step=step)
    assert len(list(tmp_path.glob("model.ckpt-?"))) == 4


def test_retention_holds_across_restarts(tmp_path):
    make_vars()
    first = tf.train.Saver(max_to_keep=3)
    for step in range(3):
        first.save(None, str(tmp_path / "model.ckpt"), global_step=step)
    # A new process (a new Saver) continues the same history.
    second = tf.train.Saver(max_to_keep=3)
    second.save(None, str(tmp_path / "model.ckpt"), global_step=3)
    assert sorted(p.name for p in tmp_path.glob("model.ckpt-?")) == ["model.ckpt-1", "model.ckpt-2", "model.ckpt-3"]
    assert second.last_checkpoints == [str(tmp_path / f"model.ckpt-{i}") for i in (1, 2, 3)]


def test_keep_checkpoint_every_n_hours_preserves_files_beyond_max_to_keep(tmp_path):
    make_vars()
    # With 0 hours every checkpoint is due for preservation: none is deleted, the state lists 2.
    saver = tf.train.Saver(max_to_keep=2, keep_checkpoint_every_n_hours=0.0)
    for step in range(4):
        saver.save(None, str(tmp_path / "model.ckpt"), global_step=step)
    assert len(list(tmp_path.glob("model.ckpt-?"))) == 4
    assert len(tf.train.get_checkpoint_state(str(tmp_path)).all_model_checkpoint_paths) == 2


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path):
    make_vars()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".model.ckpt-1.tmp-{dead_pid}-0123456789abcdef"
    stale.write_bytes(b"partial")
    ours = tmp_path / temp_name("model.ckpt-9")  # this process is alive: not stale
    ours.write_bytes(b"in flight")
    tf.train.Saver().save(None, str(tmp_path / "model.ckpt"), global_step=2)
    assert not stale.exists() and ours.exists()


def test_latest_checkpoint_of_an_empty_or_corrupt_directory(tmp_path):
    assert tf.train.latest_checkpoint(str(tmp_path)) is None
    assert tf.train.get_checkpoint_state(str(tmp_path)) is None
    (tmp_path / "checkpoint").write_bytes(b"\xff\xfe garbage \x00")
    with pytest.raises(tf.errors.DataLossError, match="checkpoint"):
        tf.train.latest_checkpoint(str(tmp_path))


def test_latest_checkpoint_skips_a_deleted_newest(tmp_path):
    make_vars()
    saver = tf.train.Saver()
    for step in (1, 2):
        saver.save(None, str(tmp_path / "model.ckpt"), global_step=step)
    os.unlink(tmp_path / "model.ckpt-2")
    assert tf.train.latest_checkpoint(str(tmp_path)) == str(tmp_path / "model.ckpt-1")


# -- reading without a graph ------------------------------------------------------------------
def test_list_and_load_variable_from_file_or_directory(tmp_path):
    a, b = make_vars()
    tf.train.Saver().save(None, str(tmp_path / "model.ckpt"), global_step=5)
    assert tf.train.list_variables(str(tmp_path)) == [("a", [3, 4]), ("layer/b", [3])]
    got = tf.train.load_variable(str(tmp_path), "layer/b")
    assert got.tolist() == [1, 2, 3] and got.dtype == np.int64
    reader = tf.train.NewCheckpointReader(str(tmp_path))
    assert reader.get_variable_to_shape_map() == {"a": [3, 4], "layer/b": [3]}
    assert reader.get_variable_to_dtype_map()["a"] == np.float32
    assert reader.has_tensor("a") and not reader.has_tensor("zzz")
    with pytest.raises(tf.errors.NotFoundError):
        tf.train.list_variables(str(tmp_path / "empty_dir_missing"))
