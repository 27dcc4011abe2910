"""replica_device_setter and GreedyLoadBalancingStrategy, with TF 1.x's own test vectors.

The cases follow TensorFlow's ``python/training/device_setter_test.py`` and
``contrib/training/python/training/device_setter_test.py``. No cluster is needed:
placement requests are compared (``requested_device``); the variables themselves
fall back to the CPU by soft placement.
"""
from __future__ import annotations

import pytest

import devices
import varstore as tf
from devices import DeviceSpec, OpDescription
from varstore.train import GreedyLoadBalancingStrategy, byte_size_load_fn, replica_device_setter

pytestmark = pytest.mark.filterwarnings("ignore::devices.PlacementWarning")

CLUSTER = {"ps": ["ps0:2222", "ps1:2222"], "worker": ["worker0:2222", "worker1:2222", "worker2:2222"]}


class ClusterSpec:
    """Stands in for tf.train.ClusterSpec: anything with as_dict()."""

    def __init__(self, d):
        self._d = d

    def as_dict(self):
        return dict(self._d)


@pytest.fixture(autouse=True)
def fresh_graph():
    tf.reset_default_graph()
    yield
    tf.reset_default_graph()


def same(expected: str, actual: str) -> None:
    """TF's assertDeviceEqual: equal once both are canonical."""
    assert DeviceSpec.from_string(actual) == DeviceSpec.from_string(expected), (expected, actual)


def op_device(kind: str = "Add") -> str:
    """Where a non-variable op created here would go (TF's ``a = v + w``)."""
    return devices.current_device(kind).to_string()


def var(value=(1, 2), **kw):
    return tf.Variable(list(value) if isinstance(value, tuple) else value, **kw)


# -- tensorflow/python/training/device_setter_test.py ----------------------------------------

def test_cpu_override():
    with tf.device(replica_device_setter(cluster=ClusterSpec(CLUSTER))):
        with tf.device("/cpu:0"):
            v = var()
        w = var((2, 1))
        with tf.device("/cpu:0"):
            a = op_device()
    same("/job:ps/task:0/cpu:0", v.requested_device)
    same("/job:ps/task:1", w.requested_device)
    same("/job:worker/cpu:0", a)


def test_resource_variable_op_goes_to_ps():
    fn = replica_device_setter(cluster=CLUSTER)
    same("/job:ps/task:0", fn(OpDescription("VarHandleOp", "v")))


@pytest.mark.parametrize("cluster", [ClusterSpec(CLUSTER), CLUSTER], ids=["ClusterSpec", "dict"])
def test_two_tasks_round_robin_from_zero(cluster):
    with tf.device(replica_device_setter(cluster=cluster)):
        v = var()
        w = var((2, 1))
        a = op_device()
    same("/job:ps/task:0", v.requested_device)
    same("/job:ps/task:1", w.requested_device)
    same("/job:worker", a)


def test_pin_variable_to_job():
    with tf.device(replica_device_setter(cluster=CLUSTER)):
        v = var()
        with tf.device("/job:moon"):
            w = var((2, 1))
            with tf.device("/job:ps"):  # an explicit ps job gets the next task
                x = var((0, 1))
        a = op_device()
    same("/job:ps/task:0", v.requested_device)
    same("/job:moon", w.requested_device)  # another job: stays there, no task taken
    same("/job:ps/task:1", x.requested_device)
    same("/job:worker", a)


def test_cpu_as_ps_device():
    with tf.device(replica_device_setter(ps_tasks=1, ps_device="/cpu:0")):
        v = var()
        with tf.device("/job:moon"):
            w = var((2, 1))
        a = op_device()
    same("/cpu:0", v.requested_device)
    same("/job:moon/cpu:0", w.requested_device)
    same("/job:worker", a)


def test_no_merging_returns_explicit_devices_unchanged():
    with tf.device(replica_device_setter(cluster=CLUSTER, merge_devices=False)):
        v = var()
        with tf.device("/job:ps"):  # no task assigned without merging
            w = var((2, 1))
        with tf.device("/gpu:1"):
            b = op_device()
        a = op_device()
    same("/job:ps/task:0", v.requested_device)
    same("/job:ps", w.requested_device)
    same("/gpu:1", b)
    same("/job:worker", a)


def test_custom_ps_and_worker_jobs():
    sky = {"sun": ["sun0:2222", "sun1:2222", "sun2:2222"], "moon": ["moon0:2222", "moon1:2222"]}
    with tf.device(replica_device_setter(ps_device="/job:moon", worker_device="/job:sun", cluster=sky)):
        v = var()
        w = var((2, 1))
        a = op_device()
    same("/job:moon/task:0", v.requested_device)
    same("/job:moon/task:1", w.requested_device)
    same("/job:sun", a)


def test_cpu_constraint_on_ps_device():
    sky = {"sun": ["sun0:2222", "sun1:2222", "sun2:2222"], "moon": ["moon0:2222", "moon1:2222"]}
    with tf.device(replica_device_setter(ps_device="/job:moon/cpu:0", worker_device="/job:sun", cluster=sky)):
        v = var()
        w = var((2, 1))
        a = op_device()
    same("/job:moon/task:0/cpu:0", v.requested_device)
    same("/job:moon/task:1/cpu:0", w.requested_device)
    same("/job:sun", a)


# -- what TF's docs promise beyond those cases --------------------------------------------------

def test_no_ps_tasks_gives_no_device_function():
    assert replica_device_setter(ps_tasks=0) is None
    assert replica_device_setter(cluster={"worker": ["w0:1"]}) is None


def test_round_robin_wraps_and_worker_device_merges_under_the_ops_own_device():
    with tf.device(replica_device_setter(ps_tasks=3, worker_device="/job:worker/task:2/gpu:0")):
        vs = [var() for _ in range(7)]
        with tf.device("/cpu:0"):
            a = op_device()
        with tf.device("/job:chief/task:0"):
            b = op_device()
    assert [DeviceSpec.from_string(v.requested_device).task for v in vs] == [0, 1, 2, 0, 1, 2, 0]
    same("/job:worker/task:2/cpu:0", a)  # the op's own device type wins, the rest is the worker's
    same("/job:chief/task:0/gpu:0", b)


def test_variables_only_go_to_ps_unless_ps_ops_says_otherwise():
    fn = replica_device_setter(ps_tasks=2, ps_ops=["Variable", "VariableV2", "MyTable"])
    same("/job:ps/task:0", fn(OpDescription("MyTable", "t")))
    same("/job:worker", fn(OpDescription("MatMul", "m")))
    same("/job:ps/task:1", fn(OpDescription("VariableV2", "v")))


def test_ops_that_change_a_variable_follow_it_not_the_setter():
    # The guide's NOTE: assign and friends run where the variable lives.
    with tf.device(replica_device_setter(ps_tasks=2)):
        v = var((1.0, 2.0))
    with tf.device("/job:worker/cpu:0"), tf.Session() as sess:
        sess.run(tf.variables_initializer([v]))
        sess.run(v.assign_add([1.0, 1.0]))  # graph mode: the op applies when run
    assert v.numpy().tolist() == [2.0, 3.0]
    same("/job:ps/task:0", v.requested_device)


def test_negative_ps_tasks_is_an_error():
    with pytest.raises(tf.errors.InvalidArgumentError):
        replica_device_setter(ps_tasks=-1)


# -- contrib's GreedyLoadBalancingStrategy tests --------------------------------------------------

def test_uniform_load_equals_round_robin():
    strategy = GreedyLoadBalancingStrategy(2, lambda op: 1)
    with tf.device(replica_device_setter(cluster=CLUSTER, ps_strategy=strategy)):
        u = tf.Variable(tf.zeros([2, 2]))
        v = tf.Variable(tf.zeros([2, 1]))
        w = tf.Variable(tf.zeros([2, 2]))
        x = tf.Variable(tf.zeros([1, 3]))
        a = op_device()
    assert [DeviceSpec.from_string(t.requested_device).task for t in (u, v, w, x)] == [0, 1, 0, 1]
    same("/job:worker", a)


def test_byte_size_load_fn():
    strategy = GreedyLoadBalancingStrategy(2, byte_size_load_fn)
    with tf.device(replica_device_setter(cluster=CLUSTER, ps_strategy=strategy)):
        u = tf.Variable(tf.zeros([2, 2]))  # 16 bytes -> 0   loads (16, 0)
        v = tf.Variable(tf.zeros([2, 1]))  # 8 bytes  -> 1   (16, 8)
        w = tf.Variable(tf.zeros([2, 2]))  # 16 bytes -> 1   (16, 24)
        x = tf.Variable(tf.zeros([1, 3]))  # 12 bytes -> 0   (28, 24)
        a = op_device()
    assert [DeviceSpec.from_string(t.requested_device).task for t in (u, v, w, x)] == [0, 1, 1, 0]
    same("/job:worker", a)


def test_byte_size_load_fn_with_scalar():
    strategy = GreedyLoadBalancingStrategy(2, byte_size_load_fn)
    with tf.device(replica_device_setter(cluster=CLUSTER, ps_strategy=strategy)):
        u = tf.Variable(0)
    same("/job:ps/task:0", u.requested_device)


def test_byte_size_load_fn_counts_dtype_and_shape():
    assert byte_size_load_fn(OpDescription("VariableV2", "v", (3, 4), "float64")) == 96
    assert byte_size_load_fn(OpDescription("VariableV2", "v", (), "bfloat16")) == 2
    with pytest.warns(UserWarning):
        assert byte_size_load_fn(OpDescription("VariableV2", "v")) == 0


def test_greedy_spreads_large_variables_evenly_where_round_robin_does_not():
    # Alternating big and small variables: round-robin puts every big one on task 0.
    sizes = [[1024, 1024], [8]] * 6 + [[512, 1024], [4]] * 2

    def loads(strategy):
        per_task = [0, 0]
        with tf.device(replica_device_setter(ps_tasks=2, ps_strategy=strategy)):
            for shape in sizes:
                v = tf.Variable(tf.zeros(shape))
                per_task[DeviceSpec.from_string(v.requested_device).task] += byte_size_load_fn(OpDescription("VariableV2", v.op.name, v.shape, v.dtype))
        return per_task

    tf.reset_default_graph()
    rr = loads(None)
    tf.reset_default_graph()
    greedy = loads(GreedyLoadBalancingStrategy(2, byte_size_load_fn))
    assert sum(rr) == sum(greedy)
    assert max(rr) / sum(rr) > 0.99  # all the big ones on one task
    largest = 1024 * 1024 * 4
    assert max(greedy) - min(greedy) <= largest  # greedy: within one variable of even
    assert max(greedy) / sum(greedy) < 0.6


def test_greedy_needs_tasks():
    with pytest.raises(tf.errors.InvalidArgumentError):
        GreedyLoadBalancingStrategy(0, byte_size_load_fn)
