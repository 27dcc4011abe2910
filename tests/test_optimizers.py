"""Optimizers: TF 1.x names and rules, slots on the variable's device, global step, sparse
updates, and a resume from a checkpoint that continues bit for bit."""
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
    vs = [tf.Variable(RNG.standard_normal(s).astype(dtype), name=f"p{i}") for i, s in enumerate(shapes)]
    tf.variables_initializer(vs).run()
    return vs


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


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_updates_match_the_float64_reference(kind):
    (w,) = params([(64, 8)])
    w0 = w.numpy().copy()
    grads = [RNG.standard_normal((64, 8)).astype(np.float32) for _ in range(5)]
    opt = OPTIMIZERS[kind]()
    for g in grads:
        opt.apply_gradients([(g, w)])
    want = reference_run(kind, w0, grads)
    np.testing.assert_allclose(w.numpy(), want, rtol=2e-5, atol=2e-6)


def test_slot_names_are_tfs_and_slots_live_on_the_variables_device():
    with tf.device("/gpu:0"):  # the CPU here, under soft placement
        (w,) = params([(2, 2)])
    opt = tf.train.AdamOptimizer()
    with tf.device("/job:ps/task:9"):  # ignored: updates run where the variable lives
        opt.apply_gradients([(np.ones((2, 2), np.float32), w)])
    assert opt.get_slot_names() == ["m", "v"]
    m, v = opt.get_slot(w, "m"), opt.get_slot(w, "v")
    assert (m.name, v.name) == ("p0/Adam", "p0/Adam_1")
    assert m.device == w.device and m.requested_device == w.requested_device == "/device:GPU:0"
    assert not m.trainable and m in tf.global_variables() and m not in tf.trainable_variables()
    b1, b2 = opt.get_beta_powers()
    assert (b1.name, b2.name) == ("beta1_power", "beta2_power") and b1.device == w.device
    assert {x.name for x in opt.variables()} == {"p0/Adam", "p0/Adam_1", "beta1_power", "beta2_power"}
    assert float(b1.numpy()) == pytest.approx(0.9 ** 2)


def test_other_optimizers_slot_names():
    (w,) = params([(2,)])
    g = np.ones(2, np.float32)
    cases = [(tf.train.MomentumOptimizer(0.1, 0.9), {"momentum": "p0/Momentum"}),
             (tf.train.AdagradOptimizer(0.1), {"accumulator": "p0/Adagrad"}),
             (tf.train.RMSPropOptimizer(0.1, centered=True),
              {"rms": "p0/RMSProp", "mg": "p0/RMSProp_1", "momentum": "p0/RMSProp_2"})]
    for opt, names in cases:
        opt.apply_gradients([(g, w)])
        assert {s: opt.get_slot(w, s).name for s in opt.get_slot_names()} == names
    assert opt.get_slot(w, "nope") is None


def test_global_step_none_gradients_and_errors():
    a, b = params()
    step = tf.train.get_or_create_global_step()
    assert tf.train.get_or_create_global_step() is step and step.dtype == np.int64
    step.initializer.run()
    opt = tf.train.GradientDescentOptimizer(1.0)
    b_before = b.numpy().copy()
    opt.apply_gradients([(np.ones((4, 3), np.float32), a), (None, b)], global_step=step)
    opt.apply_gradients([(np.ones((4, 3), np.float32), a), (None, b)], global_step=step)
    assert int(step.numpy()) == 2
    np.testing.assert_array_equal(b.numpy(), b_before)
    with pytest.raises(tf.errors.InvalidArgumentError, match="no gradients"):
        opt.apply_gradients([(None, a), (None, b)])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"p0.*\(3, 4\).*\(4, 3\)"):
        opt.apply_gradients([(np.ones((3, 4), np.float32), a)])
    with pytest.raises(tf.errors.InvalidArgumentError):
        opt.apply_gradients([(np.ones((4, 3)), np.zeros((4, 3)))])
    with pytest.raises(NotImplementedError, match="apply_gradients"):
        opt.minimize(None)


def test_gradients_from_other_libraries_and_precisions():
    (w,) = params([(3,)])
    opt = tf.train.GradientDescentOptimizer(1.0)
    before = w.numpy().copy()
    opt.apply_gradients([([1.0, 1.0, 1.0], w)])
    opt.apply_gradients([(np.ones(3, np.float64), w)])
    torch = pytest.importorskip("torch")
    opt.apply_gradients([(torch.ones(3), w)])
    np.testing.assert_allclose(w.numpy(), before - 3, rtol=1e-6)


def test_half_precision_variables_step_in_float32():
    (w,) = params([(16,)], dtype=np.float16)
    w0 = w.numpy().astype(np.float64)
    g = RNG.standard_normal(16).astype(np.float32)
    tf.train.GradientDescentOptimizer(0.5).apply_gradients([(g, w)])
    assert w.dtype == np.float16
    np.testing.assert_allclose(w.numpy().astype(np.float64), w0 - 0.5 * g, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("kind", ["sgd", "momentum", "adam", "adagrad", "rmsprop"])
def test_sparse_updates_touch_only_the_given_rows_and_sum_duplicates(kind):
    (emb,) = params([(10, 4)])
    dense = params([(10, 4)])[0]
    dense.assign(emb.numpy())
    before = emb.numpy().copy()
    values = RNG.standard_normal((3, 4)).astype(np.float32)
    indices = np.array([7, 2, 7])
    sparse_opt, dense_opt = OPTIMIZERS[kind](), OPTIMIZERS[kind]()
    sparse_opt.apply_gradients([(tf.train.IndexedSlices(values, indices, (10, 4)), emb)])
    summed = np.zeros((10, 4), np.float32)
    np.add.at(summed, indices, values)
    dense_opt.apply_gradients([(summed, dense)])
    touched = [2, 7]
    untouched = [i for i in range(10) if i not in touched]
    np.testing.assert_array_equal(emb.numpy()[untouched], before[untouched])
    np.testing.assert_allclose(emb.numpy()[touched], dense.numpy()[touched], rtol=1e-6, atol=1e-7)
    slot = sparse_opt.get_slot(emb, sparse_opt.get_slot_names()[0]) if sparse_opt.get_slot_names() else None
    if slot is not None:
        assert slot.shape == (10, 4)  # dense slots stay dense


def test_sparse_index_out_of_range_is_invalid_argument():
    (emb,) = params([(5, 2)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="7"):
        tf.train.GradientDescentOptimizer(0.1).apply_gradients(
            [(tf.train.IndexedSlices(np.ones((1, 2), np.float32), np.array([7]), (5, 2)), emb)])


def _train(steps, opt, vs, step_var, rng):
    for _ in range(steps):
        grads = [rng.standard_normal(v.shape).astype(np.float32) for v in vs]
        opt.apply_gradients(zip(grads, vs), global_step=step_var)


@pytest.mark.parametrize("kind", ["adam", "momentum", "rmsprop_centered"])
def test_resume_from_a_checkpoint_continues_bit_for_bit(tmp_path, kind):
    def build():
        tf.reset_default_graph()
        tf.set_random_seed(7)
        vs = [tf.Variable(tf.random_normal([8, 5]), name="w"), tf.Variable(tf.zeros([5]), name="b")]
        return vs, tf.train.get_or_create_global_step(), OPTIMIZERS[kind]()

    # Uninterrupted: 10 steps.
    vs, step, opt = build()
    tf.global_variables_initializer().run()
    _train(10, opt, vs, step, np.random.default_rng(0))
    want = [v.numpy() for v in vs]

    # Interrupted after 4 steps, saved, rebuilt in a fresh graph, restored, 6 more steps.
    vs, step, opt = build()
    tf.global_variables_initializer().run()
    rng = np.random.default_rng(0)
    _train(4, opt, vs, step, rng)
    saver = tf.train.Saver()
    path = saver.save(None, str(tmp_path / "model.ckpt"), global_step=step)
    state = rng.bit_generator.state
    vs, step, opt = build()
    tf.train.Saver().restore(None, path)  # slots do not exist yet: they restore when created
    assert int(step.numpy()) == 4
    rng = np.random.default_rng(0)
    rng.bit_generator.state = state
    _train(6, opt, vs, step, rng)
    for got, exp in zip((v.numpy() for v in vs), want):
        np.testing.assert_array_equal(got, exp)


def test_import_meta_graph_rebuilds_slots_that_the_next_optimizer_reuses(tmp_path):
    (w,) = params([(3,)])
    opt = tf.train.MomentumOptimizer(0.1, 0.9)
    opt.apply_gradients([(np.ones(3, np.float32), w)])
    path = tf.train.Saver().save(None, str(tmp_path / "m.ckpt"))
    momentum = opt.get_slot(w, "momentum").numpy()
    tf.reset_default_graph()
    saver = tf.train.import_meta_graph(path + ".meta")
    saver.restore(None, path)
    w2 = next(v for v in tf.global_variables() if v.name == "p0")
    opt2 = tf.train.MomentumOptimizer(0.1, 0.9)
    opt2.build([w2])
    assert opt2.get_slot(w2, "momentum").name == "p0/Momentum"
    np.testing.assert_array_equal(opt2.get_slot(w2, "momentum").numpy(), momentum)
    assert len(tf.global_variables()) == 2


def test_reference_module_is_the_ground_truth_used_here():
    # Guard: the kernels' own reference agrees with this file's, for one Adam step.
    w = RNG.standard_normal(5)
    g = RNG.standard_normal(5)
    out = reference.apply_dense("adam", w, g, {"m": np.zeros(5), "v": np.zeros(5)},
                                lr=0.01 * np.sqrt(1 - 0.999) / (1 - 0.9), beta1=0.9, beta2=0.999, epsilon=1e-8)
    new_w = out[0] if isinstance(out, tuple) else out
    np.testing.assert_allclose(new_w, reference_run("adam", w, [g]), rtol=1e-12)
