"""Graph: collections, name scopes, unique names, default graphs. Session: run() and config."""
from __future__ import annotations

import collections
import threading
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import devices
import varstore as tf

CPU = "/device:CPU:0"


@pytest.fixture(autouse=True)
def fresh_graph():
    tf.reset_default_graph()
    yield
    tf.reset_default_graph()


# -- collections --------------------------------------------------------------------------------
def test_global_and_trainable_collections():
    a = tf.Variable(1.0, name="a")
    b = tf.Variable(2.0, name="b", trainable=False)
    c = tf.Variable(3.0, name="c", collections=["mine"])
    d = tf.Variable(4.0, name="d", collections=[tf.GraphKeys.LOCAL_VARIABLES], trainable=False)
    assert tf.global_variables() == [a, b]
    assert tf.trainable_variables() == [a, c]
    assert tf.get_collection("mine") == [c]
    assert tf.local_variables() == [d]
    assert tf.get_collection(tf.GraphKeys.GLOBAL_VARIABLES) == [a, b]
    assert tf.get_default_graph().get_collection(tf.GraphKeys.TRAINABLE_VARIABLES) == [a, c]
    # a copy: changing it changes nothing
    tf.global_variables().clear()
    assert tf.global_variables() == [a, b]
    tf.add_to_collection("mine", "x")
    assert tf.get_collection("mine") == [c, "x"]
    assert tf.get_collection("missing") == []


def test_collections_filtered_by_scope():
    with tf.name_scope("layer1"):
        w1 = tf.Variable(1.0, name="weights")
    with tf.name_scope("layer2"):
        w2 = tf.Variable(1.0, name="weights")
    assert tf.global_variables(scope="layer1") == [w1]
    assert tf.trainable_variables("layer2") == [w2]


# -- names -------------------------------------------------------------------------------------
def test_name_scopes():
    with tf.name_scope("layer1"):
        w = tf.Variable(tf.zeros([2]), name="weights")
        b = tf.Variable(tf.zeros([2]), name="biases")
        with tf.name_scope("inner") as scope:
            assert scope == "layer1/inner/"
            i = tf.Variable(0.0, name="v")
        d = tf.Variable(0.0)
    assert (w.op.name, b.op.name, i.op.name, d.op.name) == ("layer1/weights", "layer1/biases", "layer1/inner/v",
                                                             "layer1/Variable")
    assert (w.name, d.name) == ("layer1/weights:0", "layer1/Variable:0")  # TF's tensor names
    with tf.name_scope("layer1") as scope:  # a second scope of that name is made unique
        assert scope == "layer1_1/"
        assert tf.Variable(0.0, name="weights").name == "layer1_1/weights:0"
    with tf.name_scope("layer1/"):  # a trailing "/" re-enters the exact scope
        assert tf.Variable(0.0, name="weights").name == "layer1/weights_1:0"
    with tf.name_scope("layer1"), tf.name_scope(None):
        assert tf.Variable(0.0, name="top").name == "top:0"
    assert tf.Variable(0.0, name="weights").name == "weights:0"


def test_unique_names():
    names = [tf.Variable(0.0, name=n).op.name for n in ("weights", "weights", "weights_1", "Weights", "weights")]
    # TF compares case-insensitively; an explicit "weights_1" after the automatic one is suffixed again
    assert names == ["weights", "weights_1", "weights_1_1", "Weights_2", "weights_3"]
    assert len({n.lower() for n in names}) == len(names)


@given(st.lists(st.sampled_from(["w", "w_1", "W", "b", "w_2", "a/w", "w_1_1"]), min_size=1, max_size=25))
@settings(max_examples=80, deadline=None)
def test_unique_names_property(requested):
    g = tf.Graph()
    got = [g.unique_name(n) for n in requested]
    assert len({n.lower() for n in got}) == len(got)
    seen: set = set()
    for want, name in zip(requested, got):
        if want.lower() not in seen:
            assert name == want  # a name no one has used yet is kept as it is
        else:
            assert name.lower().startswith(want.lower() + "_")
        seen.add(name.lower())


@pytest.mark.parametrize("bad", ["/w", "w/", "/"])
def test_bad_names(bad):
    with pytest.raises(tf.errors.InvalidArgumentError, match="name"):
        tf.Variable(0.0, name=bad)
    assert tf.global_variables() == []


def test_empty_name_means_the_default():
    v = tf.Variable(0.0, name="")
    assert (v.op.name, v.name) == ("Variable", "Variable:0")


def test_name_scope_is_per_thread():
    got = {}
    entered, leave = threading.Event(), threading.Event()

    def other():
        entered.wait(10)
        got["other"] = tf.Variable(0.0, name="x").op.name
        leave.set()

    t = threading.Thread(target=other)
    t.start()
    with tf.name_scope("mine"):
        entered.set()
        leave.wait(10)
        got["mine"] = tf.Variable(0.0, name="x").op.name
    t.join()
    assert got == {"other": "x", "mine": "mine/x"}


# -- default graphs --------------------------------------------------------------------------------
def test_get_and_reset_default_graph():
    g = tf.get_default_graph()
    assert tf.get_default_graph() is g
    v = tf.Variable(0.0, name="v")
    assert v.graph is g
    tf.reset_default_graph()
    g2 = tf.get_default_graph()
    assert g2 is not g and tf.global_variables() == []
    assert tf.Variable(0.0, name="v").name == "v:0"  # names start over in the new graph
    assert g.get_collection(tf.GraphKeys.GLOBAL_VARIABLES) == [v]


def test_graph_as_default_isolation():
    outer = tf.Variable(0.0, name="v")
    g = tf.Graph()
    with g.as_default() as entered:
        assert entered is g and tf.get_default_graph() is g
        inner = tf.Variable(0.0, name="v")
        assert inner.name == "v:0" and inner.graph is g
        assert tf.global_variables() == [inner]
        h = tf.Graph()
        with h.as_default():
            assert tf.global_variables() == []
        assert tf.get_default_graph() is g
        with pytest.raises(AssertionError):
            tf.reset_default_graph()
        tf.global_variables_initializer().run()
    assert tf.global_variables() == [outer]
    assert inner.is_initialized and not outer.is_initialized


def test_graph_as_default_is_per_thread():
    g = tf.Graph()
    seen = {}

    def other():
        seen["graph"] = tf.get_default_graph()

    with g.as_default():
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert seen["graph"] is not g


def test_set_random_seed_is_per_graph():
    tf.set_random_seed(5)
    with tf.Graph().as_default():
        assert tf.get_default_graph().seed is None
    assert tf.get_default_graph().seed == 5


# -- Session ---------------------------------------------------------------------------------------
def test_session_context_and_default():
    assert tf.get_default_session() is None
    with tf.Session() as sess:
        assert tf.get_default_session() is sess
        v = tf.Variable([1, 2])
        assert sess.run(v.initializer) is None
        assert sess.run(v).tolist() == [1, 2]
    assert tf.get_default_session() is None
    with pytest.raises(RuntimeError, match="closed"):
        sess.run(v)
    assert v.numpy().tolist() == [1, 2]  # closing freed nothing


def test_run_fetch_kinds():
    v = tf.Variable(np.array([1.0, 2.0], np.float32), name="v")
    arr = np.arange(3)
    scalar = np.float32(2.5)
    obj = object()
    Pair = collections.namedtuple("Pair", "a b")
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        got = sess.run(v)
        assert isinstance(got, np.ndarray) and got.tolist() == [1.0, 2.0]
        got[0] = 100  # a host copy
        assert v.numpy()[0] == 1.0
        assert sess.run(arr) is arr
        assert sess.run(scalar) is scalar
        assert sess.run(3) == 3
        with pytest.raises(TypeError, match="None"):  # as TF
            sess.run(None)
        assert sess.run("v:0").tolist() == [1.0, 2.0]  # a string is a tensor's name, as in TF
        assert sess.run(obj) is obj
        nested = sess.run({"v": v, "list": [v, 1, (arr, {"deep": v})], "pair": Pair(v, 2.0)})
        assert set(nested) == {"v", "list", "pair"}
        assert nested["v"].tolist() == [1.0, 2.0]
        assert isinstance(nested["list"], list) and isinstance(nested["list"][2], tuple)
        assert nested["list"][1] == 1 and nested["list"][2][0] is arr
        assert nested["list"][2][1]["deep"].tolist() == [1.0, 2.0]
        assert isinstance(nested["pair"], Pair) and nested["pair"].b == 2.0
        assert nested["pair"].a.tolist() == [1.0, 2.0]
        assert sess.run(tf.ones([2]) * 3.0).tolist() == [3.0, 3.0]  # a deferred value is evaluated
        assert sess.run(v + 1).tolist() == [2.0, 3.0]
        assert sess.run([v.initializer, tf.is_variable_initialized(v)]) == [None, True]
        got = sess.run(tf.reduce_sum(v))  # a 0-d value is a numpy scalar, as TF gives it
        assert isinstance(got, np.float32) and got == 3.0


def test_fetch_by_an_unknown_name_is_a_value_error():
    # TF: "Fetch argument 'text' cannot be interpreted as a Tensor. (The name 'text' refers to an
    # Operation not in the graph.)" -- a ValueError, as for every fetch it cannot interpret
    with tf.Session() as sess, pytest.raises(ValueError, match="text"):
        sess.run("text")


def test_op_run_outside_a_session():
    v = tf.Variable(1.0)
    v.initializer.run()
    assert float(v.numpy()) == 1.0


def test_feeding_a_variable_is_refused():
    v = tf.Variable(1.0, name="fed")
    with tf.Session() as sess, pytest.raises(tf.errors.InvalidArgumentError, match="cannot feed the variable fed"):
        sess.run(v, feed_dict={v: 2.0})


def test_feed_dict_errors():
    x = tf.placeholder(tf.float32, [2], name="x")
    y = x * 2.0
    with tf.Session() as sess:
        with pytest.raises(tf.errors.InvalidArgumentError, match="must feed a value for placeholder tensor 'x'"):
            sess.run(y)
        with pytest.raises(ValueError, match=r"Cannot feed value of shape \(3,\) for Tensor 'x:0'"):
            sess.run(y, feed_dict={x: [1.0, 2.0, 3.0]})
        with pytest.raises(TypeError, match="feed_dict"):  # a key that is no tensor
            sess.run(y, feed_dict={object(): 1.0})
        with pytest.raises(KeyError):
            sess.run(y, feed_dict={"nothing:0": [1.0, 2.0]})
        with pytest.raises(TypeError):  # InvalidTypeError: a complex value for a float placeholder
            sess.run(y, feed_dict={x: np.array([1 + 1j, 2])})
        assert sess.run(y, feed_dict={"x:0": [1.0, 2.0]}).tolist() == [2.0, 4.0]  # by name
        # any tensor can be fed, not only placeholders: y's value replaced for this run
        assert sess.run(y + 1.0, feed_dict={y: [10.0, 20.0]}).tolist() == [11.0, 21.0]


def test_feeds_last_one_run():
    v = tf.Variable(0.0, name="acc")
    x = tf.placeholder(tf.float32, [], name="x")
    add = v.assign_add(x)
    with tf.Session() as sess:
        sess.run(v.initializer)
        for step in (1.0, 2.0, 3.0):
            sess.run(add, feed_dict={x: step})
        with pytest.raises(tf.errors.InvalidArgumentError, match="'x'"):
            sess.run(add)  # no feed: the placeholder has no value
        assert float(sess.run(v)) == 6.0


# -- graph mode: ops change nothing until run, and run once per run ----------------------------------------
def test_an_op_changes_nothing_until_run_and_each_run_applies_once():
    v = tf.Variable(0, name="counter")
    inc = v.assign_add(1)
    with tf.Session() as sess:
        sess.run(v.initializer)
        assert int(sess.run(v)) == 0
        for want in (1, 2, 3):
            assert int(sess.run(inc)) == want
        assert int(sess.run(v)) == 3


def test_an_op_runs_once_per_run_fetched_twice_or_reached_by_two_control_paths():
    v = tf.Variable(0, name="v")
    inc = v.assign_add(1)
    with tf.control_dependencies([inc]):
        left = tf.no_op(name="left")
        right = tf.identity(v, name="right")
    both = tf.group(left, right)
    with tf.Session() as sess:
        sess.run(v.initializer)
        assert [int(x) for x in sess.run([inc, inc])] == [1, 1]  # fetched twice: once
        sess.run(both)  # a diamond: inc reached through left and right, runs once
        assert int(sess.run(v)) == 2
        sess.run([both, left, inc, right])
        assert int(sess.run(v)) == 3
        sess.run(both)
        sess.run(both)  # each run applies it again
        assert int(sess.run(v)) == 5


def test_control_dependencies_order_runs_before_reads():
    v = tf.Variable(1.0, name="v")
    double = v.assign(v * 2.0)
    with tf.control_dependencies([double]):
        add = v.assign_add(1.0)  # runs after double
        with tf.control_dependencies([add]):
            read = tf.identity(v)  # reads after both
    with tf.control_dependencies(None):  # None clears the outer dependencies
        plain = tf.identity(v)
    assert plain.op.control_inputs == ()
    with tf.Session() as sess:
        sess.run(v.initializer)
        assert float(sess.run(read)) == 3.0  # (1 * 2) + 1, never (1 + 1) * 2
        assert float(sess.run(plain)) == 3.0  # runs nothing
        assert float(sess.run(read)) == 7.0


def test_group_and_no_op_run_nothing_until_run():
    a, b = tf.Variable(1, name="a"), tf.Variable(2, name="b")
    both = tf.group(a.assign_add(10), b.assign_add(20))
    nothing = tf.no_op()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        assert sess.run(nothing) is None and sess.run(both) is None
        assert [int(x) for x in sess.run([a, b])] == [11, 22]


def test_session_run_of_another_graphs_node_is_a_value_error():
    v = tf.Variable(1.0, name="v")
    inc = v.assign_add(1.0)
    sess = tf.Session()  # made for the default graph
    other = tf.Graph()
    with other.as_default():
        w = tf.Variable(2.0, name="w")
        other_sess = tf.Session()
    with pytest.raises(ValueError, match="graph"):
        sess.run(w)
    with pytest.raises(ValueError, match="graph"):
        sess.run(w.initializer)
    with pytest.raises(ValueError, match="graph"):
        other_sess.run(inc)
    # a session made before reset_default_graph still runs the old graph; a new one the new
    tf.reset_default_graph()
    with pytest.raises(ValueError, match="graph"):
        tf.Session().run(inc)
    sess.run(v.initializer)
    assert float(sess.run(inc)) == 2.0


def test_tensor_iteration_and_bool_raise_type_error_in_graph_mode():
    v = tf.Variable([1.0, 2.0], name="v")
    t = v * 2.0
    for bad in (lambda: list(t), lambda: iter(v), lambda: bool(t), lambda: np.asarray(t),
                lambda: [x for x in tf.report_uninitialized_variables()]):
        with pytest.raises(TypeError):
            bad()
    with tf.eager_mode():
        e = tf.Variable([1.0, 2.0], name="e") * 2.0
        assert [float(x) for x in e] == [2.0, 4.0]  # eager values iterate


def test_eager_mode_is_scoped_and_per_thread():
    assert not tf.executing_eagerly()
    seen = {}
    inside, done = threading.Event(), threading.Event()

    def other():
        inside.wait(10)
        seen["other"] = tf.executing_eagerly()
        with tf.eager_mode():
            seen["other_scoped"] = tf.executing_eagerly()
        done.set()

    t = threading.Thread(target=other)
    t.start()
    with tf.eager_mode():
        assert tf.executing_eagerly()
        inside.set()
        done.wait(10)
        with tf.graph_mode():
            assert not tf.executing_eagerly()
        assert tf.executing_eagerly()
    t.join()
    assert seen == {"other": False, "other_scoped": True}
    assert not tf.executing_eagerly()


def test_eager_mode_applies_at_once():
    with tf.eager_mode():
        v = tf.Variable(1.0, name="v")  # initialized when created
        assert v.is_initialized
        v.assign_add(1.0)
        tf.assign_sub(v, 0.5)
        tf.group(v.assign_add(10.0))
        assert float(v.numpy()) == 11.5
    # back in graph mode: the same call builds an op
    op = v.assign_add(1.0)
    assert float(v.numpy()) == 11.5
    tf.Session().run(op)
    assert float(v.numpy()) == 12.5


def test_config_log_device_placement(capsys, placement):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with tf.device("/gpu:0"):
            g = tf.Variable(tf.zeros([2]), name="on_gpu")
        with tf.device("/cpu:0"):
            c = tf.Variable(tf.zeros([2]), name="on_cpu")
    d = tf.Variable(c.initialized_value(), name="dep")
    config = tf.ConfigProto(allow_soft_placement=True, log_device_placement=True)
    with tf.Session(config=config) as sess:
        capsys.readouterr()
        sess.run(d.initializer)  # uses on_cpu's initial value; on_cpu itself is not initialized (TF)
        sess.run(g.initializer)
        sess.run(c.initializer)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 3, err
    assert "dep" in lines[0] and CPU in lines[0]
    assert "on_gpu" in lines[1] and g.device in lines[1]
    assert "on_cpu" in lines[2] and CPU in lines[2]


def test_no_logging_without_the_option(capsys):
    v = tf.Variable(tf.zeros([2]), name="quiet")
    with tf.Session(config=tf.ConfigProto()) as sess:
        capsys.readouterr()
        sess.run(v.initializer)
    assert capsys.readouterr().err == ""


def test_config_allow_soft_placement_false_is_strict(placement):
    if "/device:GPU:0" in devices.list_devices():
        pytest.skip("this machine has a GPU")
    tf.Session(config=tf.ConfigProto(allow_soft_placement=False))
    with tf.device("/gpu:0"), pytest.raises(tf.errors.InvalidArgumentError, match="GPU:0"):
        tf.Variable(0.0)
    tf.Session(config=tf.ConfigProto(allow_soft_placement=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with tf.device("/gpu:0"):
            assert tf.Variable(0.0).device == CPU


def test_config_fields_accepted():
    cfg = tf.ConfigProto(allow_soft_placement=True, log_device_placement=False,
                         gpu_options=tf.GPUOptions(allow_growth=True), intra_op_parallelism_threads=2)
    with tf.Session(config=cfg) as sess:
        assert sess.run(5) == 5
