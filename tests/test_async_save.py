"""Asynchronous save: returns at once, saves the values of the moment of the call, never loses
an error, keeps one save in flight, and the interpreter waits for it at exit."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import varstore as tf
from varstore.checkpoint import CheckpointReader


@pytest.fixture(autouse=True)
def fresh_graph():
    tf.reset_default_graph()
    yield
    tf.reset_default_graph()


def test_handle_api_and_sess_run(tmp_path):
    v = tf.Variable(tf.ones([1000]), name="v")
    v.initializer.run()
    saver = tf.train.Saver()
    handle = saver.save(None, str(tmp_path / "m.ckpt"), global_step=3, async_save=True)
    assert handle.path == str(tmp_path / "m.ckpt-3")
    with tf.Session() as sess:
        assert sess.run(handle) == handle.path
    assert handle.done() and handle.result(timeout=0) == handle.path
    assert tf.train.latest_checkpoint(str(tmp_path)) == handle.path


def test_snapshot_holds_the_values_of_the_call_under_concurrent_updates(tmp_path):
    """Many steps: each save must hold exactly the step it was called at, in every variable,
    while the training loop keeps assigning and stepping an optimizer."""
    vs = [tf.Variable(tf.zeros([256, 256]), name=f"w{i}") for i in range(4)]
    step = tf.train.get_or_create_global_step()
    opt = tf.train.GradientDescentOptimizer(-1.0)  # each step adds exactly 1 to every element
    train = opt.apply_gradients([(np.ones((256, 256), np.float32), v) for v in vs], global_step=step)
    saver = tf.train.Saver(max_to_keep=None)
    handles = []
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for _ in range(30):
            handles.append((int(sess.run(step)), saver.save(sess, str(tmp_path / "m.ckpt"), global_step=step,
                                                            async_save=True, write_meta_graph=False)))
            sess.run(train)  # the next step runs while the save is being written
    assert int(step.numpy()) == 30
    for expected, h in handles:
        with CheckpointReader(h.result(timeout=60)) as r:
            for v in vs:
                t = r.get_tensor(v.op.name)  # checkpoint keys are op names
                assert t.min() == t.max() == expected, (h.path, v.op.name)
            assert int(r.get_tensor("global_step")) == expected


def test_background_error_is_raised_by_result_and_by_the_next_save(tmp_path, monkeypatch):
    v = tf.Variable(tf.ones([10]), name="v")
    v.initializer.run()
    saver = tf.train.Saver()
    import varstore.train.save_job as saver_mod
    real = saver_mod.write_checkpoint

    def failing(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(saver_mod, "write_checkpoint", failing)
    h = saver.save(None, str(tmp_path / "m.ckpt"), global_step=1, async_save=True)
    with pytest.raises(OSError, match="No space"):
        h.result(timeout=30)
    monkeypatch.setattr(saver_mod, "write_checkpoint", real)
    with pytest.raises(OSError, match="No space"):
        saver.save(None, str(tmp_path / "m.ckpt"), global_step=2)
    # Raised once: the save after that works.
    assert saver.save(None, str(tmp_path / "m.ckpt"), global_step=3).endswith("-3")


def test_one_save_in_flight_the_next_waits(tmp_path, monkeypatch):
    v = tf.Variable(tf.ones([10]), name="v")
    v.initializer.run()
    saver = tf.train.Saver()
    import varstore.train.save_job as saver_mod
    real, gate, running, peak = saver_mod.write_checkpoint, threading.Event(), [0], [0]
    lock = threading.Lock()

    def slow(*a, **k):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        gate.wait(10)
        try:
            return real(*a, **k)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(saver_mod, "write_checkpoint", slow)
    h1 = saver.save(None, str(tmp_path / "a.ckpt"), async_save=True)
    other = tf.train.Saver()
    t = threading.Thread(target=lambda: other.save(None, str(tmp_path / "b.ckpt"), async_save=True).result())
    t.start()
    t.join(0.3)
    assert t.is_alive() and not h1.done()  # the second save waits for the first
    gate.set()
    t.join(30)
    assert h1.result(30) and peak[0] == 1


def test_interpreter_exit_waits_for_a_pending_save(tmp_path):
    code = textwrap.dedent(f"""
        import numpy as np, varstore as tf
        v = tf.Variable(np.random.default_rng(0).standard_normal(20_000_000).astype(np.float32), name="v")
        v.initializer.run()
        tf.train.Saver().save(None, {str(tmp_path / 'm.ckpt')!r}, async_save=True)
        # exit at once, with the save running
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    with CheckpointReader(str(tmp_path / "m.ckpt")) as r:
        assert r.verify() == [("v", None)]
    assert tf.train.latest_checkpoint(str(tmp_path)) == str(tmp_path / "m.ckpt")
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]
