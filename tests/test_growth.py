"""Per-variable paths stay linear: the work at 4n variables is at most ~4.5x the work at n,
on the local CPU and on the ps tier (a task's side in this process, the driver's through a
local Ray cluster).

Work is counted, not timed: every Python function call and builtin call made while
the operation runs (``sys.setprofile``). A loop over the variables nested in another
loop over them (the Saver once rebuilt its variable map for every key; the meta graph
once scanned every collection for every variable) multiplies that count by 16 when n
grows 4x, far above the bound, whatever the machine's speed.
"""
from __future__ import annotations

import gc
import io
import os
import sys
from contextlib import redirect_stdout

import numpy as np
import pytest

import varstore as tf
from varstore.tensors import placeholder

N = 150
BOUND = 4.5


def count_calls(fn) -> int:
    calls = 0

    def hook(frame, event, arg):
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    sys.setprofile(hook)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return calls


def model(n: int) -> tuple[list, tf.Session]:
    """n variables in a fresh graph, initialized, and a session on that graph."""
    tf.reset_default_graph()
    vs = [tf.Variable(np.full(16, i, np.float32), name=f"layer{i // 10}/v{i}") for i in range(n)]
    sess = tf.Session()
    sess.run(tf.global_variables_initializer())
    return vs, sess


def train_op(vs, sess):
    """TF 1.x's step: an Adam train op over a gradient placeholder per variable, built once and
    run once (its slots exist: the runs after the first are the loop to measure)."""
    phs = [placeholder(tf.float32, v.shape) for v in vs]
    op = tf.train.AdamOptimizer(0.01).apply_gradients(zip(phs, vs))
    sess.run(tf.variables_initializer(tf.global_variables()))
    feed = {ph: np.ones(16, np.float32) for ph in phs}
    sess.run(op, feed)
    return sess, op, feed


def ratio(setup, op) -> float:
    """Calls of ``op`` at 4N variables over calls at N (``setup(n)`` builds its inputs)."""
    counts = []
    for n in (N, 4 * N):
        args = setup(n)
        op(*args)  # warm: first-use imports and caches are not per-variable work
        args = setup(n)
        gc.collect()  # earlier models' garbage: its finalizers are not this op's calls
        counts.append(count_calls(lambda args=args: op(*args)))
    return counts[1] / counts[0]


def _dir(tmp_path, n):
    d = tmp_path / f"n{n}"
    d.mkdir(exist_ok=True)
    return d


def _saver(tmp_path, n):
    _, sess = model(n)
    return tf.train.Saver(max_to_keep=None), str(_dir(tmp_path, n) / "model.ckpt"), sess


def _saved(tmp_path, n, meta=False):
    saver, path, sess = _saver(tmp_path, n)
    return saver, saver.save(sess, path, write_meta_graph=meta), sess


# name: (setup(tmp_path, n) -> args, op(*args))
CASES = {
    "Saver()": (lambda tp, n: model(n), lambda vs, sess: tf.train.Saver()),
    "save": (_saver, lambda saver, p, s: saver.save(s, p, write_meta_graph=False)),
    "save with meta graph": (_saver, lambda saver, p, s: saver.save(s, p)),
    "async save": (_saver, lambda saver, p, s: saver.save(s, p, write_meta_graph=False, async_save=True).result()),
    "restore": (lambda tp, n: _saved(tp, n), lambda saver, p, s: saver.restore(s, p)),
    "global_variables_initializer": (lambda tp, n: model(n), lambda vs, s: s.run(tf.global_variables_initializer())),
    "report_uninitialized_variables": (lambda tp, n: model(n),
                                       lambda vs, s: s.run(tf.report_uninitialized_variables())),
    "export_meta_graph": (lambda tp, n: (model(n), str(_dir(tp, n) / "g.meta")),
                          lambda vs, p: tf.train.export_meta_graph(p)),
    "import_meta_graph": (lambda tp, n: (_saved(tp, n, meta=True)[1] + ".meta",),
                          lambda p: (tf.reset_default_graph(), tf.train.import_meta_graph(p))),
    "CheckpointReader + list_variables": (lambda tp, n: (_saved(tp, n)[1],), lambda p: tf.train.list_variables(p)),
    "train op run": (lambda tp, n: train_op(*model(n)), lambda sess, op, feed: sess.run(op, feed)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_per_variable_paths_are_linear(case, tmp_path):
    setup, op = CASES[case]
    r = ratio(lambda n: setup(tmp_path, n), op)
    assert r <= BOUND, f"{case}: {r:.2f}x the calls at 4x the variables (linear is ~4x)"


@pytest.mark.parametrize("command", ["inspect", "verify", "summary"])
def test_commands_are_linear(command, tmp_path):
    from varstore.tools.cli import main

    def setup(n):
        path = _saved(tmp_path, n, meta=True)[1]
        return (path if command != "verify" else os.path.dirname(path)),

    def run(path):
        with redirect_stdout(io.StringIO()):
            main([command, path])

    assert ratio(setup, run) <= BOUND


# -- the ps tier -------------------------------------------------------------------------------
# A ps task holds thousands of variables. Its side of save, restore and apply runs here on a
# PsTaskServer in this process (the same object Ray hosts in a task), so that its calls are
# counted too; the driver's side runs through a real local cluster below.
def _task(n: int):
    from devices.backends.ps.server import PsTaskServer
    task = PsTaskServer("ps", 0)
    for k in range(n):
        task.put(k, ("CPU", 0), np.full(16, k, np.float32))
    return task


def _task_saved(tmp_path, n):
    from varstore.checkpoint import write_checkpoint
    task, path = _task(n), str(_dir(tmp_path, n) / "shard")
    task.save(path, [(f"v{k}", k) for k in range(n)], {}, write_checkpoint)
    return task, [(k, path, f"v{k}", "float32", True) for k in range(n)]


def _task_step(n):
    from devices.backends.ps import encode_updates
    task = _task(3 * n)  # n variables and their two Adam slots
    grads = [np.full(16, 0.1, np.float32) for _ in range(n)]
    batch, data, _ = encode_updates(list(range(n)), list(range(n, 3 * n)), 2, grads, lambda a: None, np.asarray)
    hyper = {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}
    return task, batch, data, hyper


def _task_save(task, path, names):
    from varstore.checkpoint import write_checkpoint
    task.save(path, names, {}, write_checkpoint)


def _task_restore(task, entries):
    from varstore.checkpoint.shards import load_arrays
    task.load(("CPU", 0), entries, load_arrays)


def _task_apply(task, batch, data, hyper):
    from devices.backends.ps import registered
    task.apply(("CPU", 0), registered("apply_dense"), "adam", ["m", "v"], hyper, batch, data)


TASK_CASES = {
    "task save": (lambda tp, n: (_task(n), str(_dir(tp, n) / "shard"), [(f"v{k}", k) for k in range(n)]), _task_save),
    "task restore": (_task_saved, _task_restore),
    "task adam step": (lambda tp, n: _task_step(n), _task_apply),
}


@pytest.mark.parametrize("case", sorted(TASK_CASES))
def test_ps_task_side_is_linear(case, tmp_path):
    import varstore.train.kernels  # noqa: F401 - registers the operations a task runs
    setup, op = TASK_CASES[case]
    r = ratio(lambda n: setup(tmp_path, n), op)
    assert r <= BOUND, f"{case}: {r:.2f}x the calls at 4x the variables (linear is ~4x)"


@pytest.fixture(scope="module")
def ps_cluster(tmp_path_factory):
    """Two ps tasks of a local Ray cluster (as tests/test_ps.py starts them), registered
    for this module's tests."""
    pytest.importorskip("ray")
    import tempfile

    from devices import cluster, manager
    cluster.shutdown()  # another module's cluster, if one is up: its fixture starts it again
    temp = str(tmp_path_factory.mktemp("ray"))
    if len(temp) > 60:  # Ray's socket paths are limited
        temp = tempfile.mkdtemp(prefix="vs-ray-")
    c = cluster.start(ps_tasks=2, temp_dir=temp, num_cpus=2, object_store_memory=256 << 20, timeout=30.0,
                      register=False)
    c.register()
    try:
        yield c
    finally:
        manager.register_remote(None)
        cluster.shutdown()


def ps_model(n: int) -> tuple[list, tf.Session]:
    tf.reset_default_graph()
    with tf.device(tf.train.replica_device_setter(ps_tasks=2)):
        vs = [tf.Variable(np.full(16, i, np.float32), name=f"layer{i // 10}/v{i}") for i in range(n)]
    assert {v.device_object.kind for v in vs} == {"ps"}, "the variables must live on the ps tasks"
    sess = tf.Session()
    sess.run(tf.global_variables_initializer())
    return vs, sess


def _ps_saver(tmp_path, n, **kw):
    _, sess = ps_model(n)
    return tf.train.Saver(max_to_keep=None, **kw), str(_dir(tmp_path, n) / "model.ckpt"), sess


def _ps_saved(tmp_path, n):
    saver, path, sess = _ps_saver(tmp_path, n)
    return saver, saver.save(sess, path, write_meta_graph=False), sess


PS_CASES = {
    "save": (_ps_saver, lambda saver, p, s: saver.save(s, p, write_meta_graph=False)),
    "sharded save": (lambda tp, n: _ps_saver(tp, n, sharded=True),
                     lambda saver, p, s: saver.save(s, p, write_meta_graph=False)),
    "restore": (_ps_saved, lambda saver, p, s: saver.restore(s, p)),
    "train op run": (lambda tp, n: train_op(*ps_model(n)), lambda sess, op, feed: sess.run(op, feed)),
}


@pytest.mark.parametrize("case", sorted(PS_CASES))
def test_driver_side_of_ps_variables_is_linear(case, tmp_path, ps_cluster):
    setup, op = PS_CASES[case]
    r = ratio(lambda n: setup(tmp_path, n), op)
    assert r <= BOUND, f"ps {case}: {r:.2f}x the calls at 4x the variables (linear is ~4x)"
