"""Parameter-server tasks on a real local Ray cluster (2 ps tasks on loopback).

The cluster is started once per session (``ray.init`` takes a few seconds) and
registered only while a test that asks for it runs, so every other test sees
no ps task. Tests that need no Ray (soft placement, the sharded format) run
without it; the rest skip when Ray is not installed.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import pytest

import devices
import varstore as tf
from devices import manager
from devices.backends.ps import PsDevice, PsTask
from varstore.checkpoint import CheckpointReader, write_checkpoint
from varstore.train import IndexedSlices, replica_device_setter

pytestmark = pytest.mark.filterwarnings("ignore::devices.PlacementWarning")

PS0 = "/job:ps/replica:0/task:0/device:CPU:0"
PS1 = "/job:ps/replica:0/task:1/device:CPU:0"
CPU = "/device:CPU:0"


@pytest.fixture(autouse=True)
def fresh_graph():
    """A fresh graph, in eager mode: these tests exercise the ps tier op by op (each assign,
    update and read runs when called); tests/test_ps_multinode.py trains in graph mode."""
    tf.reset_default_graph()
    with tf.eager_mode():
        yield
    tf.reset_default_graph()


def bits(a) -> bytes:
    a = np.ascontiguousarray(a)
    return a.dtype.str.encode() + str(a.shape).encode() + a.tobytes()


# =====================================================================================
# Without Ray or a cluster
# =====================================================================================

def test_without_a_cluster_ps_variables_live_on_the_local_cpu(placement, tmp_path):
    with pytest.warns(devices.PlacementWarning, match="job:ps/task:1"), tf.device(replica_device_setter(ps_tasks=2)):
        a = tf.Variable(tf.ones([3]), name="a")
        b = tf.Variable(tf.zeros([3]), name="b")
    assert (a.requested_device, b.requested_device) == ("/job:ps/task:0", "/job:ps/task:1")
    assert a.device == b.device == CPU
    tf.global_variables_initializer().run()
    tf.train.GradientDescentOptimizer(0.5).apply_gradients([(np.ones(3, np.float32), a)])
    assert a.numpy().tolist() == [0.5] * 3
    path = tf.train.Saver(sharded=True).save(None, str(tmp_path / "m.ckpt"))
    with CheckpointReader(path) as r:  # nothing on a ps task: one file, an empty shard list
        assert r.names() == ["a", "b"] and r.extra["shards"] == []


def test_ps_device_without_a_task_is_unavailable():
    d = PsDevice(devices.DeviceSpec.from_string("/job:ps/task:3"))
    with pytest.raises(tf.errors.UnavailableError, match="task:3"):
        d.empty((2,), "float32")
    with pytest.raises(tf.errors.UnavailableError):
        d.asarray(np.zeros(2))


def _write_sharded(tmp_path, save_id="0123abcd", shard_of="model.ckpt-7", files=None):
    """A sharded checkpoint as a 2-task save writes it (FORMAT.md, "Sharded checkpoints")."""
    main = tmp_path / "model.ckpt-7"
    names = files or [f"model.ckpt-7.shard-{i}-of-2.{save_id}" for i in range(2)]
    tensors = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.full(3, 7, np.float32),
               "step": np.array(7, np.int64)}
    write_checkpoint(tmp_path / names[0], [("w", tensors["w"])], extra={"shard_of": shard_of, "save_id": save_id})
    write_checkpoint(tmp_path / names[1], [("b", tensors["b"])], extra={"shard_of": shard_of, "save_id": save_id})
    write_checkpoint(main, [("step", tensors["step"])], extra={
        "global_step": 7, "save_id": save_id,
        "shards": [{"file": n, "device": f"/job:ps/replica:0/task:{i}/device:CPU:0", "tensors": 1}
                   for i, n in enumerate(names)]})
    return str(main), tensors


def test_a_sharded_checkpoint_restores_with_no_cluster(tmp_path):
    path, tensors = _write_sharded(tmp_path)
    w = tf.Variable(tf.zeros([2, 3]), name="w")
    b = tf.Variable(tf.zeros([3]), name="b")
    step = tf.Variable(tf.zeros([], "int64"), name="step")
    tf.train.Saver().restore(None, path)
    for v in (w, b, step):
        assert bits(v.numpy()) == bits(tensors[v.op.name])
    assert tf.train.load_variable(path, "w").tolist() == tensors["w"].tolist()
    assert [n for n, _ in tf.train.list_variables(path)] == ["b", "step", "w"]


@pytest.mark.parametrize("damage", ["missing", "other_save", "escape", "duplicate"])
def test_a_damaged_sharded_checkpoint_is_data_loss_and_changes_nothing(tmp_path, damage):
    if damage == "escape":
        path, _ = _write_sharded(tmp_path, files=["../evil.shard", "model.ckpt-7.shard-1-of-2.0123abcd"])
    elif damage == "duplicate":
        path, _ = _write_sharded(tmp_path)
        write_checkpoint(tmp_path / "model.ckpt-7.shard-1-of-2.0123abcd", [("w", np.zeros((2, 3), np.float32))],
                         extra={"shard_of": "model.ckpt-7", "save_id": "0123abcd"})
    else:
        path, _ = _write_sharded(tmp_path)
        shard = tmp_path / "model.ckpt-7.shard-1-of-2.0123abcd"
        if damage == "missing":
            shard.unlink()
        else:  # a shard left by another save at the same path
            write_checkpoint(shard, [("b", np.zeros(3, np.float32))],
                             extra={"shard_of": "model.ckpt-7", "save_id": "ffffffff"})
    w = tf.Variable(tf.ones([2, 3]), name="w")
    tf.variables_initializer([w]).run()
    with pytest.raises(tf.errors.DataLossError, match="model.ckpt-7"):
        tf.train.Saver([w]).restore(None, path)
    assert w.numpy().tolist() == [[1.0] * 3] * 2


def test_the_gradient_stream_takes_only_connections_with_the_secret_and_delivers_arrays_bit_exact():
    """The driver-to-task byte stream (devices/backends/ps/stream.py), both ends in this process."""
    import socket

    from devices.backends.ps.stream import Receiver, Sender, plan_layout
    rx = Receiver("127.0.0.1")
    try:
        intruder = socket.create_connection(rx.address)  # no secret: closed unread, nothing registered
        intruder.sendall(b"x" * 40)
        assert intruder.recv(1) == b""
        intruder.close()
        with pytest.raises(ConnectionError, match="did not connect"):
            rx.receive(7, ((),), 0, timeout=1.0)
        rng = np.random.default_rng(0)
        data = ([rng.standard_normal((300, 7)).astype(np.float32), np.array(3, np.int64)],
                [rng.standard_normal(5).astype(devices.bfloat16), np.arange(9, dtype=np.float16)])
        tx = Sender(*rx.address, rx.secret, 7, timeout=10.0)
        try:
            for _ in range(2):  # the receive buffer is reused: a second call reads as well as the first
                layout, segments, nbytes = plan_layout(data)
                sent = tx.send(segments)
                got = rx.receive(7, layout, nbytes, timeout=10.0)
                sent(10.0)
                assert [[bits(a) for a in g] for g in got] == [[bits(a) for a in g] for g in data]
                assert not any(a.flags.writeable for g in got for a in g)
        finally:
            tx.close()
    finally:
        rx.close()


# =====================================================================================
# On a local Ray cluster
# =====================================================================================

class _Clusters:
    """The session's cluster; a test may ask for another task count (it is restarted)."""

    def __init__(self, tmp_path_factory):
        self.tmp_path_factory = tmp_path_factory
        self.c = None

    def get(self, ps_tasks: int = 2):
        from devices import cluster
        if self.c is None or self.c.closed or self.c.ps_tasks != ps_tasks:
            cluster.shutdown()
            temp = str(self.tmp_path_factory.mktemp("ray"))
            if len(temp) > 60:  # Ray's socket paths are limited
                temp = tempfile.mkdtemp(prefix="vs-ray-")
            self.c = cluster.start(ps_tasks=ps_tasks, temp_dir=temp, num_cpus=2,
                                   object_store_memory=256 << 20, timeout=30.0, register=False)
        return self.c


@pytest.fixture(scope="session")
def clusters(tmp_path_factory):
    pytest.importorskip("ray")
    holder = _Clusters(tmp_path_factory)
    yield holder
    from devices import cluster
    cluster.shutdown()


def _use(clusters, ps_tasks):
    c = clusters.get(ps_tasks)
    c.register()
    try:
        yield c
    finally:
        manager.register_remote(None)


@pytest.fixture
def ps(clusters):
    """The 2-task cluster, registered for this test."""
    yield from _use(clusters, 2)


@pytest.fixture
def ps3(clusters):
    yield from _use(clusters, 3)


def _on_ps(ps_tasks=2, **kw):
    return tf.device(replica_device_setter(ps_tasks=ps_tasks, **kw))


# -- the cluster ------------------------------------------------------------------------------

def test_each_task_is_its_own_process_listening_on_loopback_only(ps):
    infos = [ps.info(i) for i in range(2)]
    pids = {i["pid"] for i in infos}
    assert len(pids) == 2 and os.getpid() not in pids
    assert ps.address.startswith("127.0.0.1:")
    psutil = pytest.importorskip("psutil")
    me = psutil.Process()
    exposed = []
    for p in [me] + me.children(recursive=True):
        try:
            conns = p.net_connections(kind="inet")
        except (psutil.Error, OSError):
            continue
        for conn in conns:
            if conn.status == psutil.CONN_LISTEN and conn.laddr.ip not in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
                exposed.append((p.name(), conn.laddr))
    assert not exposed, f"Ray processes listen beyond loopback: {exposed}"


def test_start_twice_is_refused(ps):
    from devices import cluster
    with pytest.raises(tf.errors.FailedPreconditionError, match="already"):
        cluster.start(ps_tasks=1)


def test_connect_from_another_process(ps):
    code = ("import devices.cluster as c, sys; k = c.connect(sys.argv[1]); "
            "print(k.ps_tasks, len(set(k.ping())), k.info(1)['pid']); c.shutdown()")
    out = subprocess.run([sys.executable, "-c", code, ps.address], capture_output=True, text=True, timeout=60,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["2", "2", str(ps.info(1)["pid"])]


# -- placement --------------------------------------------------------------------------------

def test_variables_go_round_robin_to_the_tasks(ps):
    with _on_ps():
        a, b, c = (tf.Variable(tf.zeros([2]), name=n) for n in "abc")
    assert [v.device for v in (a, b, c)] == [PS0, PS1, PS0]
    assert a.device_object is devices.get_device("/job:ps/task:0/cpu:0") is devices.get_device("/job:ps/task:0")
    assert isinstance(a.device_object, PsDevice)


def test_a_place_the_cluster_lacks_falls_back_to_the_local_cpu(ps, placement):
    with pytest.warns(devices.PlacementWarning), tf.device("/job:ps/task:2"):
        v = tf.Variable(1.0, name="v")
    # This task was given no GPU.
    with pytest.warns(devices.PlacementWarning), tf.device("/job:ps/task:0/device:GPU:0"):
        g = tf.Variable(1.0, name="g")
    assert v.device == g.device == CPU
    devices.set_soft_placement(False)
    with pytest.raises(tf.errors.InvalidArgumentError, match="task:2"), tf.device("/job:ps/task:2"):
        tf.Variable(1.0, name="strict")


# -- initialization on the task -----------------------------------------------------------------

def test_initial_values_are_drawn_on_the_task_and_match_the_cpu(ps):
    tf.set_random_seed(5)
    with _on_ps():
        w = tf.Variable(tf.random_normal([30, 20], stddev=0.35, seed=1), name="w")  # task 0
        u = tf.Variable(tf.random_uniform([7], -1, 1, seed=2), name="u")             # task 1
        t = tf.Variable(tf.truncated_normal([40], seed=3), name="t")                  # task 0
    with tf.device("/cpu:0"):
        wl = tf.Variable(tf.random_normal([30, 20], stddev=0.35, seed=1), name="wl")
        ul = tf.Variable(tf.random_uniform([7], -1, 1, seed=2), name="ul")
        tl = tf.Variable(tf.truncated_normal([40], seed=3), name="tl")
    assert w.device == PS0 and wl.device == CPU
    init = tf.global_variables_initializer()
    for _ in range(2):  # running again continues each generator's sequence, on the task as locally
        init.run()
        for remote, local in ((w, wl), (u, ul), (t, tl)):
            assert bits(remote.numpy()) == bits(local.numpy())


@tf.graph_mode()  # initialized_value() is a graph-mode idiom
def test_initialized_value_and_reads_ship_values_between_tasks(ps):
    with _on_ps():
        w = tf.Variable(tf.random_normal([5, 4], seed=7), name="w")            # task 0
        w2 = tf.Variable(w.initialized_value() * 2.0, name="w2")               # task 1: value shipped
        w3 = tf.Variable(w2.initialized_value() - w.initialized_value(), name="w3")  # task 0: w by key
    fn = tf.Variable(lambda: np.full([2], 3.0, np.float32), name="fn")  # a function: evaluated here
    big = np.random.default_rng(0).standard_normal(40_000).astype(np.float32)  # too big to describe
    with _on_ps():
        b = tf.Variable(big, name="big")
        c = tf.Variable(fn, name="copy")  # a plain read of another variable
    tf.variables_initializer([w3, w2, fn, b]).run()  # order does not matter: dependencies first
    tf.variables_initializer([c]).run()
    assert bits(w2.numpy()) == bits(w.numpy() * np.float32(2))
    assert bits(w3.numpy()) == bits(w2.numpy() - w.numpy())
    assert bits(b.numpy()) == bits(big)
    assert c.numpy().tolist() == [3.0, 3.0] and c.device.startswith("/job:ps")


@tf.graph_mode()  # eager variables are initialized when created
def test_reading_an_uninitialized_ps_variable_names_it(ps):
    with _on_ps():
        v = tf.Variable(tf.zeros([2]), name="lonely")
    with pytest.raises(tf.errors.FailedPreconditionError, match="lonely"):
        v.numpy()


# -- reads and writes -----------------------------------------------------------------------------

def test_reads_are_read_only_views_and_copies_only_where_the_user_writes(ps):
    with _on_ps():
        v = tf.Variable(np.arange(4, dtype=np.float32), name="v")
    dev = v.device_object
    view = dev.read(v.storage.array)  # what reads fetch: Ray's object store, zero-copy
    assert isinstance(view, np.ndarray) and not view.flags.writeable
    mine = v.numpy()
    mine[0] = 100.0  # the user's own copy
    assert v.numpy()[0] == 0.0 and view[0] == 0.0
    snap = v.read_value()  # a copy made on the task
    v.assign_add(np.ones(4, np.float32))
    assert np.asarray(snap).tolist() == [0.0, 1.0, 2.0, 3.0]  # a snapshot on the task
    assert view.tolist() == [0.0, 1.0, 2.0, 3.0]  # a view fetched earlier is a snapshot too
    assert np.asarray(v).tolist() == [1.0, 2.0, 3.0, 4.0]


def test_assigns_run_on_the_task_and_match_local_bit_for_bit(ps):
    rng = np.random.default_rng(1)
    x0 = rng.standard_normal((64, 33)).astype(np.float32)
    with _on_ps():
        r = tf.Variable(x0, name="r")
    with tf.device("/cpu:0"):
        loc = tf.Variable(x0, name="loc")
    tf.global_variables_initializer().run()
    deltas = [rng.standard_normal((64, 33)).astype(np.float32) for _ in range(3)]
    big = rng.standard_normal((64, 33)).astype(np.float64)  # cast on the way, as locally
    for v in (r, loc):
        v.assign_add(deltas[0])
        v.assign_sub(deltas[1])
        v.assign_add(big)
        v.assign(v.numpy() * np.float32(0.5))
        v.assign_add(deltas[2])
        v.assign_add(tf.ones([64, 33]))  # a deferred value, evaluated on the task
    assert bits(r.numpy()) == bits(loc.numpy())
    with pytest.raises(tf.errors.InvalidArgumentError, match="shape"):
        r.assign(np.zeros(3, np.float32))
    with pytest.raises(tf.errors.InvalidArgumentError):
        r.assign(np.zeros((64, 33), np.complex64))


def test_assign_from_another_tasks_variable(ps):
    with _on_ps():
        a = tf.Variable(np.arange(3, dtype=np.float32), name="a")
        b = tf.Variable(tf.zeros([3]), name="b")
    tf.global_variables_initializer().run()
    b.assign(a)
    b.assign_add(a)
    assert b.numpy().tolist() == [0.0, 2.0, 4.0]


# -- optimizer updates ------------------------------------------------------------------------------

OPTIMIZERS = {
    "sgd": lambda: tf.train.GradientDescentOptimizer(0.1),
    "momentum": lambda: tf.train.MomentumOptimizer(0.1, 0.9, use_nesterov=True),
    "adam": lambda: tf.train.AdamOptimizer(0.01),
    "adagrad": lambda: tf.train.AdagradOptimizer(0.1),
    "rmsprop": lambda: tf.train.RMSPropOptimizer(0.01, momentum=0.5, centered=True),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_updates_on_tasks_match_local_ones_bit_for_bit(ps, name):
    rng = np.random.default_rng(3)
    shapes = [(300, 40), (40,), (50, 8), (1000, 16)]  # the last: ~64 KiB grads, and a sparse one
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    with _on_ps():
        remote = [tf.Variable(x, name=f"r{i}") for i, x in enumerate(init)]
    opt_r = OPTIMIZERS[name]()
    with tf.Graph().as_default(), tf.device("/cpu:0"):  # its own graph: Adam's beta powers are per graph
        local = [tf.Variable(x, name=f"l{i}") for i, x in enumerate(init)]
        opt_l = OPTIMIZERS[name]()
    tf.variables_initializer(remote + local).run()
    for _step in range(3):
        grads = [rng.standard_normal(s).astype(np.float32) for s in shapes[:3]]
        idx = rng.integers(0, 1000, 64)
        idx[:4] = idx[0]  # duplicates are summed
        sparse = IndexedSlices(rng.standard_normal((64, 16)).astype(np.float32), idx, (1000, 16))
        opt_r.apply_gradients(list(zip(grads + [sparse], remote)))
        opt_l.apply_gradients(list(zip(grads + [sparse], local)))
    for r, loc in zip(remote, local):
        assert bits(r.numpy()) == bits(loc.numpy()), r.name
        for s in opt_r.get_slot_names():
            assert opt_r.get_slot(r, s).device == r.device  # slots live with their variable
            assert bits(opt_r.get_slot(r, s).numpy()) == bits(opt_l.get_slot(loc, s).numpy())


def test_one_batched_call_per_task_per_step_with_gradients_through_ray_put(ps, monkeypatch):
    import ray
    with _on_ps():
        vs = [tf.Variable(tf.zeros([256, 256]), name=f"v{i}") for i in range(6)]  # 256 KiB each
        small = [tf.Variable(tf.zeros([3]), name=f"s{i}") for i in range(4)]
    tf.global_variables_initializer().run()
    opt = tf.train.MomentumOptimizer(0.1, 0.9)
    opt.build(vs + small)
    calls = []
    real = PsTask.submit

    def spy(self, method, *args):
        calls.append((self.index, method, args))
        return real(self, method, *args)
    monkeypatch.setattr(PsTask, "submit", spy)
    opt.apply_gradients([(np.ones((256, 256), np.float32), v) for v in vs])
    applies = [(i, args) for i, m, args in calls if m == "apply"]
    assert sorted(i for i, _ in applies) == [0, 1] and len(calls) == 2  # nothing else on the tasks
    assert all(isinstance(args[-1], ray.ObjectRef) for _, args in applies)  # gradients via ray.put
    calls.clear()
    opt.apply_gradients([(np.ones(3, np.float32), v) for v in small])
    assert sorted(i for i, m, _ in calls if m == "apply") == [0, 1] and len(calls) == 2
    assert not any(isinstance(args[-1], ray.ObjectRef) for _, m, args in calls)  # a few bytes ride in the call
    assert vs[0].numpy()[0, 0] == np.float32(-0.1) and small[1].numpy()[0] == np.float32(-0.1)


def test_a_failing_update_raises_the_tasks_error(ps):
    with _on_ps(ps_tasks=1):
        v = tf.Variable(tf.zeros([10, 2]), name="v")
    v.initializer.run()
    bad = IndexedSlices(np.ones((1, 2), np.float32), np.array([12]), (10, 2))
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.train.GradientDescentOptimizer(1.0).apply_gradients([(bad, v)])
    assert v.numpy().sum() == 0.0


# -- checkpoints -----------------------------------------------------------------------------------------

def _model(ps_tasks, seed=11):
    tf.set_random_seed(seed)
    ctx = _on_ps(ps_tasks) if ps_tasks else tf.device("/cpu:0")
    with ctx:
        w = tf.Variable(tf.random_normal([40, 30], seed=1), name="layer/w")
        b = tf.Variable(tf.random_normal([30], seed=2), name="layer/b")
        e = tf.Variable(tf.random_uniform([100, 8], seed=3), name="emb")
        h = tf.Variable(tf.ones([3], "float16"), name="half")
    step = tf.train.get_or_create_global_step()
    return [w, b, e, h], step


def _train(vs, step, n=2):
    opt = tf.train.AdamOptimizer(0.01)
    rng = np.random.default_rng(0)
    for _ in range(n):
        opt.apply_gradients([(rng.standard_normal(v.shape).astype(v.dtype), v) for v in vs], global_step=step)
    return opt


def _values():
    return {v.name: bits(v.numpy()) for v in tf.global_variables()}


@pytest.mark.parametrize("sharded", [False, True])
def test_save_gathers_from_every_task(ps, tmp_path, sharded):
    vs, step = _model(2)
    tf.global_variables_initializer().run()
    _train(vs, step)
    saver = tf.train.Saver(sharded=sharded)
    path = saver.save(None, str(tmp_path / "model.ckpt"), global_step=step)
    want = _values()
    with CheckpointReader(path) as r:
        if sharded:
            shards = r.extra["shards"]
            assert [s["device"] for s in shards] == [PS0, PS1]
            assert r.names() == ["global_step"]  # the main file: what is not on a task
            files = sorted(os.listdir(tmp_path))
            assert all(s["file"] in files for s in shards)
        else:
            assert "shards" not in r.extra
            assert len(r.names()) == len(want)
    for v in vs:
        assert tf.train.load_variable(path, v.op.name).tobytes() == v.numpy().tobytes()
    for v in tf.global_variables():
        v.assign(np.zeros(v.shape, v.dtype))
    saver.restore(None, path)
    assert _values() == want


def test_async_save_snapshots_every_task_without_blocking_on_them(ps, tmp_path):
    vs, step = _model(2)
    tf.global_variables_initializer().run()
    _train(vs, step)
    want = _values()
    saver = tf.train.Saver()
    handle = saver.save(None, str(tmp_path / "model.ckpt"), global_step=step, async_save=True)
    for v in vs:  # later writes do not reach the checkpoint
        v.assign(np.zeros(v.shape, v.dtype))
    path = handle.result()
    saver.restore(None, path)
    assert _values() == want


def test_sharded_checkpoint_restores_on_other_task_counts_and_without_a_cluster(clusters, tmp_path):
    """Saved on 2 tasks; restored on 1, on 2 with another placement, with no cluster, and on 3."""
    gen = _use(clusters, 2)
    next(gen)
    try:
        vs, step = _model(2)
        tf.global_variables_initializer().run()
        opt = _train(vs, step)
        path = tf.train.Saver(sharded=True).save(None, str(tmp_path / "model.ckpt"), global_step=step)
        want = _values()
        assert len([v for v in tf.global_variables() if v.device == PS1]) > 1
        for ps_tasks in (1, 2, 0):  # 0: every variable on the local CPU
            tf.reset_default_graph()
            vs2, step2 = _model(ps_tasks, seed=99)
            tf.train.AdamOptimizer(0.01).build(vs2)  # slots exist before the restore
            assert {v.device for v in vs2} == ({CPU} if ps_tasks == 0 else {PS0} if ps_tasks == 1 else {PS0, PS1})
            tf.train.Saver().restore(None, path)
            assert _values() == want, ps_tasks
    finally:
        next(gen, None)
    del opt


def test_a_failed_restore_leaves_remote_variables_uninitialized(ps, tmp_path):
    vs, step = _model(2)
    tf.global_variables_initializer().run()
    path = tf.train.Saver(sharded=True).save(None, str(tmp_path / "model.ckpt"))
    shard = tmp_path / [f for f in os.listdir(tmp_path) if ".shard-1-of-2" in f][0]
    with CheckpointReader(shard) as r:
        offset = max(r._index.offsets)  # the last tensor's first data byte
    with open(shard, "r+b") as f:  # flip it: the checksum catches it when the task reads it
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(tf.errors.DataLossError):
        tf.train.Saver().restore(None, path)
    assert any(not v.is_initialized for v in vs if v.device == PS1)


# -- faults ------------------------------------------------------------------------------------------------

def test_a_killed_task_is_unavailable_within_seconds_and_recovers_by_one_restore(ps, tmp_path):
    vs, step = _model(2)
    tf.global_variables_initializer().run()
    opt = _train(vs, step, n=1)
    saver = tf.train.Saver()
    saver.save(None, str(tmp_path / "model.ckpt"), global_step=step)
    want = _values()
    on1 = [v for v in tf.global_variables() if v.device == PS1]
    on0 = [v for v in tf.global_variables() if v.device == PS0]
    assert on1 and on0
    before = ps.info(1)
    os.kill(before["pid"], signal.SIGKILL)
    t0 = time.monotonic()
    with pytest.raises(tf.errors.UnavailableError, match="task:1") as e:
        on1[0].numpy()
    elapsed = time.monotonic() - t0
    assert elapsed < 10.0, elapsed
    print(f"\nUnavailableError {elapsed:.2f} s after SIGKILL of ps task 1")
    assert e.value.task == "/job:ps/replica:0/task:1" and e.value.task in str(e.value)
    # Task 0 carries on. Task 1 comes back (max_restarts) without its variables: every op that
    # needs their values fails, naming the task, until they are restored; nothing hangs.
    assert bits(on0[0].numpy()) == want[on0[0].name]
    deadline = time.monotonic() + 30
    while True:
        try:
            on1[0].numpy()
        except tf.errors.UnavailableError as err:
            assert "task:1" in str(err)
        else:
            raise AssertionError("a restarted task served a value it lost")
        try:
            after = ps.info(1, timeout=5)
            break
        except tf.errors.UnavailableError:
            assert time.monotonic() < deadline
    back = time.monotonic() - t0
    assert after["pid"] != before["pid"] and after["incarnation"] != before["incarnation"]
    with pytest.raises(tf.errors.UnavailableError, match="task:1") as lost:
        opt.apply_gradients([(np.ones(v.shape, v.dtype), v) for v in vs])
    # The recovery step (docs/PS.md): restore that task's variables from the latest checkpoint.
    t1 = time.monotonic()
    saver.restore(None, tf.train.latest_checkpoint(str(tmp_path)), device=lost.value.task)
    print(f"ps task 1 answering again {back:.2f} s after SIGKILL; its variables restored in "
          f"{(time.monotonic() - t1) * 1e3:.1f} ms")
    now = _values()
    assert all(now[v.name] == want[v.name] for v in on1)
    opt.apply_gradients([(np.ones(v.shape, v.dtype), v) for v in vs])  # training goes on


def test_a_hung_task_times_out_instead_of_hanging(ps):
    with _on_ps(ps_tasks=1):
        v = tf.Variable(tf.zeros([2]), name="v")
    v.initializer.run()
    task = v.device_object.task
    pid = ps.info(0)["pid"]
    saved, task.timeout = task.timeout, 1.5
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        with pytest.raises(tf.errors.UnavailableError, match="no answer within"):
            v.numpy()
        assert time.monotonic() - t0 < 5
    finally:
        os.kill(pid, signal.SIGCONT)
        task.timeout = saved
    assert v.numpy().tolist() == [0.0, 0.0]
    # A task that stays hung is replaced by hand; its variables come back by restore or, as
    # here, by a whole-array write (an initializer).
    after = ps.restart_task(0)
    assert after["pid"] != pid
    with pytest.raises(tf.errors.UnavailableError, match="task:0"):
        v.numpy()
    v.initializer.run()
    assert v.numpy().tolist() == [0.0, 0.0]


def test_saved_on_two_tasks_restores_on_three(ps3, tmp_path):
    vs, step = _model(2)  # tasks 0 and 1 of the three
    tf.global_variables_initializer().run()
    _train(vs, step)
    path = tf.train.Saver(sharded=True).save(None, str(tmp_path / "model.ckpt"), global_step=step)
    with CheckpointReader(path) as r:
        assert [s["device"] for s in r.extra["shards"]] == [PS0, PS1]
    want = _values()
    tf.reset_default_graph()
    vs3, _ = _model(3, seed=99)
    tf.train.AdamOptimizer(0.01).build(vs3)
    assert {v.device for v in vs3} == {PS0, PS1, "/job:ps/replica:0/task:2/device:CPU:0"}
    tf.train.Saver().restore(None, path)
    assert _values() == want


def test_after_shutdown_remote_variables_are_unavailable_and_ps_specs_soft_place(clusters):
    from devices import cluster
    gen = _use(clusters, clusters.c.ps_tasks if clusters.c is not None and not clusters.c.closed else 2)
    next(gen)
    with _on_ps():
        v = tf.Variable(tf.zeros([2]), name="v")
    v.initializer.run()
    cluster.shutdown()
    next(gen, None)
    with pytest.raises(tf.errors.UnavailableError, match="shut down"):
        v.numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with _on_ps():
            w = tf.Variable(tf.zeros([2]), name="w")
    assert w.device == CPU



def test_ps_variables_save_to_and_restore_from_a_url(ps):
    """From a URL the chief reads and sends: memory:// exists in this process only."""
    pytest.importorskip("fsspec")
    import uuid
    url = f"memory://varstore-ps-{uuid.uuid4().hex[:8]}/model.ckpt"
    vs, step = _model(2)
    tf.global_variables_initializer().run()
    want = _values()
    saver = tf.train.Saver(sharded=True)
    path = saver.save(None, url, global_step=1)
    assert CheckpointReader(path).extra.get("shards") is None  # one object, no shards
    for v in vs:
        v.assign(np.zeros(v.shape, v.dtype))
    assert _values() != want
    saver.restore(None, tf.train.latest_checkpoint(url.rsplit("/", 1)[0]))
    assert _values() == want
