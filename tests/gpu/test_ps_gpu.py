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
    assert gpu_cluster.info(1)["gpus"] == 1 and gpu_cluster.info(0)["gpus"] == 0
    tf.set_random_seed(3)
    with tf.device("/job:ps/task:1/device:GPU:0"):
        w = tf.Variable(tf.random_normal([64, 32], seed=1), name="w")
        b = tf.Variable(tf.zeros([32]), name="b")
    with tf.Graph().as_default(), tf.device("/gpu:0"):
        tf.set_random_seed(3)
        wl = tf.Variable(tf.random_normal([64, 32], seed=1), name="w")
        bl = tf.Variable(tf.zeros([32]), name="b")
        opt_l = tf.train.AdamOptimizer(0.01)
    assert w.device == "/job:ps/replica:0/task:1/device:GPU:0" and wl.device == "/device:GPU:0"
    tf.variables_initializer([w, b]).run()
    tf.variables_initializer([wl, bl]).run()
    assert bits(w.numpy()) == bits(wl.numpy())  # drawn by cupy's generator, on the task's card
    b.assign_add(np.ones(32, np.float32))
    bl.assign_add(np.ones(32, np.float32))
    assert bits(b.numpy()) == bits(bl.numpy())
    if not FAKE:  # fakecupy cannot run the CUDA update kernels inside the task
        opt = tf.train.AdamOptimizer(0.01)
        rng = np.random.default_rng(0)
        for _ in range(2):
            gw, gb = rng.standard_normal((64, 32)).astype(np.float32), rng.standard_normal(32).astype(np.float32)
            opt.apply_gradients([(gw, w), (gb, b)])
            opt_l.apply_gradients([(gw, wl), (gb, bl)])
        assert bits(w.numpy()) == bits(wl.numpy()) and bits(b.numpy()) == bits(bl.numpy())
    saver = tf.train.Saver(sharded=True)
    path = saver.save(None, str(tmp_path / "gpu.ckpt"))
    want = {v.name: bits(v.numpy()) for v in tf.global_variables()}
    w.assign(np.zeros((64, 32), np.float32))
    saver.restore(None, path)
    assert {v.name: bits(v.numpy()) for v in tf.global_variables()} == want
    with tf.train.load_checkpoint(path) as r:
        assert r.get_tensor("w").tobytes() == want["w"][len(b"<f4(64, 32)"):]
