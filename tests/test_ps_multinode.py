"""The ps tier on a real multi-node Ray cluster: a head and two worker nodes built with Ray's
own ``ray.cluster_utils.Cluster`` on loopback, joined by this process as a user's driver
would join theirs (``ray.init(address=...)``), then ps tasks created on it with
``devices.cluster.start``.

One cluster serves the whole module (building it takes seconds); each node offers a
custom resource (``vs_head``, ``vs_w1``, ``vs_w2``) so that placement can be named and
checked. The test that removes a worker node runs last. Skipped without Ray.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time

import numpy as np
import pytest

import varstore as tf
from devices import manager
from varstore.checkpoint import CheckpointReader

pytestmark = pytest.mark.filterwarnings("ignore::devices.PlacementWarning")

PS = "/job:ps/replica:0/task:{}/device:CPU:0"


class Nodes:
    """The Ray cluster of this module: ``cluster`` (ray.cluster_utils.Cluster), node ids."""

    def __init__(self, cluster, head: str, w1, w2):
        self.cluster, self.head, self.w1_node, self.w2_node = cluster, head, w1, w2
        self.w1, self.w2 = w1.node_id, w2.node_id


@pytest.fixture(scope="module")
def nodes():
    # Loopback only, no usage stats, and Ray's "current cluster" file in our own temp dir (so
    # that address="auto" finds this cluster, never another one on the machine).
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # Ray's own OOM killer ends workers (our tasks) when the machine is above 95% memory,
    # whoever uses it: on a shared CI machine that is other jobs. The kernel's stays.
    monitor = "RAY_memory_monitor_refresh_ms"  # Ray's spelling (lower case) is the one it reads
    saved_monitor = os.environ.get(monitor)
    os.environ[monitor] = "0"
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    from devices import cluster
    cluster.shutdown()  # another module's local cluster, if one is current
    if ray.is_initialized():
        ray.shutdown()
    temp = tempfile.mkdtemp(prefix="vs-mn-")  # short: Ray's socket paths are limited
    saved_tmpdir = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = temp
    os.makedirs(os.path.join(temp, "ray"))
    common = dict(num_cpus=1, object_store_memory=80 << 20, node_ip_address="127.0.0.1")
    c = Cluster(initialize_head=True, head_node_args=dict(
        common, resources={"vs_head": 1}, include_dashboard=False, temp_dir=os.path.join(temp, "ray")))
    try:
        w1 = c.add_node(**common, resources={"vs_w1": 1})
        w2 = c.add_node(**common, resources={"vs_w2": 1})
        ray.init(address=c.address, logging_level="WARNING")  # the user's driver joins the cluster
        yield Nodes(c, ray.get_runtime_context().get_node_id(), w1, w2)
    finally:
        cluster.shutdown()
        ray.shutdown()
        c.shutdown()
        for name, saved in (("RAY_TMPDIR", saved_tmpdir), (monitor, saved_monitor)):
            if saved is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = saved
        shutil.rmtree(temp, ignore_errors=True)  # Ray's sockets and logs


@pytest.fixture
def ps(nodes):
    """Two ps tasks spread over the cluster (created on first use), registered for this test."""
    from devices import cluster
    c = cluster.current()
    if c is None or c.ps_tasks != 2 or c.placements != [cluster.SPREAD] * 2:
        cluster.shutdown()
        c = cluster.start(ps_tasks=2, address=nodes.cluster.address, register=False)
    c.register()
    tf.reset_default_graph()
    try:
        yield c
    finally:
        manager.register_remote(None)
        tf.reset_default_graph()


def bits(a) -> bytes:
    a = np.ascontiguousarray(a)
    return a.dtype.str.encode() + str(a.shape).encode() + a.tobytes()


def _model(where):
    """Four variables (w, e on task 0; b, h on task 1 under replica_device_setter) and a global
    step. Each task's gradients are over 256 KiB a step: large enough to take the stream."""
    with tf.device(where):
        w = tf.Variable(tf.random_normal([256, 300], seed=1), name="layer/w")
        b = tf.Variable(tf.random_normal([80000], seed=2), name="layer/b")
        e = tf.Variable(tf.random_uniform([100, 8], seed=3), name="emb")
        h = tf.Variable(tf.ones([3], "float16"), name="half")
    step = tf.train.get_or_create_global_step()
    return [w, b, e, h], step


def _train_op(vs, step):
    """TF 1.x training: gradients fed through placeholders, one Adam step per ``sess.run``.
    Returns the op and a feed_dict of fixed gradients."""
    rng = np.random.default_rng(0)
    holders = [tf.placeholder(v.dtype, v.shape) for v in vs]
    train = tf.train.AdamOptimizer(0.01).apply_gradients(zip(holders, vs), global_step=step)
    return train, {h: rng.standard_normal(v.shape).astype(v.dtype) for h, v in zip(holders, vs)}


def _values(graph=None):
    g = graph or tf.get_default_graph()
    return {v.op.name: bits(v.numpy()) for v in g.get_collection(tf.GraphKeys.GLOBAL_VARIABLES)}


# -- create and place ----------------------------------------------------------------------------

def test_start_on_a_joined_cluster_puts_one_task_on_each_worker_node(nodes, ps):
    import ray
    infos = [ps.info(i) for i in range(2)]
    # Spread: one task per node while nodes remain, the driver's own node (the head) last.
    assert {i["node_id"] for i in infos} == {nodes.w1, nodes.w2}
    assert all(i["node_address"] == "127.0.0.1" for i in infos)
    assert ps.nodes() == {0: infos[0]["node_id"], 1: infos[1]["node_id"]}
    assert ps.address == ray.get_runtime_context().gcs_address  # the cluster this process joined
    from devices import cluster
    with pytest.raises(tf.errors.FailedPreconditionError, match="already current"):
        cluster.start(ps_tasks=1, address="auto")


def test_shutdown_removes_only_the_tasks_it_created(nodes, ps):
    import ray

    from devices import cluster

    @ray.remote(num_cpus=0)
    class Other:
        def ping(self):
            return "here"

    other = Other.options(name="someone/else", namespace="varstore").remote()
    try:
        ray.get(other.ping.remote())
        cluster.shutdown()
        assert ray.is_initialized()  # the driver stays joined: it joined before varstore
        deadline = time.monotonic() + 20
        while True:  # the GCS forgets a killed actor's name shortly after
            names = {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)}
            if "ps/task:0" not in names and "ps/task:1" not in names:
                break
            assert time.monotonic() < deadline, names
            time.sleep(0.1)
        assert "someone/else" in names and ray.get(other.ping.remote()) == "here"
        assert sum(n["Alive"] for n in ray.nodes()) == 3
    finally:
        ray.kill(other)


def test_placement_by_resource_and_node_holds_across_a_restart(nodes):
    import ray

    from devices import cluster
    cluster.shutdown()
    ray.shutdown()  # from here on, start(address=...) joins the cluster itself, and shutdown leaves it
    with pytest.raises(tf.errors.InvalidArgumentError, match="vs_nowhere.*vs_w1"):
        cluster.start(ps_tasks=1, address=nodes.cluster.address, placement=["vs_nowhere"])
    assert cluster.current() is None and not ray.is_initialized()
    c = cluster.start(ps_tasks=3, address=nodes.cluster.address, register=False, placement=[
        "vs_w2",                                               # a resource label, strict
        nodes.head,                                            # a node id, strict
        cluster.Placement(resource="vs_nowhere", soft=True),   # no node has it: the least loaded
    ])
    try:
        assert [c.info(i)["node_id"] for i in range(3)] == [nodes.w2, nodes.head, nodes.w1]
        before = c.info(0)
        after = c.restart_task(0)
        assert after["pid"] != before["pid"] and after["node_id"] == nodes.w2
    finally:
        cluster.shutdown()
    assert not ray.is_initialized() and sum(n.remaining_processes_alive() for n in nodes.cluster.list_all_nodes()) == 3


# -- train, save, restore across nodes -----------------------------------------------------------------

@pytest.mark.parametrize("sharded", [False, True])
def test_training_and_checkpoints_across_nodes_match_a_local_run(nodes, ps, tmp_path, sharded):
    vs, step = _model(tf.train.replica_device_setter(ps_tasks=2))
    assert {v.device for v in vs} == {PS.format(0), PS.format(1)}
    with tf.Graph().as_default() as local_graph:  # the same program on this process's CPU
        lvs, lstep = _model("/cpu:0")
        local_train, local_feed = _train_op(lvs, lstep)
        local_init = tf.global_variables_initializer()
    train, feed = _train_op(vs, step)
    with tf.Session() as sess, tf.Session(graph=local_graph) as lsess:
        sess.run(tf.global_variables_initializer())
        lsess.run(local_init)
        for _ in range(3):
            sess.run(train, feed_dict=feed)
            lsess.run(local_train, feed_dict=local_feed)
        # Updates ran on tasks on two other nodes, the gradients sent over each task's stream
        # (not through Ray's object store): bit for bit what the local run computed.
        assert all(t._sender is not None and not t._sender.broken for t in ps.tasks)
        want = _values()
        assert want == _values(local_graph)
        saver = tf.train.Saver(sharded=sharded)
        path = saver.save(sess, str(tmp_path / "model.ckpt"), global_step=step)
        with CheckpointReader(path) as r:
            if sharded:  # each task wrote its own shard, from its own node
                assert [s["device"] for s in r.extra["shards"]] == [PS.format(0), PS.format(1)]
                assert all((tmp_path / s["file"]).exists() for s in r.extra["shards"])
            else:
                assert "shards" not in r.extra
        for v in tf.global_variables():
            sess.run(v.assign(np.zeros(v.shape, v.dtype)))
        saver.restore(sess, path)
        assert _values() == want


def test_sharded_checkpoints_in_a_directory_a_task_does_not_see_are_refused(nodes, ps, tmp_path, monkeypatch):
    # "/proc/self/cwd" is a different directory in every process: this one's is tmp_path, a
    # task's is its own. That is what a node-local path looks like from another node.
    vs, _ = _model(tf.train.replica_device_setter(ps_tasks=2))
    saver = tf.train.Saver(sharded=True)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        path = saver.save(sess, str(tmp_path / "model.ckpt"))  # a directory every task sees
        monkeypatch.chdir(tmp_path)
        with pytest.raises(tf.errors.FailedPreconditionError,
                           match=r"ps task /job:ps/replica:0/task:\d on node [0-9a-f]{12} .*does not see.*URL"):
            saver.save(sess, "/proc/self/cwd/other.ckpt")
        assert not any(f.startswith("other.ckpt") or "probe" in f for f in os.listdir(tmp_path))
        # Restoring: this process reads the main file, the tasks cannot read their shards. The
        # variables the restore had started on are left uninitialized, never half-written.
        with pytest.raises(tf.errors.NotFoundError, match=r"task:\d on node [0-9a-f]{12} .*cannot see"):
            saver.restore(sess, "/proc/self/cwd/" + os.path.basename(path))
        with pytest.raises(tf.errors.FailedPreconditionError, match="uninitialized"):
            sess.run(vs[0])


# -- lose a node, recover, continue (last: it removes a node) ---------------------------------------------

def test_losing_a_node_fails_fast_and_one_restore_recovers_every_lost_task(nodes, tmp_path):

    from devices import cluster
    cluster.shutdown()
    # Tasks 0 and 1 spread over the workers; task 2 pinned to worker 2 by its resource.
    c = cluster.start(ps_tasks=3, address=nodes.cluster.address, placement=[None, None, "vs_w2"])
    try:
        where = [c.info(i)["node_id"] for i in range(3)]
        assert {where[0], where[1]} == {nodes.w1, nodes.w2} and where[2] == nodes.w2
        lost_i, kept_i = (0, 1) if where[0] == nodes.w2 else (1, 0)  # the spread task lost with task 2
        vs, step = _model(tf.train.replica_device_setter(ps_tasks=3))
        on = {i: [v for v in vs if v.device == PS.format(i)] for i in range(3)}
        assert all(on.values())
        train, feed = _train_op(vs, step)
        saver = tf.train.Saver(sharded=True)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            sess.run(train, feed_dict=feed)
            path = saver.save(sess, str(tmp_path / "model.ckpt"), global_step=step)
            saved = _values()
            sess.run(train, feed_dict=feed)  # a step after the save: the restore rolls it back

            nodes.cluster.remove_node(nodes.w2_node)
            t0 = time.monotonic()
            with pytest.raises(tf.errors.UnavailableError) as lost:
                on[lost_i][0].numpy()
            assert time.monotonic() - t0 < 10
            err = lost.value
            assert err.task == f"/job:ps/replica:0/task:{lost_i}" and err.node == nodes.w2
            assert err.tasks == [f"/job:ps/replica:0/task:{lost_i}", "/job:ps/replica:0/task:2"]
            assert nodes.w2[:12] in str(err) and "task:2" in str(err) and "saver.restore(sess, path)" in str(err)
            with pytest.raises(tf.errors.UnavailableError, match="task:2 cannot be placed again.*'vs_w2'"):
                on[2][0].numpy()
            on[kept_i][0].numpy()  # the task on the live node carries on
            with pytest.raises(tf.errors.UnavailableError):
                sess.run(train, feed_dict=feed)

            # Task 2's placement (resource vs_w2) cannot be met any more: restore says so and
            # what to do; it changes no variable's value.
            with pytest.raises(tf.errors.UnavailableError, match=r"task:2 cannot be placed again.*'vs_w2'.*"
                                                                 r"restart_task\(n, placement=None\)"):
                saver.restore(sess, path)
            c.restart_task(2, placement=None)

            # One restore (no device): every lost task is restarted on a live node, every
            # variable restored; training goes on from the checkpoint.
            saver.restore(sess, path)
            assert _values() == saved
            now = c.nodes()
            assert now[kept_i] == nodes.w1 and {now[lost_i], now[2]} <= {nodes.head, nodes.w1}
            assert nodes.w2 not in now.values()
            sess.run(train, feed_dict=feed)
            after = _values()
            assert all(after[v.op.name] != saved[v.op.name] for v in vs)
    finally:
        cluster.shutdown()
