"""Optimizers: TF 1.x names and rules, slots on the variable's device, global step, sparse
updates, and a resume from a checkpoint that continues bit for bit.

Written the TF 1.x way: the train op is built once (``train = opt.apply_gradients(...)`` over
placeholders), ``global_variables_initializer`` initializes the slots it created, and each
``sess.run(train, feed_dict=...)`` is one step. Eager mode (``tf.eager_mode()``) applies a step
when ``apply_gradients`` is called; both give the same bits."""
from __future__ import annotations

import numpy as np
import pytest

import varstore as tf
from varstore.train.kernels import reference

RNG = np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def fresh_graph():
    tf.reset_default_graph()
    yield
    tf.reset_default_graph()


def params(shapes=((4, 3), (3,)), dtype=np.float32):
    """Variables with random initial values (created in graph mode: initialized by the caller)."""
    return [tf.Variable(RNG.standard_normal(s).astype(dtype), name=f"p{i}") for i, s in enumerate(shapes)]


def build_train(opt, vs, global_step=None, grad_dtype=None):
    """TF 1.x: a placeholder per gradient, the train op built once."""
    phs = [tf.placeholder(grad_dtype or v.dtype, v.shape, name=f"grad{i}") for i, v in enumerate(vs)]
    return phs, opt.apply_gradients(zip(phs, vs), global_step=global_step)


def feed(phs, grads):
    return dict(zip(phs, grads))


OPTIMIZERS = {
    "sgd": lambda: tf.train.GradientDescentOptimizer(0.1),
    "momentum": lambda: tf.train.MomentumOptimizer(0.1, 0.9),
    "nesterov": lambda: tf.train.MomentumOptimizer(0.1, 0.9, use_nesterov=True),
    "adam": lambda: tf.train.AdamOptimizer(0.01),
    "adagrad": lambda: tf.train.AdagradOptimizer(0.1, initial_accumulator_value=0.2),
    "rmsprop": lambda: tf.train.RMSPropOptimizer(0.01, momentum=0.5),
    "rmsprop_centered": lambda: tf.train.RMSPropOptimizer(0.01, momentum=0.5, centered=True),
}


def reference_run(kind, w0, grads):
    """The float64 reference of several steps of one optimizer on one variable."""
    w = w0.astype(np.float64)
    state: dict = {}
    b1p, b2p = 0.9, 0.999
    for g in grads:
        g = g.astype(np.float64)
        if kind == "sgd":
            w = w - 0.1 * g
        elif kind in ("momentum", "nesterov"):
            acc = state.get("acc", np.zeros_like(w)) * 0.9 + g
            state["acc"] = acc
            w = w - (0.1 * g + 0.1 * 0.9 * acc if kind == "nesterov" else 0.1 * acc)
        elif kind == "adam":
            m = state.get("m", np.zeros_like(w)) * 0.9 + 0.1 * g
            v = state.get("v", np.zeros_like(w)) * 0.999 + 0.001 * g * g
            state.update(m=m, v=v)
            lr_t = 0.01 * np.sqrt(1 - b2p) / (1 - b1p)
            w = w - lr_t * m / (np.sqrt(v) + 1e-8)
            b1p, b2p = b1p * 0.9, b2p * 0.999
        elif kind == "adagrad":
            acc = state.get("acc", np.full_like(w, 0.2)) + g * g
            state["acc"] = acc
            w = w - 0.1 * g / np.sqrt(acc)
        elif kind.startswith("rmsprop"):
            ms = state.get("ms", np.ones_like(w)) * 0.9 + 0.1 * g * g
            denom = ms + 1e-10
            if kind == "rmsprop_centered":
                mg = state.get("mg", np.zeros_like(w)) * 0.9 + 0.1 * g
                state["mg"] = mg
                denom = ms - mg * mg + 1e-10
            mom = state.get("mom", np.zeros_like(w)) * 0.5 + 0.01 * g / np.sqrt(denom)
            state.update(ms=ms, mom=mom)
            w = w - mom
    return w



def graph_run(kind, w0, grads):
    """``len(grads)`` steps of one optimizer on one variable, the TF 1.x way; the variable and
    slots' final values."""
    tf.reset_default_graph()
    w = tf.Variable(w0, name="w")
    opt = OPTIMIZERS[kind]()
    (g,), train = build_train(opt, [w])
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for grad in grads:
            assert sess.run(train, feed_dict={g: grad}) is None
        return sess.run(w), [sess.run(s) for s in opt.variables()]


def eager_run(kind, w0, grads):
    """The same steps in eager mode: apply_gradients applies each at once (and returns None)."""
    with tf.eager_mode():
        w = tf.Variable(w0, name="w")
        opt = OPTIMIZERS[kind]()
        for grad in grads:
            assert opt.apply_gradients([(grad, w)]) is None
        return w.numpy(), [s.numpy() for s in opt.variables()]


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_updates_match_the_float64_reference(kind):
    w0 = RNG.standard_normal((64, 8)).astype(np.float32)
    grads = [RNG.standard_normal((64, 8)).astype(np.float32) for _ in range(5)]
    want = reference_run(kind, w0, grads)
    got, _ = graph_run(kind, w0, grads)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
    got, _ = eager_run(kind, w0, grads)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_eager_and_graph_steps_give_identical_bits(kind):
    w0 = RNG.standard_normal((16, 5)).astype(np.float32)
    grads = [RNG.standard_normal((16, 5)).astype(np.float32) for _ in range(4)]
    (gw, gslots), (ew, eslots) = graph_run(kind, w0, grads), eager_run(kind, w0, grads)
    assert gw.tobytes() == ew.tobytes()
    assert len(gslots) == len(eslots)
    for a, b in zip(gslots, eslots):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_building_the_train_op_changes_nothing_and_each_run_is_one_step():
    (w,) = params([(3,)])
    step = tf.train.get_or_create_global_step()
    opt = tf.train.MomentumOptimizer(0.5, 0.9)
    (g,), train = build_train(opt, [w], global_step=step)
    # The slots exist now (a Saver made next saves them), uninitialized until the initializer runs.
    slot = opt.get_slot(w, "momentum")
    assert slot is not None and not slot.is_initialized and not w.is_initialized
    assert slot in tf.global_variables()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        w0 = sess.run(w)
        np.testing.assert_array_equal(sess.run(slot), np.zeros(3, np.float32))
        ones = np.ones(3, np.float32)
        sess.run(train, feed_dict={g: ones})
        sess.run([train, train], feed_dict={g: ones})  # fetched twice in one run: applied once
        assert sess.run(step) == 2
        np.testing.assert_allclose(sess.run(w), w0 - 0.5 * 1 - 0.5 * 1.9, rtol=1e-6)
        with pytest.raises(tf.errors.InvalidArgumentError, match="grad0"):
            sess.run(train)  # the gradient's placeholder must be fed
        assert sess.run(step) == 2


def test_hyperparameters_may_be_fed_tensors():
    (w,) = params([(2,)])
    lr = tf.placeholder(tf.float32, [], name="lr")
    opt = tf.train.GradientDescentOptimizer(lr)
    (g,), train = build_train(opt, [w])
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        w0 = sess.run(w)
        sess.run(train, feed_dict={g: np.ones(2, np.float32), lr: 0.5})
        sess.run(train, feed_dict={g: np.ones(2, np.float32), lr: 0.25})
        np.testing.assert_allclose(sess.run(w), w0 - 0.75, rtol=1e-6)


def test_concurrent_runs_of_one_optimizer_each_use_their_own_feeds():
    """Two threads run train ops of one optimizer with different fed learning rates (TF 1.x
    allows concurrent sess.run calls). The window between a step taking its run's context
    and reading the rate is widened here; any thread switch there hits the same bug."""
    import threading
    import time
    a, b = params([(2,), (2,)])
    lr = tf.placeholder(tf.float32, [], name="lr")
    opt = tf.train.GradientDescentOptimizer(lr)
    train_a = opt.apply_gradients([(np.ones(2, np.float32), a)])
    train_b = opt.apply_gradients([(np.ones(2, np.float32), b)])
    sess = tf.Session()
    sess.run(tf.global_variables_initializer())
    a0, b0 = sess.run([a, b])
    real = opt._hyper

    def slow(*args, **kwargs):
        time.sleep(0.05)
        return real(*args, **kwargs)

    opt._hyper = slow
    errors = []

    def run(op, rate):
        try:
            sess.run(op, feed_dict={lr: rate})
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t1 = threading.Thread(target=run, args=(train_a, 1.0))
    t2 = threading.Thread(target=run, args=(train_b, 10.0))
    t1.start()
    time.sleep(0.01)
    t2.start()
    t1.join(10)
    t2.join(10)
    assert errors == []
    np.testing.assert_allclose(sess.run(a), a0 - 1.0, rtol=1e-6)
    np.testing.assert_allclose(sess.run(b), b0 - 10.0, rtol=1e-6)


def test_slot_names_are_tfs_and_slots_live_on_the_variables_device():
    with tf.device("/gpu:0"):  # the CPU here, under soft placement
        (w,) = params([(2, 2)])
    opt = tf.train.AdamOptimizer()
    with tf.device("/job:ps/task:9"):  # ignored: updates run where the variable lives
        (g,), train = build_train(opt, [w])
    assert opt.get_slot_names() == ["m", "v"]
    m, v = opt.get_slot(w, "m"), opt.get_slot(w, "v")
    assert (m.name, v.name) == ("p0/Adam:0", "p0/Adam_1:0")
    assert (m.op.name, v.op.name) == ("p0/Adam", "p0/Adam_1")
    assert m.device == w.device and m.requested_device == w.requested_device == "/device:GPU:0"
    assert not m.trainable and m in tf.global_variables() and m not in tf.trainable_variables()
    b1, b2 = opt.get_beta_powers()
    assert (b1.name, b2.name) == ("beta1_power:0", "beta2_power:0") and b1.device == w.device
    assert {x.op.name for x in opt.variables()} == {"p0/Adam", "p0/Adam_1", "beta1_power", "beta2_power"}
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        assert sess.run(b1) == pytest.approx(0.9)
        sess.run(train, feed_dict={g: np.ones((2, 2), np.float32)})
        assert sess.run(b1) == pytest.approx(0.9 ** 2) and sess.run(b2) == pytest.approx(0.999 ** 2)


def test_other_optimizers_slot_names():
    (w,) = params([(2,)])
    cases = [(tf.train.MomentumOptimizer(0.1, 0.9), {"momentum": "p0/Momentum:0"}),
             (tf.train.AdagradOptimizer(0.1), {"accumulator": "p0/Adagrad:0"}),
             (tf.train.RMSPropOptimizer(0.1, centered=True),
              {"rms": "p0/RMSProp:0", "mg": "p0/RMSProp_1:0", "momentum": "p0/RMSProp_2:0"})]
    for opt, names in cases:
        build_train(opt, [w])  # slots are made when the train op is built
        assert {s: opt.get_slot(w, s).name for s in opt.get_slot_names()} == names
    assert opt.get_slot(w, "nope") is None


def test_global_step_none_gradients_and_errors():
    a, b = params()
    step = tf.train.get_or_create_global_step()
    assert tf.train.get_or_create_global_step() is step and step.dtype == np.int64
    assert step.name == "global_step:0"
    opt = tf.train.GradientDescentOptimizer(1.0)
    ga = tf.placeholder(tf.float32, (4, 3))
    train = opt.apply_gradients([(ga, a), (None, b)], global_step=step)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        b_before = sess.run(b)
        sess.run(train, feed_dict={ga: np.ones((4, 3), np.float32)})
        sess.run(train, feed_dict={ga: np.ones((4, 3), np.float32)})
        assert sess.run(step) == 2
        np.testing.assert_array_equal(sess.run(b), b_before)
        # Errors TF raises when the op is built.
        with pytest.raises(ValueError, match="No gradients provided"):
            opt.apply_gradients([(None, a), (None, b)])
        with pytest.raises(ValueError, match=r"\(4, 3\).*\(3, 4\)"):
            opt.apply_gradients([(tf.placeholder(tf.float32, (3, 4)), a)])
        with pytest.raises(tf.errors.InvalidArgumentError):
            opt.apply_gradients([(np.ones((4, 3)), np.zeros((4, 3)))])
        # A value whose shape is only known when run fails the run, naming the variable.
        loose = tf.placeholder(tf.float32, None)
        bad = opt.apply_gradients([(loose, a)])
        a_before = sess.run(a)
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"p0.*\(3, 4\).*\(4, 3\)"):
            sess.run(bad, feed_dict={loose: np.ones((3, 4), np.float32)})
        np.testing.assert_array_equal(sess.run(a), a_before)
    with pytest.raises(NotImplementedError, match="apply_gradients"):
        opt.minimize(None)


def test_gradients_from_other_libraries_and_precisions():
    (w,) = params([(3,)])
    opt = tf.train.GradientDescentOptimizer(1.0)
    g = tf.placeholder(tf.float32, [3])
    train = opt.apply_gradients([(g, w)])
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        before = sess.run(w)
        sess.run(train, feed_dict={g: [1.0, 1.0, 1.0]})
        sess.run(train, feed_dict={g: np.ones(3, np.float64)})  # converted to the placeholder's dtype
        # Gradients given as values (not placeholders) are read by each run of the op.
        sess.run(opt.apply_gradients([(np.ones(3, np.float64), w)]))
        torch = pytest.importorskip("torch")
        sess.run(opt.apply_gradients([(torch.ones(3), w)]))
        np.testing.assert_allclose(sess.run(w), before - 4, rtol=1e-6)


def test_half_precision_variables_step_in_float32():
    (w,) = params([(16,)], dtype=np.float16)
    g = RNG.standard_normal(16).astype(np.float32)
    (gp,), train = build_train(tf.train.GradientDescentOptimizer(0.5), [w], grad_dtype=tf.float32)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        w0 = sess.run(w).astype(np.float64)
        sess.run(train, feed_dict={gp: g})
        assert w.dtype == np.float16 and sess.run(w).dtype == np.float16
        np.testing.assert_allclose(sess.run(w).astype(np.float64), w0 - 0.5 * g, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("mode", ["graph", "eager"])
@pytest.mark.parametrize("kind", ["sgd", "momentum", "adam", "adagrad", "rmsprop"])
def test_sparse_updates_touch_only_the_given_rows_and_sum_duplicates(kind, mode):
    init = RNG.standard_normal((10, 4)).astype(np.float32)
    values = RNG.standard_normal((3, 4)).astype(np.float32)
    indices = np.array([7, 2, 7])
    summed = np.zeros((10, 4), np.float32)
    np.add.at(summed, indices, values)
    sparse_opt, dense_opt = OPTIMIZERS[kind](), OPTIMIZERS[kind]()
    if mode == "eager":
        with tf.eager_mode():
            emb, dense = tf.Variable(init, name="emb"), tf.Variable(init, name="dense")
            sparse_opt.apply_gradients([(tf.train.IndexedSlices(values, indices, (10, 4)), emb)])
            dense_opt.apply_gradients([(summed, dense)])
            got, want = emb.numpy(), dense.numpy()
    else:
        emb, dense = tf.Variable(init, name="emb"), tf.Variable(init, name="dense")
        vp, ip = tf.placeholder(tf.float32, [None, 4]), tf.placeholder(tf.int64, [None])
        sparse_train = sparse_opt.apply_gradients([(tf.train.IndexedSlices(vp, ip, (10, 4)), emb)])
        (dp,), dense_train = build_train(dense_opt, [dense])
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            sess.run(sparse_train, feed_dict={vp: values, ip: indices})
            sess.run(dense_train, feed_dict={dp: summed})
            got, want = sess.run([emb, dense])
    touched = [2, 7]
    untouched = [i for i in range(10) if i not in touched]
    np.testing.assert_array_equal(got[untouched], init[untouched])
    np.testing.assert_allclose(got[touched], want[touched], rtol=1e-6, atol=1e-7)
    slot = sparse_opt.get_slot(emb, sparse_opt.get_slot_names()[0]) if sparse_opt.get_slot_names() else None
    if slot is not None:
        assert slot.shape == (10, 4)  # dense slots stay dense


def test_sparse_index_out_of_range_is_invalid_argument():
    (emb,) = params([(5, 2)])
    ip = tf.placeholder(tf.int64, [None])
    train = tf.train.GradientDescentOptimizer(0.1).apply_gradients(
        [(tf.train.IndexedSlices(np.ones((1, 2), np.float32), ip, (5, 2)), emb)])
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        with pytest.raises(tf.errors.InvalidArgumentError, match="7"):
            sess.run(train, feed_dict={ip: np.array([7])})
    with tf.eager_mode():
        e = tf.Variable(np.zeros((5, 2), np.float32), name="e")
        with pytest.raises(tf.errors.InvalidArgumentError, match="7"):
            tf.train.GradientDescentOptimizer(0.1).apply_gradients(
                [(tf.train.IndexedSlices(np.ones((1, 2), np.float32), np.array([7]), (5, 2)), e)])


def _build_resumable(kind, with_optimizer=True):
    tf.reset_default_graph()
    tf.set_random_seed(7)
    vs = [tf.Variable(tf.random_normal([8, 5]), name="w"), tf.Variable(tf.zeros([5]), name="b")]
    step = tf.train.get_or_create_global_step()
    if not with_optimizer:
        return vs, step
    opt = OPTIMIZERS[kind]()
    phs, train = build_train(opt, vs, global_step=step)
    return vs, step, phs, train


def _train(sess, steps, train, phs, vs, rng):
    for _ in range(steps):
        sess.run(train, feed_dict={p: rng.standard_normal(v.shape).astype(np.float32) for p, v in zip(phs, vs)})


@pytest.mark.parametrize("order", ["tf", "restore_before_the_optimizer"])
@pytest.mark.parametrize("kind", ["adam", "momentum", "rmsprop_centered"])
def test_resume_from_a_checkpoint_continues_bit_for_bit(tmp_path, kind, order):
    # Uninterrupted: 10 steps.
    vs, step, phs, train = _build_resumable(kind)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        _train(sess, 10, train, phs, vs, np.random.default_rng(0))
        want = sess.run(vs)

    # Interrupted after 4 steps, saved, rebuilt in a fresh graph, restored, 6 more steps.
    vs, step, phs, train = _build_resumable(kind)
    rng = np.random.default_rng(0)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        _train(sess, 4, train, phs, vs, rng)
        path = tf.train.Saver().save(sess, str(tmp_path / "model.ckpt"), global_step=step)
    state = rng.bit_generator.state
    if order == "tf":  # the whole graph (slots included), then the restore fills every variable
        vs, step, phs, train = _build_resumable(kind)
        sess = tf.Session()
        tf.train.Saver().restore(sess, path)
    else:  # restored before the optimizer exists: its slots restore when they are created
        vs, step = _build_resumable(kind, with_optimizer=False)
        sess = tf.Session()
        tf.train.Saver().restore(sess, path)
        phs, train = build_train(OPTIMIZERS[kind](), vs, global_step=step)
    assert sess.run(step) == 4
    rng = np.random.default_rng(0)
    rng.bit_generator.state = state
    _train(sess, 6, train, phs, vs, rng)
    for got, exp in zip(sess.run(vs), want):
        np.testing.assert_array_equal(got, exp)
    sess.close()


def test_import_meta_graph_rebuilds_slots_that_the_next_optimizer_reuses(tmp_path):
    (w,) = params([(3,)])
    opt = tf.train.MomentumOptimizer(0.1, 0.9)
    (g,), train = build_train(opt, [w])
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(train, feed_dict={g: np.ones(3, np.float32)})
        path = tf.train.Saver().save(sess, str(tmp_path / "m.ckpt"))
        momentum = sess.run(opt.get_slot(w, "momentum"))
    tf.reset_default_graph()
    saver = tf.train.import_meta_graph(path + ".meta")
    with tf.Session() as sess:
        saver.restore(sess, path)
        w2 = next(v for v in tf.global_variables() if v.op.name == "p0")
        opt2 = tf.train.MomentumOptimizer(0.1, 0.9)
        g2 = tf.placeholder(tf.float32, [3])
        train2 = opt2.apply_gradients([(g2, w2)])
        slot = opt2.get_slot(w2, "momentum")
        assert slot.name == "p0/Momentum:0"
        np.testing.assert_array_equal(sess.run(slot), momentum)
        assert len(tf.global_variables()) == 2
        w_before = sess.run(w2)
        sess.run(train2, feed_dict={g2: np.ones(3, np.float32)})
        np.testing.assert_allclose(sess.run(w2), w_before - 0.1 * (0.9 * momentum + 1), rtol=1e-6)


def test_reference_module_is_the_ground_truth_used_here():
    # Guard: the kernels' own reference agrees with this file's, for one Adam step.
    w = RNG.standard_normal(5)
    g = RNG.standard_normal(5)
    out = reference.apply_dense("adam", w, g, {"m": np.zeros(5), "v": np.zeros(5)},
                                lr=0.01 * np.sqrt(1 - 0.999) / (1 - 0.9), beta1=0.9, beta2=0.999, epsilon=1e-8)
    new_w = out[0] if isinstance(out, tuple) else out
    np.testing.assert_allclose(new_w, reference_run("adam", w, [g]), rtol=1e-12)
