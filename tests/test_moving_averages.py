"""tf.train.ExponentialMovingAverage: shadows, names, collections and update values as TF 1.x
(checked against tensorflow-cpu 2.21's compat.v1), written the TF 1.x way."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_gpu_fake import fake_cupy  # noqa: F401 - the fake-cupy fixture, shared

import varstore as tf

pytestmark = pytest.mark.filterwarnings("ignore::devices.PlacementWarning")


@pytest.fixture(autouse=True)
def fresh_graph():
    tf.reset_default_graph()
    yield
    tf.reset_default_graph()


def test_shadows_names_and_collections():
    v = tf.Variable([1.0, 2.0], name="v")
    with tf.name_scope("sc"):
        w = tf.Variable(tf.random_normal([2]), name="w")
    ema = tf.train.ExponentialMovingAverage(0.9)
    op = ema.apply([v, w])
    assert op.name == "ExponentialMovingAverage"
    assert [x.name for x in tf.global_variables()] == [
        "v:0", "sc/w:0", "v/ExponentialMovingAverage:0", "sc/w/ExponentialMovingAverage:0"]
    assert [x.name for x in tf.trainable_variables()] == ["v:0", "sc/w:0"]  # shadows are not trainable
    assert tf.moving_average_variables() == [v, w]
    assert tf.get_collection(tf.GraphKeys.MOVING_AVERAGE_VARIABLES) == [v, w]
    assert tf.GraphKeys.MOVING_AVERAGE_VARIABLES == "moving_average_variables"
    assert ema.average_name(v) == "v/ExponentialMovingAverage"
    assert ema.average(v).name == "v/ExponentialMovingAverage:0"
    assert ema.average(tf.Variable(1.0, name="other")) is None
    assert ema.name == "ExponentialMovingAverage"


def test_shadow_starts_at_the_initial_value_and_updates_once_per_run():
    v = tf.Variable([1.0, 2.0], name="v")
    w = tf.Variable(tf.random_normal([2], seed=1), name="w")
    ema = tf.train.ExponentialMovingAverage(0.9)
    op = ema.apply([v, w])
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        assert sess.run(ema.average(v)).tolist() == [1.0, 2.0]
        rw, rwa = sess.run([w, ema.average(w)])
        assert rw.tolist() == rwa.tolist()  # the same draw as the variable's
        sess.run(v.assign([3.0, 4.0]))
        sess.run(op)
        np.testing.assert_allclose(sess.run(ema.average(v)), [1.2, 2.2], rtol=1e-6)
        sess.run(op)
        np.testing.assert_allclose(sess.run(ema.average(v)), [1.38, 2.38], rtol=1e-6)


def test_shadow_of_an_initialized_variable_takes_its_value():
    v = tf.Variable(1.0, name="v")
    with tf.Session() as sess:
        sess.run(v.initializer)
        sess.run(v.assign(5.0))
        ema = tf.train.ExponentialMovingAverage(0.9)
        ema.apply([v])
        sess.run(ema.average(v).initializer)
        assert float(sess.run(ema.average(v))) == 5.0


def test_shadow_of_an_uninitialized_variable_takes_its_initial_value_without_initializing_it():
    v = tf.Variable(1.0, name="v")
    ema = tf.train.ExponentialMovingAverage(0.9)
    ema.apply([v])
    with tf.Session() as sess:
        sess.run(ema.average(v).initializer)
        assert float(sess.run(ema.average(v))) == 1.0
        assert sess.run(tf.report_uninitialized_variables()).tolist() == [b"v"]


def test_num_updates_caps_the_decay():
    step = tf.Variable(0, name="step")
    v = tf.Variable(10.0, name="v")
    ema = tf.train.ExponentialMovingAverage(0.999, num_updates=step)
    op = ema.apply([v])
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(v.assign(0.0))
        sess.run(op)  # decay = min(0.999, 1/10)
        assert float(sess.run(ema.average(v))) == pytest.approx(1.0)


def _expected(decay, num_updates, shadow, values, dtype):
    """TF's arithmetic: decay and 1 - decay in float32, cast to the variable's dtype."""
    d = np.float32(decay)
    if num_updates is not None:
        n = np.float32(num_updates)
        d = min(d, (np.float32(1) + n) / (np.float32(10) + n))
    factor = (np.float32(1) - np.float32(d)).astype(dtype)
    s = np.asarray(shadow, dtype)
    for x in values:
        x = np.asarray(x, dtype)
        s = s - (s - x) * factor
    return s


@settings(max_examples=30, deadline=None)
@given(decay=st.floats(0.0, 1.0, width=32),
       num_updates=st.one_of(st.none(), st.integers(0, 10**6)),
       dtype=st.sampled_from(["float32", "float64", "float16"]),
       values=st.lists(st.lists(st.floats(-100, 100, width=16), min_size=3, max_size=3), min_size=1, max_size=4))
def test_updates_follow_tfs_formula(decay, num_updates, dtype, values):
    tf.reset_default_graph()
    v = tf.Variable(np.array([1.0, -2.0, 0.5], dtype), name="v")
    x = tf.placeholder(dtype, [3])
    assign = v.assign(x)
    step = tf.placeholder(tf.int64, [])
    ema = tf.train.ExponentialMovingAverage(decay, num_updates=None if num_updates is None else step)
    with tf.control_dependencies([assign]):
        op = ema.apply([v])
    feed = {} if num_updates is None else {step: num_updates}
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for val in values:
            sess.run(op, feed_dict={x: np.asarray(val, dtype), **feed})
        got = sess.run(ema.average(v))
    want = _expected(decay, num_updates, [1.0, -2.0, 0.5], values, np.dtype(dtype))
    np.testing.assert_array_equal(got, want)


def test_float16_matches_tf():
    v = tf.Variable(np.array([1.0, 2.0], np.float16), name="h")
    ema = tf.train.ExponentialMovingAverage(0.99)
    op = ema.apply([v])
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(v.assign(np.array([3.0, 7.0], np.float16)))
        sess.run(op)
        assert sess.run(ema.average(v)).tolist() == [1.01953125, 2.05078125]  # TF's values


def test_apply_again_reuses_shadows_and_names_ops_uniquely():
    v = tf.Variable(1.0, name="v")
    ema = tf.train.ExponentialMovingAverage(0.9)
    op1, op2 = ema.apply([v]), ema.apply([v])
    assert (op1.name, op2.name) == ("ExponentialMovingAverage", "ExponentialMovingAverage_1")
    assert [x.name for x in tf.global_variables()] == ["v:0", "v/ExponentialMovingAverage:0"]
    assert tf.moving_average_variables() == [v]
    with tf.name_scope("outer"):
        w = tf.Variable(1.0, name="w")
        op3 = ema.apply([w])
    assert op3.name == "outer/ExponentialMovingAverage"
    assert ema.average(w).name == "outer/w/ExponentialMovingAverage:0"


def test_apply_defaults_to_trainable_variables_and_rejects_ints():
    v = tf.Variable(1.0, name="v")
    tf.Variable(1.0, name="frozen", trainable=False)
    ema = tf.train.ExponentialMovingAverage(0.9)
    ema.apply()
    assert tf.moving_average_variables() == [v]
    tf.Variable(1, name="i")
    with pytest.raises(TypeError, match="The variables must be half, float, or double: i:0"):
        ema.apply()


def test_average_name_before_apply_and_custom_name():
    v = tf.Variable(1.0, name="v")
    assert tf.train.ExponentialMovingAverage(0.9).average_name(v) == "v/ExponentialMovingAverage"
    assert tf.train.ExponentialMovingAverage(0.9, name="foo").average_name(v) == "v/foo"


def test_variables_to_restore():
    step = tf.Variable(0, name="step")
    v = tf.Variable(1.0, name="v")
    ema = tf.train.ExponentialMovingAverage(0.9)
    ema.apply([v])
    t = tf.identity(v, name="t")
    ema.apply([t])
    got = {k: x.name for k, x in ema.variables_to_restore().items()}
    # TF's map: every trainable variable to its average's name (step is trainable here), other
    # globals to themselves.
    assert got == {"step/ExponentialMovingAverage": "step:0", "v/ExponentialMovingAverage": "v:0",
                   "t/ExponentialMovingAverage": "t/ExponentialMovingAverage:0"}
    got = {k: x.name for k, x in ema.variables_to_restore([v]).items()}
    assert got == {"v/ExponentialMovingAverage": "v:0", "step": "step:0",
                   "t/ExponentialMovingAverage": "t/ExponentialMovingAverage:0"}
    del step


def test_restore_averages_into_the_variables(tmp_path):
    v = tf.Variable(1.0, name="v")
    ema = tf.train.ExponentialMovingAverage(0.5)
    op = ema.apply([v])
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(v.assign(3.0))
        sess.run(op)  # average 2.0
        path = tf.train.Saver().save(sess, str(tmp_path / "model.ckpt"))
    tf.reset_default_graph()
    v = tf.Variable(0.0, name="v")
    saver = tf.train.Saver(tf.train.ExponentialMovingAverage(0.5).variables_to_restore())
    with tf.Session() as sess:
        saver.restore(sess, path)
        assert float(sess.run(v)) == 2.0


def test_zero_debiased_tensor_matches_tf():
    x = tf.placeholder(tf.float32, [2], name="x")
    t = tf.identity(x, name="t")
    ema = tf.train.ExponentialMovingAverage(0.8, zero_debias=True)
    op = ema.apply([t])
    assert [v.name for v in tf.global_variables()] == [
        "t/ExponentialMovingAverage:0", "t/ExponentialMovingAverage/biased:0",
        "t/ExponentialMovingAverage/local_step:0"]
    assert tf.trainable_variables() == [] and tf.moving_average_variables() == []
    want = [[1.0, 2.0], [2.1111111640930176, 0.888888955116272], [3.295081853866577, 2.573770523071289]]
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for val, expect in zip(([1.0, 2.0], [3.0, 0.0], [5.0, 5.0]), want):
            sess.run(op, feed_dict={x: val})
            np.testing.assert_allclose(sess.run(ema.average(t)), expect, rtol=1e-6)


def test_runs_after_its_control_dependencies():
    v = tf.Variable(0.0, name="v")
    ema = tf.train.ExponentialMovingAverage(0.5)
    train = v.assign_add(2.0)
    with tf.control_dependencies([train]):
        op = ema.apply([v])
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(op)
        assert float(sess.run(ema.average(v))) == 1.0  # 0 - (0 - 2) * 0.5


def test_eager_mode_updates_at_once():
    with tf.eager_mode():
        e = tf.Variable([1.0], name="e")
        ema = tf.train.ExponentialMovingAverage(0.5)
        assert ema.apply([e]) is None
        assert ema.average(e).numpy().tolist() == [1.0]
        e.assign([3.0])
        ema.apply([e])
        assert ema.average(e).numpy().tolist() == [2.0]
        with pytest.raises(TypeError, match="does not support non-Variable tensors"):
            ema.apply([tf.constant([1.0])])


def test_shadow_is_colocated_with_its_variable():
    with tf.device(tf.train.replica_device_setter(ps_tasks=3)):
        vs = [tf.Variable(1.0, name=f"v{i}") for i in range(2)]
        ema = tf.train.ExponentialMovingAverage(0.9)
        ema.apply(vs)
    for v in vs:
        assert ema.average(v).requested_device == v.requested_device


@pytest.mark.usefixtures("fake_cupy")
def test_on_a_gpu_the_shadow_lives_and_updates_there():
    with tf.device("/gpu:1"):
        v = tf.Variable([1.0, 2.0], name="g")
    ema = tf.train.ExponentialMovingAverage(0.5, num_updates=tf.train.get_or_create_global_step())
    op = ema.apply([v])
    avg = ema.average(v)
    assert avg.device == v.device and "GPU:1" in avg.device
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(v.assign([3.0, 4.0]))
        sess.run(op)  # decay = min(0.5, 1/10) = 0.1
        np.testing.assert_allclose(sess.run(avg), [2.8, 3.8], rtol=1e-6)
    assert type(avg.value()).__module__.startswith("cupy")
