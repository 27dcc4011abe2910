"""tf.train.ClusterSpec and replica_device_setter(cluster=...), as TF 1.x behaves (checked
against tensorflow-cpu 2.21's compat.v1)."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import varstore as tf

pytestmark = pytest.mark.filterwarnings("ignore::devices.PlacementWarning")

CLUSTER = {"worker": ["w0:2222", "w1:2222"], "ps": ["p0:2222"]}


@pytest.fixture(autouse=True)
def fresh_graph():
    tf.reset_default_graph()
    yield
    tf.reset_default_graph()


def test_dense_jobs():
    c = tf.train.ClusterSpec(CLUSTER)
    assert c.as_dict() == CLUSTER
    assert c.jobs == ["worker", "ps"]  # the order given
    assert c.num_tasks("worker") == 2
    assert c.task_indices("worker") == [0, 1]
    assert c.task_address("ps", 0) == "p0:2222"
    assert c.job_tasks("worker") == ["w0:2222", "w1:2222"]
    assert bool(c) and not bool(tf.train.ClusterSpec({}))


def test_sparse_jobs():
    c = tf.train.ClusterSpec({"worker": {1: "w1:2222", 3: "w3:2222"}, "ps": ["p0"]})
    assert c.as_dict() == {"worker": {1: "w1:2222", 3: "w3:2222"}, "ps": ["p0"]}
    assert c.num_tasks("worker") == 2
    assert c.task_indices("worker") == [1, 3]
    assert c.task_address("worker", 3) == "w3:2222"
    assert c.job_tasks("worker") == [None, "w1:2222", None, "w3:2222"]
    # Index keys given as strings are ints, as TF's int(i).
    assert tf.train.ClusterSpec({"w": {"1": "a"}}).as_dict() == {"w": {1: "a"}}


def test_tuples_and_empty_jobs():
    assert tf.train.ClusterSpec({"w": ("a", "b")}).as_dict() == {"w": ["a", "b"]}
    empty = tf.train.ClusterSpec({"w": []})
    assert empty.as_dict() == {"w": {}}
    assert empty.num_tasks("w") == 0


def test_lookup_errors():
    c = tf.train.ClusterSpec(CLUSTER)
    for call in (lambda: c.num_tasks("chief"), lambda: c.task_indices("chief"),
                 lambda: c.task_address("chief", 0), lambda: c.job_tasks("chief")):
        with pytest.raises(ValueError, match="No such job in cluster: 'chief'"):
            call()
    with pytest.raises(ValueError, match="No task with index 5 in job 'worker'"):
        c.task_address("worker", 5)


def test_construction_errors():
    with pytest.raises(TypeError, match="must be a dictionary mapping"):
        tf.train.ClusterSpec([1, 2])
    with pytest.raises(TypeError, match="The tasks for job 'w' must be a list or a dictionary"):
        tf.train.ClusterSpec({"w": 3})
    with pytest.raises(TypeError, match="Task address 3 must be bytes or unicode"):
        tf.train.ClusterSpec({"w": [3]})
    with pytest.raises(TypeError, match="Job name 1 must be bytes or unicode"):
        tf.train.ClusterSpec({1: ["a"]})


def test_equality_copy_repr_hash():
    c = tf.train.ClusterSpec(CLUSTER)
    same = tf.train.ClusterSpec({"ps": ["p0:2222"], "worker": ["w0:2222", "w1:2222"]})
    assert c == same and c == same
    assert c != tf.train.ClusterSpec({"ps": ["p0:2222"]})
    assert c != CLUSTER  # TF compares its {job: {index: address}} form: a dict of lists differs
    copy = tf.train.ClusterSpec(c)
    assert copy == c and copy.jobs == ["ps", "worker"]  # TF's copy goes through its sorted ClusterDef
    assert repr(c) == "ClusterSpec({'ps': ['p0:2222'], 'worker': ['w0:2222', 'w1:2222']})"
    with pytest.raises(TypeError):
        hash(c)
    assert c.as_cluster_def()["job"][0] == {"name": "ps", "tasks": {0: "p0:2222"}}


@given(st.dictionaries(st.sampled_from(["ps", "worker", "chief", "eval"]),
                       st.one_of(st.lists(st.text(min_size=1, max_size=8), max_size=5),
                                 st.dictionaries(st.integers(0, 20), st.text(min_size=1, max_size=8), max_size=5))))
def test_round_trip(cluster):
    c = tf.train.ClusterSpec(cluster)
    assert tf.train.ClusterSpec(c.as_dict()) == c
    for job, tasks in cluster.items():
        items = dict(enumerate(tasks)) if isinstance(tasks, list) else tasks
        assert c.num_tasks(job) == len(items)
        assert c.task_indices(job) == sorted(items)
        for i, address in items.items():
            assert c.task_address(job, i) == address


# -- replica_device_setter(cluster=...) ---------------------------------------------------------
def test_setter_takes_ps_tasks_from_the_cluster():
    cluster = tf.train.ClusterSpec({"ps": ["a", "b"], "worker": ["w"]})
    with tf.device(tf.train.replica_device_setter(cluster=cluster, ps_tasks=7)):  # the cluster wins
        vs = [tf.Variable(1.0) for _ in range(4)]
        x = tf.identity(vs[0])
    assert [v.requested_device for v in vs] == ["/job:ps/task:0", "/job:ps/task:1"] * 2
    del x


def test_setter_other_ps_job_name():
    with tf.device(tf.train.replica_device_setter(cluster={"param": ["a", "b", "c"], "worker": ["w"]},
                                                  ps_device="/job:param")):
        vs = [tf.Variable(1.0) for _ in range(4)]
    assert [v.requested_device for v in vs] == ["/job:param/task:0", "/job:param/task:1",
                                                "/job:param/task:2", "/job:param/task:0"]


def test_setter_without_the_ps_job_is_none():
    assert tf.train.replica_device_setter(cluster={"worker": ["a"]}) is None
    assert tf.train.replica_device_setter(cluster={"ps": ["a", "b"]}, ps_device="/job:param") is None
    assert tf.train.replica_device_setter(cluster={"ps": []}) is None


def test_setter_sparse_ps_job_counts_tasks():
    # TF counts the tasks and places round-robin from task 0, whatever their indices.
    with tf.device(tf.train.replica_device_setter(cluster={"ps": {2: "a", 5: "b"}})):
        vs = [tf.Variable(1.0) for _ in range(3)]
    assert [v.requested_device for v in vs] == ["/job:ps/task:0", "/job:ps/task:1", "/job:ps/task:0"]


def test_setter_rejects_what_is_no_cluster():
    with pytest.raises(TypeError, match="must be a dictionary mapping"):
        tf.train.replica_device_setter(cluster=[1])
