"""varstore.summary(), `varstore summary CKPT` and devices.memory_summary()."""
from __future__ import annotations

import gc
import os
import warnings

import numpy as np
import pytest

import devices
import varstore as tf
from varstore.checkpoint import write_checkpoint
from varstore.tools.cli import main as cli
from varstore.tools.summary import checkpoint_summary, format_summary


@pytest.fixture(autouse=True)
def _fresh_graph():
    tf.reset_default_graph()
    yield
    tf.reset_default_graph()


def _rows(text: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in text.splitlines() if line.strip()}


def test_summary_lists_every_variable_then_totals_per_device(capsys):
    w = tf.Variable(tf.zeros([784, 200]), name="weights")
    b = tf.Variable(tf.zeros([200], dtype="bfloat16"), name="biases")
    step = tf.Variable(tf.zeros([], dtype="int64"), trainable=False, name="global_step")
    tf.variables_initializer([w, b]).run()
    tf.summary()
    out = capsys.readouterr().out
    rows = _rows(out)
    assert rows["name"] == ["name", "shape", "dtype", "device", "bytes", "trainable"]
    assert rows["weights"] == ["weights", "[784,", "200]", "float32", "/device:CPU:0", "612.5", "KiB", "yes"]
    assert rows["biases"] == ["biases", "[200]", "bfloat16", "/device:CPU:0", "400", "B", "yes"]
    assert rows["global_step"] == ["global_step", "[]", "int64", "/device:CPU:0", "8", "B", "no"]
    assert rows["device"] == ["device", "variables", "parameters", "bytes", "trainable", "parameters"]
    assert rows["/device:CPU:0"] == ["/device:CPU:0", "3", "157,001", "612.9", "KiB", "157,000"]  # 627,608 B
    assert "1 variable is not initialized yet" in out  # global_step
    assert step.op.name in out and step.name not in out  # op names, as checkpoint keys


def test_summary_shows_where_variables_live_under_soft_placement():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", devices.PlacementWarning)
        with tf.device("/gpu:7"):
            v = tf.Variable(tf.ones([2]), name="g")
    text = format_summary()
    assert v.device in _rows(text)["g"]  # where it lives, not what was asked for


def test_summary_of_a_list_a_dict_and_nothing():
    a = tf.Variable(tf.zeros([2]), name="a")
    tf.Variable(tf.zeros([3]), name="b")
    assert list(_rows(format_summary([a]))) == ["name", "a", "device", "/device:CPU:0", "1"]
    assert "my_a" in _rows(format_summary({"my_a": a}))
    got = []
    tf.summary([a], print_fn=got.append)
    assert len(got) == 1 and got[0].startswith("name")
    assert format_summary([]) == "no variables"
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected Variables"):
        format_summary([np.zeros(2)])


def _saved(tmp_path, with_meta=True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", devices.PlacementWarning)
        with tf.device("/gpu:0"):
            w = tf.Variable(tf.ones([4, 4]), name="w")
        v2 = tf.Variable(tf.zeros([3], dtype="float64"), name="v2")
        step = tf.Variable(tf.zeros([], dtype="int64"), trainable=False, name="step")
    saver = tf.train.Saver({"w": w, "my_v2": v2, "step": step})
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        path = saver.save(sess, str(tmp_path / "model.ckpt"), global_step=12, write_meta_graph=with_meta)
    return path


def test_checkpoint_summary_reads_devices_and_flags_from_the_meta_file(tmp_path):
    path = _saved(tmp_path)
    text = checkpoint_summary(path)
    rows = _rows(text)
    assert text.splitlines()[0] == f"{path}: 3 tensors, global_step 12"
    # w asked for /gpu:0; it lived where the saving machine put it (the CPU, on a machine without
    # a GPU), and that is what the meta graph records and the summary shows.
    lived = devices.list_devices()[1] if len(devices.list_devices()) > 1 else "/device:CPU:0"
    assert rows["w"][-4:] == [lived, "64", "B", "yes"]
    assert rows["my_v2"][2] == "float64" and rows["my_v2"][-1] == "yes"  # the saver's name, the variable's flags
    assert rows["step"][-1] == "no"
    assert "/device:GPU:0" not in rows or lived == "/device:GPU:0"


def test_checkpoint_summary_shows_the_device_a_variable_lived_on(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", devices.PlacementWarning)
        with tf.device("/job:ps/task:7"):  # no cluster here: soft placement puts it on the CPU
            v = tf.Variable(tf.ones([4]), name="v")
    assert v.requested_device == "/job:ps/task:7" and "CPU" in v.device
    saver = tf.train.Saver()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        path = saver.save(sess, str(tmp_path / "model.ckpt"))
    rows = _rows(checkpoint_summary(path))
    assert rows["v"][3] == v.device
    # import_meta_graph still asks for what the program asked for, as TF does.
    tf.reset_default_graph()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", devices.PlacementWarning)
        tf.train.import_meta_graph(f"{path}.meta")
    assert tf.global_variables()[0].requested_device == "/job:ps/task:7"


def test_checkpoint_summary_of_an_older_meta_file_says_the_device_was_requested(tmp_path):
    from varstore.train.meta_graph import read_meta_graph, write_meta_graph
    path = _saved(tmp_path)
    meta = read_meta_graph(f"{path}.meta")
    for d in meta["variables"]:
        del d["placed_device"]  # as written before the meta graph recorded the placement
    write_meta_graph(f"{path}.meta", meta)
    (line,) = [line for line in checkpoint_summary(path).splitlines() if line.startswith("w ")]
    assert " /device:GPU:0 (requested) " in line


def test_checkpoint_summary_without_meta_and_cli(tmp_path, capsys):
    path = str(tmp_path / "plain.ckpt")
    write_checkpoint(path, [("a", np.zeros((2, 3), np.float32))], fsync=False)
    text = checkpoint_summary(path)
    assert _rows(text)["a"][-4:] == ["-", "24", "B", "?"]
    assert "no plain.ckpt.meta" in text
    assert cli(["summary", path]) == 0
    assert capsys.readouterr().out.strip() == text
    tf.summary(path)  # a path works for the Python API too
    assert capsys.readouterr().out.strip() == text
    assert cli(["summary", str(tmp_path / "missing.ckpt")]) == 2
    assert "missing.ckpt" in capsys.readouterr().err


def test_checkpoint_summary_with_a_corrupt_meta_still_lists_tensors(tmp_path):
    path = _saved(tmp_path)
    with open(f"{path}.meta", "wb") as f:
        f.write(b"\x00garbage")
    text = checkpoint_summary(path)
    assert "unreadable, ignored" in text and "my_v2" in text
    os.unlink(f"{path}.meta")


def test_memory_summary_counts_what_devices_hold():
    # The counter is process-wide: arrays earlier tests left in reference cycles must not be
    # freed (by a collection an allocation triggers) between the two readings.
    gc.collect()
    gc.disable()
    try:
        before = devices.get_device("/cpu:0").memory_in_use
        v = tf.Variable(tf.zeros([1 << 16]), name="big")
        v.initializer.run()
        assert devices.get_device("/cpu:0").memory_in_use >= before + (1 << 18)
    finally:
        gc.enable()
    lines = devices.memory_summary().splitlines()
    assert lines[0].split() == ["device", "in", "use", "peak"]
    assert lines[1].split()[0] == "/device:CPU:0"
