"""The multi-tensor CPU step (kernels.apply_dense_many, cpu_multi) and apply_gradients on it.

What must hold: bit for bit the result of the per-tensor kernels applied in
turn (every rule, variant and dtype pairing, any count and shape, repeated
and interleaved variables, strided gradients, any thread count); the operand
table follows a variable whose array is replaced (restore, assign of another
shape, a new variable list); every argument is checked before anything is
written; a step holds all its variables' locks, and two steps over the same
variables in opposite orders do not deadlock.
"""
from __future__ import annotations

import threading
import types

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_kernels import hypers as kernel_hypers

import devices
import varstore as tf
from devices.dtypes import bfloat16
from devices.errors import FailedPreconditionError, InvalidArgumentError
from varstore.train import kernels
from varstore.train.kernels import cpu

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
CPU = devices.get_device("/cpu:0")
VARIANTS = [("sgd", {}), ("momentum", {}), ("momentum", {"use_nesterov": True}), ("adam", {}),
            ("adagrad", {}), ("rmsprop", {}), ("rmsprop", {"centered": True})]
VARIANT_IDS = ["sgd", "momentum", "nesterov", "adam", "adagrad", "rmsprop", "centered_rmsprop"]
# (var, grad, slots) dtypes: what apply_dense accepts. A half var's slots are its dtype when an
# optimizer makes them and its gradient float32 when the user's code computes in float32.
PAIRINGS = [(F32, F32, F32), (F64, F64, F64), (F16, F16, F16), (bfloat16, bfloat16, bfloat16),
            (F16, F32, F16), (bfloat16, F32, bfloat16), (F16, F32, F32), (bfloat16, bfloat16, F32)]
SETTINGS = settings(max_examples=12, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True)
def _one_thread():
    saved = cpu.get_threads()
    cpu.set_threads(1)
    yield
    cpu.set_threads(saved)


@pytest.fixture
def fresh_graph():
    tf.reset_default_graph()
    yield
    tf.reset_default_graph()


def hypers(rule: str, flags: dict, rng: np.random.Generator) -> dict:
    return kernel_hypers(rule, flags, rng, lr_exponents=(-3, -1))


def operands(rule, flags, shapes, pairing, rng, strided=()):
    """values, grads, slots (name -> list) with valid contents; grads[i] for i in ``strided``
    are non-contiguous views."""
    vdt, gdt, sdt = pairing
    keys = kernels.slot_names(rule, centered=flags.get("centered", False))
    values = [np.asarray(rng.normal(size=s)).astype(vdt) for s in shapes]
    grads = []
    for i, s in enumerate(shapes):
        if i in strided:
            g = np.asarray(rng.normal(size=(*s, 2))).astype(gdt)[..., 0]  # every other element
        else:
            g = np.asarray(rng.normal(size=s)).astype(gdt)
        grads.append(g)
    slots = {}
    for k in keys:
        slots[k] = [np.asarray(np.abs(rng.normal(size=s)) + 0.5).astype(sdt) for s in shapes]
    if "mg" in slots:  # centered: rms >= mg**2 keeps the denominator real
        slots["mg"] = [np.asarray(rng.uniform(-0.5, 0.5, size=s)).astype(sdt) for s in shapes]
    return values, grads, slots


def copies(values, slots):
    return [v.copy() for v in values], {k: [a.copy() for a in s] for k, s in slots.items()}


def per_tensor(rule, values, grads, slots, hyper):
    """The reference: the per-tensor kernel on each variable in turn."""
    for i, (v, g) in enumerate(zip(values, grads)):
        cpu.dense_update(rule, v, g, {k: s[i] for k, s in slots.items()}, hyper)


def assert_same_bits(a_values, a_slots, b_values, b_slots):
    for x, y in zip(a_values, b_values):
        assert x.tobytes() == y.tobytes()
    for k in a_slots:
        for x, y in zip(a_slots[k], b_slots[k]):
            assert x.tobytes() == y.tobytes(), k


shape_st = st.one_of(st.lists(st.integers(0, 7), max_size=3).map(tuple),
                     st.sampled_from([(1000,), (33000,), (3, 11000)]))  # 33,000: more than a half block


@pytest.mark.parametrize("rule,flags", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("pairing", PAIRINGS[:4], ids=["float32", "float64", "float16", "bfloat16"])
@SETTINGS
@given(shapes=st.lists(shape_st, min_size=0, max_size=7), seed=st.integers(0, 2 ** 32 - 1),
       steps=st.integers(1, 3), data=st.data())
def test_bit_identical_to_the_per_tensor_kernels(rule, flags, pairing, shapes, seed, steps, data):
    rng = np.random.default_rng(seed)
    strided = set(data.draw(st.sets(st.integers(0, max(len(shapes) - 1, 0))))) if shapes else set()
    values, grads, slots = operands(rule, flags, shapes, pairing, rng, strided)
    ref_values, ref_slots = copies(values, slots)
    cache: dict = {}
    for _ in range(steps):  # later steps reuse the operand table
        h = hypers(rule, flags, rng)
        kernels.apply_dense_many(rule, CPU, values, grads, slots, h, cache)
        per_tensor(rule, ref_values, grads, ref_slots, h)
        assert_same_bits(values, slots, ref_values, ref_slots)


@pytest.mark.parametrize("pairing", PAIRINGS[4:], ids=["f16-f32grad", "bf16-f32grad", "f16-f32grad-f32slots",
                                                       "bf16-f32slots"])
# Two rules are enough here (the pairing is handled per operand, the same for every rule);
# each (rule, pairing) is one more compiled specialization, ~1 s on a cold numba cache.
@pytest.mark.parametrize("rule,flags", [VARIANTS[3], VARIANTS[6]], ids=["adam", "centered"])
def test_half_variables_with_float32_gradients_or_slots(rule, flags, pairing):
    rng = np.random.default_rng(5)
    shapes = [(3, 5), (), (33000,), (0,), (17,)]
    values, grads, slots = operands(rule, flags, shapes, pairing, rng)
    ref_values, ref_slots = copies(values, slots)
    cache: dict = {}
    for _ in range(2):
        h = hypers(rule, flags, rng)
        kernels.apply_dense_many(rule, CPU, values, grads, slots, h, cache)
        per_tensor(rule, ref_values, grads, ref_slots, h)
    assert_same_bits(values, slots, ref_values, ref_slots)


@SETTINGS
@given(order=st.lists(st.integers(0, 3), min_size=1, max_size=10), seed=st.integers(0, 2 ** 32 - 1))
def test_mixed_dtypes_and_repeated_variables_keep_the_given_order(order, seed):
    # Four variables of three dtype groups, each possibly several times, in any order: a loop
    # of per-tensor updates in that order is the reference (Adam's update does not commute).
    rng = np.random.default_rng(seed)
    base = [np.asarray(rng.normal(size=5)).astype(dt) for dt in (F32, F64, F16, F32)]
    base_slots = {k: [np.abs(b).astype(b.dtype) + b.dtype.type(1) for b in base] for k in ("m", "v")}
    values = [base[i] for i in order]
    grads = [np.asarray(rng.normal(size=5)).astype(base[i].dtype) for i in order]
    slots = {k: [s[i] for i in order] for k, s in base_slots.items()}
    ref_base, ref_base_slots = copies(base, base_slots)
    h = hypers("adam", {}, rng)
    kernels.apply_dense_many("adam", CPU, values, grads, slots, h, {})
    per_tensor("adam", [ref_base[i] for i in order], grads, {k: [s[i] for i in order] for k, s in ref_base_slots.items()}, h)
    assert_same_bits(base, base_slots, ref_base, ref_base_slots)


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("dtype", [F32, F16], ids=["float32", "float16"])
def test_threads_split_big_variables_with_the_same_bits(threads, dtype, monkeypatch):
    monkeypatch.setattr(cpu, "MIN_PER_THREAD", 512)  # "big" from 1,024 elements
    rng = np.random.default_rng(3)
    shapes = [(7,), (3000,), (5,), (1500, 2), (1023,), (1024,)]
    values, grads, slots = operands("adam", {}, shapes, (dtype, dtype, dtype), rng)
    ref_values, ref_slots = copies(values, slots)
    h = hypers("adam", {}, rng)
    cpu.set_threads(threads)
    kernels.apply_dense_many("adam", CPU, values, grads, slots, h, {})
    cpu.set_threads(1)
    per_tensor("adam", ref_values, grads, ref_slots, h)
    assert_same_bits(values, slots, ref_values, ref_slots)


def test_every_argument_is_checked_before_anything_is_written():
    rng = np.random.default_rng(0)
    values, grads, slots = operands("adam", {}, [(3,), (4,), (2, 2)], (F32, F32, F32), rng)
    before = copies(values, slots)
    h = {"lr": 0.1, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}
    cases = [
        (values, grads[:2] + [np.ones(4, F32)], slots, "grad has shape \\(4,\\), expected \\(2, 2\\)"),
        (values, grads[:2] + [np.ones((2, 2), F64)], slots, "grad has dtype float64, var has float32"),
        (values, grads, {"m": slots["m"], "v": slots["v"][:2] + [np.ones(4, F32)]}, "slot v has shape"),
        (values, grads, {"m": slots["m"]}, "missing slot"),
        (values[:2] + [values[2].T], grads, slots, "var must be C-contiguous"),
        (values, grads[:2], slots, "2 gradients for 3 variables"),
    ]
    for vals, gs, ss, message in cases:
        with pytest.raises(InvalidArgumentError, match=message):
            kernels.apply_dense_many("adam", CPU, vals, gs, ss, h, {})
        assert_same_bits(values, slots, *before)
    read_only = values[1].copy()
    read_only.flags.writeable = False
    with pytest.raises(InvalidArgumentError, match="var is read-only"):
        kernels.apply_dense_many("adam", CPU, [values[0], read_only, values[2]], grads, slots, h, {})
    assert_same_bits(values, slots, *before)


def test_a_cached_table_still_checks_each_steps_gradients():
    rng = np.random.default_rng(1)
    values, grads, slots = operands("sgd", {}, [(3,), (4,)], (F32, F32, F32), rng)
    cache: dict = {}
    kernels.apply_dense_many("sgd", CPU, values, grads, slots, {"lr": 0.1}, cache)
    before = [v.copy() for v in values]
    with pytest.raises(InvalidArgumentError, match="grad has shape"):
        kernels.apply_dense_many("sgd", CPU, values, [grads[0], np.ones(5, F32)], slots, {"lr": 0.1}, cache)
    with pytest.raises(InvalidArgumentError, match="must be a numpy array"):
        kernels.apply_dense_many("sgd", CPU, values, [grads[0], [1.0] * 4], slots, {"lr": 0.1}, cache)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(values, before))
    # Another gradient dtype is another dtype group: accepted only where the per-tensor path accepts it.
    h16 = [v.astype(F16) for v in values]
    kernels.apply_dense_many("sgd", CPU, h16, [g.astype(F16) for g in grads], {}, {"lr": 0.1}, cache)
    ref = [v.copy() for v in h16]
    kernels.apply_dense_many("sgd", CPU, h16, grads, {}, {"lr": 0.1}, cache)  # float32 grads now
    per_tensor("sgd", ref, grads, {}, {"lr": 0.1})
    assert all(a.tobytes() == b.tobytes() for a, b in zip(h16, ref))


def test_a_replaced_array_is_updated_and_the_old_one_left_alone():
    rng = np.random.default_rng(2)
    values, grads, slots = operands("momentum", {}, [(3,), (4,)], (F32, F32, F32), rng)
    cache: dict = {}
    h = {"lr": 0.1, "momentum": 0.9}
    kernels.apply_dense_many("momentum", CPU, values, grads, slots, h, cache)
    old, old_slot = values[1], slots["momentum"][1]
    old_bits, old_slot_bits = old.tobytes(), old_slot.tobytes()
    values = [values[0], old.copy()]  # a restore that adopts a new array, for the var and its slot
    slots = {"momentum": [slots["momentum"][0], old_slot.copy()]}
    ref_values, ref_slots = copies(values, slots)
    kernels.apply_dense_many("momentum", CPU, values, grads, slots, h, cache)
    per_tensor("momentum", ref_values, grads, ref_slots, h)
    assert_same_bits(values, slots, ref_values, ref_slots)
    assert old.tobytes() == old_bits and old_slot.tobytes() == old_slot_bits


def test_other_backends_get_their_group_kernel_or_a_loop(monkeypatch):
    calls = []
    loop = types.SimpleNamespace(apply_dense=lambda rule, var, grad, slots, **h: calls.append(("one", var, slots)))
    monkeypatch.setattr(kernels, "_backend", lambda device: loop)
    dev = types.SimpleNamespace(kind="gpu")
    kernels.apply_dense_many("momentum", dev, ["a", "b"], ["ga", "gb"], {"momentum": ["ma", "mb"]}, {"lr": 1.0})
    assert calls == [("one", "a", {"momentum": "ma"}), ("one", "b", {"momentum": "mb"})]
    group = types.SimpleNamespace(apply_dense_many=lambda *args: calls.append(("many", *args)))
    monkeypatch.setattr(kernels, "_backend", lambda device: group)
    cache: dict = {}
    kernels.apply_dense_many("sgd", dev, ["a"], ["ga"], {}, {"lr": 1.0}, cache)
    assert calls[-1] == ("many", "sgd", ["a"], ["ga"], {}, {"lr": 1.0}, cache)


# --------------------------------------------------------------------------
# Through apply_gradients: variables, restores, locks
# --------------------------------------------------------------------------

def make_vars(shapes, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    vs = [tf.Variable(rng.standard_normal(s).astype(dtype), name=f"p{i}") for i, s in enumerate(shapes)]
    tf.variables_initializer(vs).run()
    return vs


def per_tensor_adam(values, grads_per_step, lr=0.01):
    """What the optimizer computes, step by step, with the per-tensor kernels on copies."""
    values = [v.copy() for v in values]
    m = [np.zeros_like(v) for v in values]
    w = [np.zeros_like(v) for v in values]
    b1p, b2p = np.float32(0.9), np.float32(0.999)
    for grads in grads_per_step:
        h = {"lr": lr * np.sqrt(1 - float(b2p)) / (1 - float(b1p)), "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}
        per_tensor("adam", values, grads, {"m": m, "v": w}, h)
        b1p, b2p = b1p * np.float32(0.9), b2p * np.float32(0.999)
    return values


def build_train(opt, vs, shapes=None):
    """TF 1.x: a placeholder per gradient, the train op built once; returns (placeholders, train)."""
    phs = [tf.placeholder(tf.float32, v.shape if shapes is None else shapes[k]) for k, v in enumerate(vs)]
    train = opt.apply_gradients(zip(phs, vs))
    return phs, train


@pytest.mark.usefixtures("fresh_graph")
def test_apply_gradients_matches_the_per_tensor_kernels_across_a_restore(tmp_path):
    shapes = [(4, 3), (3,), (), (50,)]
    vs = make_vars(shapes)
    start = [v.numpy().copy() for v in vs]
    rng = np.random.default_rng(9)
    steps = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(4)]
    opt = tf.train.AdamOptimizer(0.01)
    phs, train = build_train(opt, vs)
    saver = tf.train.Saver()  # the slots and beta powers too: they exist once the train op is built
    sess = tf.Session()
    sess.run(tf.variables_initializer(opt.variables()))
    sess.run(train, feed_dict=dict(zip(phs, steps[0])))
    path = saver.save(sess, str(tmp_path / "ckpt"))
    sess.run(train, feed_dict=dict(zip(phs, steps[1])))
    # A restore that adopts new arrays (the storage's array object changes): the cached
    # table must not write into the old ones.
    old = [v.storage.array for v in vs]
    for v in vs:
        v.storage.adopt(v.storage.array.copy())
    saver.restore(sess, path)
    for v in vs:
        v.storage.adopt(v.storage.array.copy())
    for slot in opt.variables():
        slot.storage.adopt(slot.storage.array.copy())
    old_bits = [a.tobytes() for a in old]
    for grads in steps[2:]:
        sess.run(train, feed_dict=dict(zip(phs, grads)))
    assert [a.tobytes() for a in old] == old_bits
    expected = per_tensor_adam(start, [steps[0]] + steps[2:])
    for v, e in zip(vs, expected):
        assert v.numpy().tobytes() == e.tobytes()
    sess.close()


@pytest.mark.usefixtures("fresh_graph")
def test_apply_gradients_follows_a_reshaping_assign_and_another_variable_list():
    a = tf.Variable(np.zeros(3, np.float32), name="a")
    b = tf.Variable(np.zeros(2, np.float32), name="b", validate_shape=False)
    opt = tf.train.GradientDescentOptimizer(0.5)
    (pa, pb), train = build_train(opt, [a, b], shapes=[(3,), None])  # b's shape changes
    (pb_only,), train_b = build_train(opt, [b], shapes=[None])  # another list: another table
    reshape = b.assign(np.ones((2, 2), np.float32))  # another shape: a new array object
    ones3 = np.ones(3, np.float32)
    with tf.Session() as sess:
        sess.run(tf.variables_initializer([a, b]))
        sess.run(train, feed_dict={pa: ones3, pb: np.ones(2, np.float32)})
        sess.run(reshape)
        sess.run(train, feed_dict={pa: ones3, pb: np.ones((2, 2), np.float32)})
        assert sess.run(b).tolist() == [[0.5, 0.5], [0.5, 0.5]]
        sess.run(train_b, feed_dict={pb_only: np.full((2, 2), 2.0, np.float32)})
        sess.run(train, feed_dict={pa: ones3, pb: np.ones((2, 2), np.float32)})
        assert sess.run(b).tolist() == [[-1.0, -1.0], [-1.0, -1.0]]
        assert sess.run(a).tolist() == [-1.5, -1.5, -1.5]


@pytest.mark.usefixtures("fresh_graph")
@pytest.mark.parametrize("mode", ["graph", "eager"])
def test_sparse_and_dense_gradients_of_one_variable_apply_in_the_given_order(mode):
    vs = make_vars([(4, 2), (3,)])
    start = [v.numpy().copy() for v in vs]
    sparse = tf.train.IndexedSlices(np.ones((2, 2), np.float32), np.array([1, 1]), dense_shape=(4, 2))
    dense = np.full((4, 2), 0.5, np.float32)
    opt = tf.train.AdamOptimizer(0.1)
    pairs = [(dense, vs[0]), (sparse, vs[0]), (np.ones(3, np.float32), vs[1]), (dense, vs[0])]
    if mode == "eager":
        with tf.eager_mode():
            assert opt.apply_gradients(pairs) is None
    else:
        train = opt.apply_gradients(pairs)
        with tf.Session() as sess:
            sess.run(tf.variables_initializer(opt.variables()))
            sess.run(train)
    b1p, b2p = float(np.float32(0.9)), float(np.float32(0.999))  # the beta powers are float32 variables
    h = {"lr": 0.1 * np.sqrt(1 - b2p) / (1 - b1p), "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}
    v0, v1 = start
    m0, w0, m1, w1 = (np.zeros_like(a) for a in (v0, v0, v1, v1))
    cpu.dense_update("adam", v0, dense, {"m": m0, "v": w0}, h)
    cpu.apply_sparse("adam", v0, np.array([1, 1]), np.ones((2, 2), np.float32), {"m": m0, "v": w0}, **h)
    cpu.dense_update("adam", v1, np.ones(3, np.float32), {"m": m1, "v": w1}, h)
    cpu.dense_update("adam", v0, dense, {"m": m0, "v": w0}, h)
    assert vs[0].numpy().tobytes() == v0.tobytes() and vs[1].numpy().tobytes() == v1.tobytes()


@pytest.mark.usefixtures("fresh_graph")
def test_an_uninitialized_variable_fails_the_step_before_any_update():
    vs = make_vars([(2,), (2,)])
    late = tf.Variable(tf.zeros([2]), name="late")
    before = [v.numpy().copy() for v in vs]
    opt = tf.train.GradientDescentOptimizer(1.0)
    train = opt.apply_gradients([(np.ones(2, np.float32), v) for v in (*vs, late)])
    with tf.Session() as sess, pytest.raises(FailedPreconditionError, match="late"):
        sess.run(train)
    assert [v.numpy().tolist() for v in vs] == [b.tolist() for b in before]


@pytest.mark.usefixtures("fresh_graph")
def test_a_step_holds_every_variables_lock_while_it_runs(monkeypatch):
    vs = make_vars([(3,), (4,), (5,)])
    opt = tf.train.MomentumOptimizer(0.1, 0.9)
    phs, train = build_train(opt, vs)
    seen = []
    real = kernels.apply_dense_many

    def spy(*args, **kwargs):
        # Another thread cannot take any of the step's locks while the kernel runs.
        def probe():
            for v in vs:
                got = v.storage.lock.acquire(blocking=False)
                seen.append(got)
                if got:
                    v.storage.lock.release()
        t = threading.Thread(target=probe)
        t.start()
        t.join()
        return real(*args, **kwargs)

    monkeypatch.setattr(kernels, "apply_dense_many", spy)
    with tf.Session() as sess:
        sess.run(tf.variables_initializer(opt.variables()))
        sess.run(train, feed_dict={p: np.ones(v.shape, np.float32) for p, v in zip(phs, vs)})
    assert seen == [False, False, False]
    assert all(v.storage.lock.acquire(blocking=False) for v in vs)  # and let go of them after


@pytest.mark.usefixtures("fresh_graph")
def test_a_step_waits_for_a_lock_held_elsewhere_and_overlapping_steps_do_not_deadlock():
    vs = [tf.Variable(np.zeros(n, np.float32), name=f"p{n}") for n in (3, 4, 5, 6)]  # integers: exact sums
    tf.variables_initializer(vs).run()
    start = [v.numpy().copy() for v in vs]
    opt = tf.train.GradientDescentOptimizer(1.0)
    grads = [(np.ones(v.shape, np.float32), v) for v in vs]
    # Two train ops over the same variables, in opposite orders, run by one session's threads.
    train, train_reversed = opt.apply_gradients(grads), opt.apply_gradients(grads[::-1])
    sess = tf.Session()
    held, release = threading.Event(), threading.Event()

    def holder():
        with vs[2].storage.lock:
            held.set()
            release.wait(10)

    h = threading.Thread(target=holder)
    h.start()
    held.wait(10)
    step = threading.Thread(target=sess.run, args=(train,))
    step.start()
    step.join(0.3)
    assert step.is_alive()  # waiting for vs[2]'s lock
    # Nothing written before every lock is held (read without the lock: the step may hold it).
    assert [v.storage.array.tolist() for v in vs] == [s.tolist() for s in start]
    release.set()
    step.join(10)
    h.join(10)
    assert not step.is_alive()
    n = 200

    def run(op):
        for _ in range(n):
            sess.run(op)

    threads = [threading.Thread(target=run, args=(train,)), threading.Thread(target=run, args=(train_reversed,))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    for v, s in zip(vs, start):
        assert v.numpy().tolist() == (s - (2 * n + 1)).tolist()
    # Eager steps take the same locks.
    with tf.eager_mode():
        opt.apply_gradients(grads)
    for v, s in zip(vs, start):
        assert v.numpy().tolist() == (s - (2 * n + 2)).tolist()
