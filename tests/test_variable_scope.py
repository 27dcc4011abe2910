"""tf.get_variable and tf.variable_scope: names, reuse, errors and initializer precedence as in
TF 1.x (each expectation below was checked against tensorflow-cpu 2.21, compat.v1 graph mode).

Names are written as TF writes them: ``v.op.name`` is ``"scope/v"`` (the checkpoint key) and
``v.name`` is ``"scope/v:0"``.
"""
from __future__ import annotations

import numpy as np
import pytest

import devices
import varstore as tf
from varstore.errors import InvalidArgumentError


@pytest.fixture(autouse=True)
def fresh_graph():
    tf.reset_default_graph()
    yield
    tf.reset_default_graph()


def value(v) -> np.ndarray:
    with tf.Session() as sess:
        sess.run(v.initializer)
        return sess.run(v)


# -- names ----------------------------------------------------------------------------------------
def test_get_variable_is_named_by_the_variable_scope():
    with tf.variable_scope("foo"), tf.variable_scope("bar"):
        v = tf.get_variable("v", [1])
    assert v.op.name == "foo/bar/v"
    assert tf.global_variables() == [v] and tf.trainable_variables() == [v]


def test_variable_names_carry_the_output_index():
    # Depends on Variable.name becoming "<op name>:0" (TF 1.x's), with v.op.name the op's name.
    with tf.variable_scope("foo"):
        v = tf.get_variable("v", [1])
        a = tf.Variable(1.0, name="a")
    assert (v.name, a.name) == ("foo/v:0", "foo/a:0")


def test_name_scope_does_not_change_get_variable_names_but_changes_tf_variable_names():
    with tf.variable_scope("foo"), tf.name_scope("ns"):
        w = tf.get_variable("w", [1])
        x = tf.Variable(1.0, name="x")
    assert w.op.name == "foo/w"
    assert x.op.name == "foo/ns/x"


def test_variable_scope_opens_a_unique_name_scope_but_keeps_its_variable_scope_name():
    with tf.variable_scope("s") as s1:
        a = tf.Variable(1.0, name="a")
    with tf.variable_scope("s") as s2:
        b = tf.Variable(1.0, name="b")
        w = tf.get_variable("w", [1])
    assert (s1.name, s1.original_name_scope) == ("s", "s/")
    assert (s2.name, s2.original_name_scope) == ("s", "s_1/")
    assert (a.op.name, b.op.name, w.op.name) == ("s/a", "s_1/b", "s/w")


def test_reentering_by_object_keeps_variable_names_and_opens_a_new_name_scope():
    with tf.variable_scope("foo") as scope:
        v = tf.get_variable("v", [2])
    with tf.variable_scope(scope, reuse=True) as again:
        assert tf.get_variable("v", [2]) is v
        c = tf.Variable(1.0, name="c")
        with tf.variable_scope("inner") as inner:
            pass
    assert (again.name, again.original_name_scope, again.reuse) == ("foo", "foo/", True)
    assert c.op.name == "foo_1/c"  # TF: a name scope from the scope's last name component
    assert (inner.name, inner.reuse) == ("foo/inner", True)


def test_reentering_from_another_scope_jumps_to_the_saved_name():
    with tf.variable_scope("a") as a:
        pass
    with tf.variable_scope("b"), tf.variable_scope(a):
        v = tf.get_variable("v", [1])
    assert v.op.name == "a/v"


def test_default_name_is_made_unique_per_enclosing_scope():
    with tf.variable_scope(None, default_name="blk") as b1:
        v1 = tf.get_variable("w", [1])
    with tf.variable_scope(None, default_name="blk") as b2:
        v2 = tf.get_variable("w", [1])
    assert (b1.name, b1.original_name_scope, b2.name, b2.original_name_scope) == ("blk", "blk/", "blk_1", "blk_1/")
    assert (v1.op.name, v2.op.name) == ("blk/w", "blk_1/w")
    with tf.variable_scope("outer"), tf.variable_scope(None, default_name="blk") as b3:
        pass
    assert b3.name == "outer/blk"


def test_auxiliary_name_scope_false_stays_in_the_current_name_scope():
    with tf.variable_scope("s") as s:
        pass
    with tf.name_scope("ns"), tf.variable_scope(s, auxiliary_name_scope=False):
        x = tf.Variable(1.0, name="x")
        v = tf.get_variable("v", [1])
    assert (x.op.name, v.op.name) == ("ns/x", "s/v")


def test_get_variable_scope_at_the_root_and_nested():
    root = tf.get_variable_scope()
    assert (root.name, root.reuse, root.dtype) == ("", False, np.float32)
    with tf.variable_scope("a"), tf.variable_scope("b"):
        assert tf.get_variable_scope().name == "a/b"
    assert tf.get_variable_scope().name == ""


def test_a_name_taken_by_tf_variable_is_uniquified_for_get_variable():
    with tf.variable_scope("foo"):
        a = tf.Variable(1.0, name="v")
        v = tf.get_variable("v", [1])
    assert (a.op.name, v.op.name) == ("foo/v", "foo/v_1")  # TF does the same


# -- reuse --------------------------------------------------------------------------------------------
def test_reuse_true_returns_the_same_variable_with_or_without_shape():
    with tf.variable_scope("foo"):
        v = tf.get_variable("v", [2])
    with tf.variable_scope("foo", reuse=True):
        assert tf.get_variable("v", [2]) is v
        assert tf.get_variable("v") is v
    assert len(tf.global_variables()) == 1


def test_reuse_is_inherited_by_nested_scopes_and_false_does_not_turn_it_off():
    with tf.variable_scope("foo"), tf.variable_scope("bar"):
        v = tf.get_variable("v", [1])
    with tf.variable_scope("foo", reuse=True), tf.variable_scope("bar", reuse=False) as bar:
        assert bar.reuse is True
        assert tf.get_variable("v", [1]) is v


def test_auto_reuse_creates_then_returns_and_is_inherited():
    with tf.variable_scope("auto", reuse=tf.AUTO_REUSE) as scope:
        a1 = tf.get_variable("a", [1])
        a2 = tf.get_variable("a", [1])
        with tf.variable_scope("x", reuse=False) as inner:
            b1 = tf.get_variable("b", [1])
    assert a1 is a2 and scope.reuse is tf.AUTO_REUSE and inner.reuse is tf.AUTO_REUSE
    with tf.variable_scope("auto", reuse=tf.AUTO_REUSE), tf.variable_scope("x"):
        assert tf.get_variable("b", [1]) is b1


def test_the_same_function_builds_and_then_shares():
    def dense():
        return tf.get_variable("w", [3, 2]), tf.get_variable("b", [2], initializer=tf.zeros_initializer())

    with tf.variable_scope("layer"):
        first = dense()
    with tf.variable_scope("layer", reuse=True):
        second = dense()
    assert first[0] is second[0] and first[1] is second[1]


def test_reuse_variables_turns_reuse_on_for_the_rest_of_the_scope():
    with tf.variable_scope("foo") as scope:
        v = tf.get_variable("v", [1])
        scope.reuse_variables()
        assert scope.reuse is True
        assert tf.get_variable("v", [1]) is v


def test_get_variable_scope_reuse_variables():
    with tf.variable_scope("foo"):
        v = tf.get_variable("v", [1])
        tf.get_variable_scope().reuse_variables()
        assert tf.get_variable("v") is v


def test_reuse_must_be_true_false_none_or_auto():
    with pytest.raises(ValueError, match="reuse parameter must be True or False or None"):
        tf.variable_scope("s", reuse="yes")


def test_graphs_have_their_own_variables_and_scopes():
    v = tf.get_variable("v", [1])
    g = tf.Graph()
    with g.as_default():
        assert tf.get_variable_scope().name == ""
        w = tf.get_variable("v", [1])  # no clash: another graph
    assert w is not v and w.graph is g


# -- errors ---------------------------------------------------------------------------------------------
def test_creating_twice_without_reuse_is_an_error():
    with tf.variable_scope("foo"):
        tf.get_variable("v", [1])
    already = r"^Variable foo/v already exists, disallowed\. Did you mean to set reuse=True or reuse=tf\.AUTO_REUSE in"
    with tf.variable_scope("foo"), pytest.raises(ValueError, match=already + r" VarScope\?"):
        tf.get_variable("v", [1])


def test_reusing_what_does_not_exist_is_an_error():
    missing = (r"^Variable foo/nope does not exist, or was not created with tf\.get_variable\(\)\. Did you mean to "
               r"set reuse=tf\.AUTO_REUSE in VarScope\?")
    with tf.variable_scope("foo", reuse=True), pytest.raises(InvalidArgumentError, match=missing):
        tf.get_variable("nope", [1])


def test_a_tf_variable_is_not_found_by_get_variable():
    with tf.variable_scope("foo"):
        tf.Variable(1.0, name="v")
    with tf.variable_scope("foo", reuse=True), pytest.raises(ValueError, match="does not exist"):
        tf.get_variable("v")


def test_sharing_with_another_shape_or_dtype_is_an_error():
    with tf.variable_scope("foo"):
        tf.get_variable("v", [2])
    with tf.variable_scope("foo", reuse=True):
        with pytest.raises(ValueError, match=r"Trying to share variable foo/v, but specified shape \(3,\) and "
                                             r"found shape \(2,\)\."):
            tf.get_variable("v", [3])
        with pytest.raises(ValueError, match="Trying to share variable foo/v, but specified dtype int32 and "
                                             "found dtype float32"):
            tf.get_variable("v", [2], dtype=tf.int32)


def test_no_shape_and_no_initializer_is_an_error():
    with pytest.raises(ValueError, match=r"Variable noshape did not get an initializer, so its `shape` argument "
                                         r"must be specified\."):
        tf.get_variable("noshape")


def test_a_value_initializer_with_a_shape_is_an_error():
    with pytest.raises(ValueError, match=r"If initializer is a constant, do not specify shape\."):
        tf.get_variable("sh", [2], initializer=tf.constant([1.0, 2.0]))


def test_a_value_initializer_of_another_dtype_than_dtype_is_an_error():
    with pytest.raises(ValueError, match="Initializer type 'float32' and explicit dtype 'float64' don't match"):
        tf.get_variable("dt", initializer=tf.constant([1.0, 2.0]), dtype=tf.float64)


def test_complex_variables_need_an_initializer():
    with pytest.raises(ValueError, match="An initializer for variable cv of complex64 is required"):
        tf.get_variable("cv", [2], dtype=tf.complex64)


def test_reuse_without_a_name_is_an_error():
    with pytest.raises(TypeError, match="If default_name is None then name_or_scope is required"):
        tf.variable_scope(None)
    scope = tf.variable_scope(None, default_name="d", reuse=True)
    with pytest.raises(ValueError, match="reuse=True cannot be used without a name_or_scope"):
        scope.__enter__()


def test_name_or_scope_of_another_type_is_a_type_error():
    with pytest.raises(TypeError, match="must be a string or VariableScope, received int"):
        tf.variable_scope(3)


def test_a_failed_get_variable_leaves_no_variable_behind():
    with pytest.raises(ValueError):
        tf.get_variable("bad", [2], initializer=lambda shape, dtype=None: np.zeros([3], np.float32))
    assert tf.global_variables() == []
    assert tf.get_variable("bad", [2]).shape == (2,)


# -- initializers ------------------------------------------------------------------------------------
def test_default_initializer_is_glorot_uniform_for_floats():
    v = tf.get_variable("g", [200, 300])
    limit = np.sqrt(6.0 / (200 + 300))
    a = value(v)
    assert a.dtype == np.float32 and np.all(np.abs(a) <= limit) and np.abs(a).max() > 0.95 * limit


@pytest.mark.parametrize("dtype", ["int32", "int64", "uint8", "bool"])
def test_default_initializer_is_zeros_for_ints_and_bools(dtype):
    v = tf.get_variable("z", [3], dtype=dtype)
    a = value(v)
    assert a.dtype == np.dtype(dtype) and not a.any()


def test_initializer_precedence_explicit_over_scope_over_default():
    with tf.variable_scope("ini", initializer=tf.zeros_initializer()) as scope:
        q = tf.get_variable("q", [1])
        with tf.variable_scope("nested"):
            q2 = tf.get_variable("q", [1], initializer=tf.ones_initializer())
            q3 = tf.get_variable("q3", [1])
    assert isinstance(scope.initializer, tf.zeros_initializer)
    assert [value(x).tolist() for x in (q, q2, q3)] == [[0.0], [1.0], [0.0]]


def test_set_initializer_changes_the_scope_default():
    with tf.variable_scope("s") as scope:
        scope.set_initializer(tf.constant_initializer(7.0))
        v = tf.get_variable("v", [2])
    assert value(v).tolist() == [7.0, 7.0]


def test_scope_dtype_is_the_default_dtype():
    with tf.variable_scope("d", dtype=tf.float64) as scope:
        v = tf.get_variable("q", [1])
        i = tf.get_variable("i", [1], dtype=tf.int32)
    assert (scope.dtype, v.dtype, i.dtype) == (np.float64, np.float64, np.int32)


def test_initializer_may_be_the_class_or_a_function_of_shape_and_dtype():
    c = tf.get_variable("cls", [2], initializer=tf.ones_initializer)
    f = tf.get_variable("fn", [2], dtype=tf.float64,
                        initializer=lambda shape, dtype=None, partition_info=None: np.full(shape, 3.0, dtype))
    assert value(c).tolist() == [1.0, 1.0]
    assert value(f).tolist() == [3.0, 3.0] and f.dtype == np.float64


def test_initializer_may_be_a_function_of_no_arguments_when_no_shape_is_given():
    v = tf.get_variable("lam", initializer=lambda: tf.constant([1.0, 2.0]))
    assert v.shape == (2,) and value(v).tolist() == [1.0, 2.0]


@pytest.mark.parametrize("init, dtype, shape", [
    ([1, 2], np.int32, (2,)),
    ([1.0, 2.0], np.float32, (2,)),
    (np.array([1.0, 2.0]), np.float64, (2,)),
    (3.0, np.float32, ()),
])
def test_value_initializers_give_shape_and_dtype(init, dtype, shape):
    v = tf.get_variable("val", initializer=init)
    assert (v.dtype, v.shape) == (np.dtype(dtype), shape)
    np.testing.assert_array_equal(value(v), np.asarray(init, dtype))


def test_a_deferred_tensor_initializer_gives_the_shape():
    v = tf.get_variable("t", initializer=tf.zeros([2, 5], dtype=tf.int64))
    assert (v.shape, v.dtype) == ((2, 5), np.int64)


def test_seeded_initializers_are_reproducible_across_graphs():
    def draw():
        tf.reset_default_graph()
        return value(tf.get_variable("w", [4, 4], initializer=tf.glorot_uniform_initializer(seed=3)))

    np.testing.assert_array_equal(draw(), draw())


# -- other arguments ----------------------------------------------------------------------------------------
def test_trainable_and_collections():
    t = tf.get_variable("t", [1], trainable=False)
    c = tf.get_variable("c", [1], collections=["mine"])
    assert t in tf.global_variables() and t not in tf.trainable_variables()
    assert tf.get_collection("mine") == [c] and c not in tf.global_variables() and c in tf.trainable_variables()


def test_get_local_variable():
    v = tf.get_local_variable("count", [], dtype=tf.int64)
    assert v in tf.local_variables() and v not in tf.global_variables() and v not in tf.trainable_variables()


def test_regularizer_losses_are_collected_and_scope_regularizer_applies():
    def l2(v):
        return ("l2", v.op.name)

    with tf.variable_scope("r", regularizer=l2):
        tf.get_variable("a", [1])
        tf.get_variable("b", [1], regularizer=lambda v: None)  # None: nothing collected
    assert tf.get_collection(tf.GraphKeys.REGULARIZATION_LOSSES) == [("l2", "r/a")]


def test_custom_getter_sees_the_call_and_may_rename():
    seen = []

    def suffix(getter, name, *args, **kwargs):
        seen.append((name, kwargs["shape"]))
        return getter(name + "_x", *args, **kwargs)

    with tf.variable_scope("s", custom_getter=suffix):
        v = tf.get_variable("v", [2])
    assert v.op.name == "s/v_x" and seen == [("s/v", [2])]


def test_nested_custom_getters_run_outer_last():
    order = []

    def outer(getter, *args, **kwargs):
        order.append("outer")
        return getter(*args, **kwargs)

    def inner(getter, *args, **kwargs):
        order.append("inner")
        return getter(*args, **kwargs)

    with tf.variable_scope("a", custom_getter=outer), tf.variable_scope("b", custom_getter=inner):
        tf.get_variable("v", [1])
    assert order == ["inner", "outer"]


def test_variables_of_a_scope():
    with tf.variable_scope("enc") as scope:
        a = tf.get_variable("a", [1])
        b = tf.get_variable("b", [1], trainable=False)
    tf.get_variable("other", [1])
    assert scope.global_variables() == [a, b] and scope.trainable_variables() == [a]


def test_get_variable_follows_the_device_scope(placement):
    with pytest.warns(devices.PlacementWarning), tf.device("/job:ps/task:3"):
        v = tf.get_variable("v", [1])
    assert v.requested_device == "/job:ps/task:3"
