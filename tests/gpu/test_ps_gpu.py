"""A ps task given a GPU (``/job:ps/task:1/device:GPU:0``): cupy arrays in the task's actor.

Needs a card and Ray (skipped otherwise, like every test here). Under
``scripts/gpu-check --dry-run --fake-all`` it runs against fakecupy, where no CUDA
kernel can run in the task: the optimizer step is then left out.
"""
from __future__ import annotations

import tempfile

import numpy as np
import pytest

import varstore as tf
from devices import manager

ray = pytest.importorskip("ray")
cp = pytest.importorskip("cupy")
FAKE = bool(getattr(cp, "__fakecupy__", False))


@pytest.fixture(scope="module")
def gpu_cluster():
    from devices import cluster
    cluster.shutdown()
    c = cluster.start(ps_tasks=2, gpus_per_task=[0, 1], num_gpus=1 if FAKE else None,
                      temp_dir=tempfile.mkdtemp(prefix="vs-ray-gpu-"), object_store_memory=256 << 20,
                      timeout=60.0)
    yield c
    cluster.shutdown()


@pytest.fixture(autouse=True)
def _registered(gpu_cluster):
    tf.reset_default_graph()
    gpu_cluster.register()
    yield
    manager.register_remote(None)
    tf.reset_default_graph()


def bits(a) -> bytes:
    a = np.ascontiguousarray(a)
    return a.dtype.str.encode() + str(a.shape).encode() + a.tobytes()


def test_a_gpu_on_a_task_holds_cupy_arrays_and_matches_a_local_gpu(gpu_cluster, tmp_path):
    """The same TF 1.x program (graph mode: ops built once, run by sessions) on a task's GPU
    and on the local GPU gives the same bits."""
    assert gpu_cluster.info(1)["gpus"] == 1 and gpu_cluster.info(0)["gpus"] == 0

    def program():
        tf.set_random_seed(3)
        w = tf.Variable(tf.random_normal([64, 32], seed=1), name="w")
        b = tf.Variable(tf.zeros([32]), name="b")
        gw, gb = tf.placeholder(tf.float32, [64, 32]), tf.placeholder(tf.float32, [32])
        train = tf.train.AdamOptimizer(0.01).apply_gradients([(gw, w), (gb, b)])
        return w, b, (gw, gb), train, b.assign_add(np.ones(32, np.float32)), tf.global_variables_initializer()

    with tf.device("/job:ps/task:1/device:GPU:0"):
        w, b, (gw, gb), train, inc, init = program()
    local = tf.Graph()
    with local.as_default(), tf.device("/gpu:0"):
        wl, bl, (gwl, gbl), train_l, inc_l, init_l = program()
    assert w.device == "/job:ps/replica:0/task:1/device:GPU:0" and wl.device == "/device:GPU:0"
    sess, sess_l = tf.Session(), tf.Session(graph=local)
    sess.run(init)
    sess_l.run(init_l)
    assert bits(sess.run(w)) == bits(sess_l.run(wl))  # drawn by cupy's generator, on the task's card
    sess.run(inc)
    sess_l.run(inc_l)
    assert bits(sess.run(b)) == bits(sess_l.run(bl))
    if not FAKE:  # fakecupy cannot run the CUDA update kernels inside the task
        rng = np.random.default_rng(0)
        for _ in range(2):
            g1, g2 = rng.standard_normal((64, 32)).astype(np.float32), rng.standard_normal(32).astype(np.float32)
            sess.run(train, feed_dict={gw: g1, gb: g2})
            sess_l.run(train_l, feed_dict={gwl: g1, gbl: g2})
        assert bits(sess.run(w)) == bits(sess_l.run(wl)) and bits(sess.run(b)) == bits(sess_l.run(bl))
    saver = tf.train.Saver(sharded=True)
    path = saver.save(sess, str(tmp_path / "gpu.ckpt"))
    want = {v.op.name: bits(v.numpy()) for v in tf.global_variables()}
    w.load(np.zeros((64, 32), np.float32))
    saver.restore(sess, path)
    assert {v.op.name: bits(v.numpy()) for v in tf.global_variables()} == want
    with tf.train.load_checkpoint(path) as r:
        assert r.get_tensor("w").tobytes() == want["w"][len(b"<f4(64, 32)"):]
    sess.close()
    sess_l.close()
