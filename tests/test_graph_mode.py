"""Graph mode's tensors and ops beyond the guide: what one run computes, scatter updates, the
learning-rate schedules, and eager mode's immediate results."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import devices
import varstore as tf


@pytest.fixture(autouse=True)
def fresh_graph():
    tf.reset_default_graph()


def test_a_random_tensor_is_drawn_once_per_run():
    r = tf.random_normal([4])
    a, b = tf.Variable(r, name="a"), tf.Variable(r, name="b")
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        np.testing.assert_array_equal(sess.run(a), sess.run(b))  # one run: one draw
        first = sess.run(r)
        assert not np.array_equal(first, sess.run(r))  # each run draws again
        x, y = sess.run([r, r])
        np.testing.assert_array_equal(x, y)


def test_an_assign_fetched_twice_and_reached_by_a_group_applies_once():
    v = tf.Variable(0, name="v")
    inc = v.assign_add(1)
    both = tf.group(inc, inc)
    with tf.Session() as sess:
        sess.run(v.initializer)
        assert [int(x) for x in sess.run([inc, inc])] == [1, 1]
        sess.run([both, inc])
        assert int(sess.run(v)) == 2


def test_feeding_errors_name_the_placeholder():
    x = tf.placeholder(tf.float32, [None, 3], name="x")
    y = tf.reduce_sum(x)
    with tf.Session() as sess:
        with pytest.raises(tf.errors.InvalidArgumentError, match="'x'"):
            sess.run(y)
        with pytest.raises(ValueError, match=r"Cannot feed value of shape \(3,\)"):
            sess.run(y, feed_dict={x: np.ones(3)})
        assert float(sess.run(y, feed_dict={"x:0": np.ones((2, 3))})) == 6.0
        with pytest.raises(tf.errors.InvalidTypeError):  # a float cannot become an int exactly
            sess.run(tf.placeholder(tf.int32, [1]) + 1, feed_dict={tf.get_default_graph().get_tensor_by_name(
                "Placeholder:0"): np.array([1.5])})


@pytest.mark.filterwarnings("ignore::devices.PlacementWarning")
def test_tensors_are_computed_in_the_device_scope_they_were_made_in():
    with tf.device("/cpu:0"):
        t = tf.constant([1.0, 2.0]) * 3.0
    assert t.device == devices.get_device("/cpu:0").name
    with tf.device("/job:ps/task:9"):  # soft placement: a place this machine lacks is the CPU
        u = tf.constant([1.0]) + 1.0
    assert tf.Session().run(u).tolist() == [2.0]


@pytest.mark.parametrize("mode,expected", [("update", [10.0, 1.0, 30.0]), ("add", [21.0, 1.0, 4.0]),
                                           ("sub", [-19.0, 1.0, 2.0])])
def test_scatter_ops_touch_only_the_given_rows_and_sum_repeats(mode, expected):
    v = tf.Variable([1.0, 1.0, 3.0], name="v")
    fn = {"update": tf.scatter_update, "add": tf.scatter_add, "sub": tf.scatter_sub}[mode]
    idx, upd = ([0, 2], [10.0, 30.0]) if mode == "update" else ([0, 0, 2], [10.0, 10.0, 1.0])
    op = fn(v, idx, upd)
    with tf.Session() as sess:
        sess.run(v.initializer)
        assert float(sess.run(v)[0]) == 1.0  # built, not run
        np.testing.assert_array_equal(sess.run(op), expected)
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[0, 3\)"):
            sess.run(fn(v, [3], [1.0]))


def test_gather_add_n_and_dense_indexed_slices():
    v = tf.Variable(np.arange(12, dtype=np.float32).reshape(4, 3), name="v")
    s = tf.IndexedSlices(tf.constant([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]), tf.constant([1, 1]), dense_shape=[4, 3])
    with tf.Session() as sess:
        sess.run(v.initializer)
        np.testing.assert_array_equal(sess.run(tf.gather(v, [3, 0])), [[9, 10, 11], [0, 1, 2]])
        np.testing.assert_array_equal(sess.run(tf.add_n([v, v, 1.0])), np.arange(12).reshape(4, 3) * 2 + 1)
        dense = sess.run(tf.convert_to_tensor(s))
        np.testing.assert_array_equal(dense[1], [3, 3, 3])
        assert dense.sum() == 9


@settings(max_examples=40, deadline=None)
@given(step=st.integers(0, 50), steps=st.integers(1, 9), rate=st.floats(0.1, 0.99), staircase=st.booleans())
def test_exponential_decay_follows_tfs_formula_at_the_steps_value(step, steps, rate, staircase):
    tf.reset_default_graph()
    gs = tf.Variable(0, trainable=False, name="global_step")
    lr = tf.train.exponential_decay(0.5, gs, steps, rate, staircase=staircase)
    p = step / steps
    with tf.Session() as sess:
        sess.run(gs.initializer)
        gs.load(step)
        assert float(sess.run(lr)) == pytest.approx(0.5 * rate ** (math.floor(p) if staircase else p), rel=1e-6)


def test_a_schedule_drives_the_optimizer_as_the_train_op_advances_the_step():
    w = tf.Variable([0.0], name="w")
    gs = tf.train.get_or_create_global_step()
    lr = tf.train.piecewise_constant(gs, [1], [1.0, 0.1])
    train = tf.train.GradientDescentOptimizer(lr).apply_gradients([(tf.constant([1.0]), w)], global_step=gs)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for _ in range(3):
            sess.run(train)
        # steps at global_step 0 and 1 use 1.0, the one at 2 uses 0.1
        assert float(sess.run(w)[0]) == pytest.approx(-2.1)
        assert tf.train.global_step(sess, gs) == 3


def test_eager_results_are_eager_tensors_and_graph_results_are_symbolic():
    with tf.eager_mode():
        v = tf.Variable([1.0, 2.0], name="v")
        t = v * 2.0 + 1.0
        assert t.numpy().tolist() == [3.0, 5.0] and np.asarray(t).tolist() == [3.0, 5.0]
        assert float(tf.reduce_sum(t)) == 8.0
        with pytest.raises(RuntimeError):
            tf.placeholder(tf.float32)
    g = tf.Variable([1.0], name="g") * 2.0
    with pytest.raises(TypeError, match="symbolic"):
        np.asarray(g)
    with pytest.raises(TypeError):
        list(g)
    with pytest.raises(TypeError):
        bool(g)


def test_an_initializer_ignores_the_control_dependencies_around_its_variable():
    a = tf.Variable(0.0, name="a")
    with tf.control_dependencies([a.assign_add(1.0)]):
        b = tf.Variable(5.0, name="b")
        after = tf.identity(a)
    with tf.Session() as sess:
        sess.run(a.initializer)
        sess.run(b.initializer)
        assert float(sess.run(a)) == 0.0  # b's initializer did not run the assign
        assert float(sess.run(after)) == 1.0  # an op made inside does


def test_an_eager_loop_registers_nothing_per_step():
    """Eager ops have no names: a training loop of assigns and reads must not grow the graph."""
    with tf.eager_mode():
        v = tf.Variable([0.0, 0.0], name="v")
        g = tf.get_default_graph()
        before = len(g.__dict__.get("_ops_by_name", {}))
        for _ in range(50):
            v.assign(v.read_value() * 0.5 + 1.0)
            tf.is_variable_initialized(v)
        assert len(g.__dict__.get("_ops_by_name", {})) == before
        np.testing.assert_allclose(v.numpy(), [2.0 - 2.0 ** -49] * 2)


def test_a_tensors_op_works_as_a_control_input_and_in_a_group():
    v = tf.Variable(0, name="v")
    inc = v.assign_add(1)
    step = tf.group(inc.op)
    with tf.control_dependencies([inc.op]):
        after = tf.identity(v)
    with tf.Session() as sess:
        sess.run(v.initializer)
        assert sess.run(step) is None and int(sess.run(v)) == 1
        assert int(sess.run(after)) == 2
        assert sess.run(inc.op) is None and int(sess.run(v)) == 3


@pytest.mark.parametrize("fn,formula", [
    (tf.train.inverse_time_decay, lambda lr, r, p: lr / (1 + r * p)),
    (tf.train.natural_exp_decay, lambda lr, r, p: lr * math.exp(-r * p)),
])
@pytest.mark.parametrize("staircase", [False, True])
def test_the_other_progress_schedules_follow_tfs_formulas(fn, formula, staircase):
    gs = tf.Variable(0, trainable=False, name="global_step")
    lr = fn(0.5, gs, 3, 0.4, staircase=staircase)
    with tf.Session() as sess:
        sess.run(gs.initializer)
        for step in (0, 2, 7):
            gs.load(step)
            p = math.floor(step / 3) if staircase else step / 3
            assert float(sess.run(lr)) == pytest.approx(formula(0.5, 0.4, p), rel=1e-6)
