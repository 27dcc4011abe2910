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
    assert (w.name, b.name, i.name, d.name) == ("layer1/weights", "layer1/biases", "layer1/inner/v",
                                                 "layer1/Variable")
    with tf.name_scope("layer1") as scope:  # a second scope of that name is made unique
        assert scope == "layer1_1/"
        assert tf.Variable(0.0, name="weights").name == "layer1_1/weights"
    with tf.name_scope("layer1/"):  # a trailing "/" re-enters the exact scope
        assert tf.Variable(0.0, name="weights").name == "layer1/weights_1"
    with tf.name_scope("layer1"), tf.name_scope(None):
        assert tf.Variable(0.0, name="top").name == "top"
    assert tf.Variable(0.0, name="weights").name == "weights"


def test_unique_names():
    names = [tf.Variable(0.0, name=n).name for n in ("weights", "weights", "weights_1", "Weights", "weights")]
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
    assert tf.Variable(0.0, name="").name == "Variable"


def test_name_scope_is_per_thread():
    got = {}
    entered, leave = threading.Event(), threading.Event()

    def other():
        entered.wait(10)
        got["other"] = tf.Variable(0.0, name="x").name
        leave.set()

    t = threading.Thread(target=other)
    t.start()
    with tf.name_scope("mine"):
        entered.set()
        leave.wait(10)
        got["mine"] = tf.Variable(0.0, name="x").name
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
    assert tf.Variable(0.0, name="v").name == "v"  # names start over in the new graph
    assert g.get_collection(tf.GraphKeys.GLOBAL_VARIABLES) == [v]


def test_graph_as_default_isolation():
    outer = tf.Variable(0.0, name="v")
    g = tf.Graph()
    with g.as_default() as entered:
        assert entered is g and tf.get_default_graph() is g
        inner = tf.Variable(0.0, name="v")
        assert inner.name == "v" and inner.graph is g
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
        assert sess.run(3) == 3 and sess.run("text") == "text" and sess.run(None) is None
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


def test_op_run_outside_a_session():
    v = tf.Variable(1.0)
    v.initializer.run()
    assert float(v.numpy()) == 1.0


def test_feed_dict_is_refused():
    v = tf.Variable(1.0)
    with tf.Session() as sess, pytest.raises(tf.errors.InvalidArgumentError, match="feed_dict"):
        sess.run(v, feed_dict={v: 2.0})


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
        sess.run(d.initializer)  # runs on_cpu's initializer first: both are logged
        sess.run(g.initializer)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 3, err
    assert "on_cpu" in lines[0] and CPU in lines[0]
    assert "dep" in lines[1] and CPU in lines[1]
    assert "on_gpu" in lines[2] and g.device in lines[2]


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
