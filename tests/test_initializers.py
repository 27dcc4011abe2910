"""Deferred initial values: nothing allocated or drawn before the initializer runs; the
constructors, their statistics, TF 1.x's initializer objects and formulas, accepted
inputs, arithmetic on deferred values, dtypes, seeds."""
from __future__ import annotations

import gc
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import devices
import varstore as tf
from varstore.initializers import InitialValue

ALL_DTYPES = ["float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64",
              "uint8", "uint16", "uint32", "uint64", "bool"]
FLOATS = ["float16", "bfloat16", "float32", "float64"]


@pytest.fixture(autouse=True)
def fresh_graph():
    tf.reset_default_graph()
    yield
    tf.reset_default_graph()


def value_of(initial, **kw):
    """Initialize a variable from ``initial`` and return its host value."""
    v = tf.Variable(initial, **kw)
    v.initializer.run()
    return v.numpy()


# -- deferred ---------------------------------------------------------------------------------
def test_nothing_is_allocated_before_the_initializer_runs():
    cpu = devices.get_device("/cpu:0")
    n = 25 * 1024 * 1024  # 100 MiB of float32
    gc.collect()
    before = cpu.memory_in_use
    v = tf.Variable(tf.random_normal([n], stddev=0.35), name="big")
    w = tf.Variable(v.initialized_value() * 2.0, name="big2")
    assert cpu.memory_in_use - before < 1 << 20
    assert not v.is_initialized and not w.is_initialized
    v.initializer.run()
    grown = cpu.memory_in_use - before
    assert grown >= n * 4, grown
    del v, w
    gc.collect()


def _seeded_graph(init_order):
    g = tf.Graph()
    with g.as_default():
        tf.set_random_seed(1234)
        vs = [tf.Variable(tf.random_normal([100]), name="a"),
              tf.Variable(tf.truncated_normal([10, 10], stddev=3.0), name="b"),
              tf.Variable(tf.random_uniform([100], -2, 5), name="c"),
              tf.Variable(tf.random_normal([100], seed=7), name="d"),
              tf.Variable(tf.random_uniform([100], 0, 10, dtype=tf.int32), name="e"),
              tf.Variable(tf.glorot_uniform_initializer()([10, 10]), name="f")]
        # Created and not initialized; more random values created in between.
        extra = tf.Variable(tf.random_normal([5]), name="extra")
        order = [vs[i] for i in init_order] + [extra]
        tf.variables_initializer(order).run()
        return [v.numpy() for v in vs]


def test_seeded_values_do_not_depend_on_when_or_in_which_order_they_are_initialized():
    first = _seeded_graph(range(6))
    second = _seeded_graph(reversed(range(6)))
    third = _seeded_graph([3, 1, 5, 0, 2, 4])
    for a, b, c in zip(first, second, third):
        assert np.array_equal(a, b) and np.array_equal(a, c)
    # every value differs from the others (distinct op seeds)
    flat = [x.ravel()[:10] for x in first]
    for i in range(len(flat)):
        for j in range(i + 1, len(flat)):
            assert not np.array_equal(flat[i], flat[j])


def test_graph_seed_and_op_seeds():
    def draw(graph_seed, op_seed):
        with tf.Graph().as_default():
            if graph_seed is not None:
                tf.set_random_seed(graph_seed)
            return value_of(tf.random_normal([20], seed=op_seed))

    assert np.array_equal(draw(1, None), draw(1, None))
    assert np.array_equal(draw(1, 5), draw(1, 5))
    assert np.array_equal(draw(None, 5), draw(None, 5))  # op seed alone is reproducible too
    assert not np.array_equal(draw(1, 5), draw(1, 6))
    assert not np.array_equal(draw(1, 5), draw(2, 5))
    assert not np.array_equal(draw(None, None), draw(None, None))
    assert np.array_equal(draw(-3, -4), draw(-3, -4))  # TF seeds are any int64


@pytest.mark.parametrize("bad", ["abc", 1.5, True, [1]])
def test_seeds_must_be_integers(bad):
    with pytest.raises(tf.errors.InvalidArgumentError, match="seed"):
        tf.set_random_seed(bad)
    for make in (lambda: tf.random_normal([2], seed=bad), lambda: tf.random_uniform([2], seed=bad),
                 lambda: tf.truncated_normal_initializer(seed=bad)([2])):
        with pytest.raises(tf.errors.InvalidArgumentError, match="seed"):
            make()
    tf.set_random_seed(np.int64(3))  # numpy integers are integers


def test_different_op_seeds_differ_same_op_seed_repeats():
    a = value_of(tf.random_uniform([50], seed=1))
    b = value_of(tf.random_uniform([50], seed=2))
    c = value_of(tf.random_uniform([50], seed=1))
    assert not np.array_equal(a, b) and np.array_equal(a, c)


def test_unseeded_variables_differ():
    a = value_of(tf.random_normal([50]))
    b = value_of(tf.random_normal([50]))
    assert not np.array_equal(a, b)


def test_rerunning_a_seeded_initializer_continues_the_sequence():
    with tf.Graph().as_default():
        tf.set_random_seed(9)
        v = tf.Variable(tf.random_normal([30]))
        v.initializer.run()
        first = v.numpy()
        v.initializer.run()
        assert not np.array_equal(first, v.numpy())


# -- the constructors --------------------------------------------------------------------------
def test_zeros_ones_fill_constant():
    assert value_of(tf.zeros([2, 3])).tolist() == [[0.0] * 3] * 2
    assert value_of(tf.ones([2], dtype=tf.int64)).tolist() == [1, 1]
    f = tf.fill([2, 2], 7)
    assert f.dtype == np.int32 and value_of(f).tolist() == [[7, 7], [7, 7]]
    assert tf.fill([3], 1.5).dtype == np.float32
    assert value_of(tf.constant([[1, 2], [3, 4]])).tolist() == [[1, 2], [3, 4]]
    assert value_of(tf.constant(2.5, shape=[3])).tolist() == [2.5] * 3
    assert value_of(tf.constant([1, 2, 3, 4], shape=[2, 2])).tolist() == [[1, 2], [3, 4]]
    assert value_of(tf.zeros([])).shape == ()
    assert value_of(tf.zeros([0, 4])).shape == (0, 4)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"3 values.*\(2, 2\)"):
        tf.constant([1, 2, 3], shape=[2, 2])
    with pytest.raises(tf.errors.InvalidArgumentError, match="1.5.*int32"):
        tf.constant([1.5], dtype=tf.int32)


def test_random_normal_statistics():
    for dtype, tol in (("float32", 0.01), ("float64", 0.01), ("float16", 0.02), ("bfloat16", 0.05)):
        x = value_of(tf.random_normal([400_000], mean=3.0, stddev=2.0, dtype=dtype, seed=1))
        assert x.dtype == np.dtype(tf.as_dtype(dtype))
        x = x.astype(np.float64)
        assert abs(x.mean() - 3.0) < 2 * tol, dtype
        assert abs(x.std() - 2.0) < 2 * tol, dtype
        # a normal has ~4.6% beyond 2 stddev: this is not the truncated one
        assert 0.04 < np.mean(np.abs(x - 3.0) > 4.0) < 0.052, dtype


def test_truncated_normal_statistics():
    mean, stddev = -1.0, 0.5
    for dtype in ("float32", "float64", "bfloat16"):
        x = value_of(tf.truncated_normal([400_000], mean=mean, stddev=stddev, dtype=dtype, seed=2))
        x = x.astype(np.float64)
        slack = 1e-2 if dtype == "bfloat16" else 1e-6
        assert np.all(np.abs(x - mean) <= 2 * stddev + slack), dtype
        assert abs(x.mean() - mean) < 0.01, dtype
        # a unit normal truncated to [-2, 2] has stddev 0.8796
        assert abs(x.std() - 0.87962566 * stddev) < 0.01, dtype


def test_random_uniform_statistics():
    x = value_of(tf.random_uniform([400_000], minval=-3.0, maxval=5.0, seed=3)).astype(np.float64)
    assert x.min() >= -3.0 and x.max() < 5.0
    assert abs(x.mean() - 1.0) < 0.03
    assert abs(x.std() - 8.0 / math.sqrt(12)) < 0.02
    d = value_of(tf.random_uniform([1000], seed=4))
    assert d.dtype == np.float32 and d.min() >= 0.0 and d.max() < 1.0


@pytest.mark.parametrize("dtype", FLOATS)
def test_random_uniform_half_types_never_reach_maxval(dtype):
    # float16/bfloat16 cannot hold every float32 draw below 1.0: rounding must not give 1.0
    x = value_of(tf.random_uniform([1_000_000], dtype=dtype, seed=5)).astype(np.float64)
    assert x.min() >= 0.0 and x.max() < 1.0


@st.composite
def uniform_bounds(draw):
    dtype = draw(st.sampled_from(FLOATS))
    dt = tf.as_dtype(dtype)
    limit = 60000.0 if dtype == "float16" else 1e6
    lo = float(np.asarray(draw(st.floats(-limit / 2, limit / 2)), dt))
    span = draw(st.floats(1e-3, limit / 2))
    hi = float(np.asarray(lo + span, dt))
    ulp = float(np.spacing(np.asarray(max(abs(lo), abs(hi), 1e-30), dt).astype(np.float64)))
    eps = float(np.finfo(np.float16).eps if dtype == "float16" else
                0.0078125 if dtype == "bfloat16" else np.finfo(dt).eps)
    assume(hi - lo >= 64 * max(ulp, eps * max(abs(lo), abs(hi))))
    return dtype, lo, hi


@given(uniform_bounds(), st.integers(0, 2**32))
@settings(max_examples=60, deadline=None)
def test_random_uniform_stays_in_half_open_range(bounds, seed):
    dtype, lo, hi = bounds
    with tf.Graph().as_default():
        x = value_of(tf.random_uniform([20_000], minval=lo, maxval=hi, dtype=dtype, seed=seed))
    x = x.astype(np.float64)
    assert x.min() >= lo, (x.min(), lo)
    assert x.max() < hi, (x.max(), hi)


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int32", "int64", "uint64"])
def test_integer_random_uniform(dtype):
    x = value_of(tf.random_uniform([20_000], minval=3, maxval=9, dtype=dtype, seed=6))
    assert x.dtype == np.dtype(dtype)
    assert sorted(np.unique(x).tolist()) == [3, 4, 5, 6, 7, 8]
    info = np.iinfo(dtype)
    full = value_of(tf.random_uniform([20_000], minval=int(info.min), maxval=int(info.max) + 1, dtype=dtype))
    assert full.dtype == np.dtype(dtype)


def test_random_bad_arguments():
    bad = [
        lambda: tf.random_uniform([2], dtype=tf.int32),  # integers need maxval
        lambda: tf.random_uniform([2], 5, 5, dtype=tf.int32),
        lambda: tf.random_uniform([2], 0, 300, dtype=tf.int8),
        lambda: tf.random_uniform([2], -1, 3, dtype=tf.uint8),
        lambda: tf.random_uniform([2], 0.5, 3, dtype=tf.int32),
        lambda: tf.random_uniform([2], dtype=tf.bool),
        lambda: tf.random_normal([2], dtype=tf.int32),
        lambda: tf.truncated_normal([2], dtype="complex64"),
    ]
    for make in bad:
        with pytest.raises(tf.errors.InvalidArgumentError):
            make()


# -- TF 1.x's initializer objects and formulas ------------------------------------------------------
def tf_fans(shape):
    """TF 1.x's init_ops._compute_fans, written out independently."""
    if len(shape) < 1:
        return 1.0, 1.0
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    if len(shape) == 2:
        return float(shape[0]), float(shape[1])
    receptive = 1
    for d in shape[:-2]:
        receptive *= d
    return float(shape[-2] * receptive), float(shape[-1] * receptive)


def tf_variance_scaling(shape, scale, mode, distribution):
    """What TF 1.x's VarianceScaling draws from: (kind, parameter)."""
    fan_in, fan_out = tf_fans(shape)
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[mode]
    scale /= max(1.0, n)
    if distribution in ("normal", "truncated_normal"):
        return "truncated", math.sqrt(scale) / 0.87962566103423978
    if distribution == "untruncated_normal":
        return "normal", math.sqrt(scale)
    return "uniform", math.sqrt(3.0 * scale)


SHAPES = [[1000, 300], [3, 3, 64, 128], [200_000], [2, 5, 40, 100]]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
@pytest.mark.parametrize("distribution", ["normal", "truncated_normal", "untruncated_normal", "uniform"])
def test_variance_scaling_matches_tf(shape, mode, distribution):
    scale = 2.0
    initial = tf.variance_scaling_initializer(scale, mode, distribution, seed=11)(shape)
    kind, param = tf_variance_scaling(shape, scale, mode, distribution)
    assert initial.shape == tuple(shape) and initial.dtype == np.float32
    if kind == "uniform":
        assert (initial.minval, initial.maxval) == pytest.approx((-param, param), rel=1e-12)
    else:
        assert initial.mean == 0.0 and initial.stddev == pytest.approx(param, rel=1e-12)
        assert initial.truncated == (kind == "truncated")
    x = value_of(initial).astype(np.float64).ravel()
    target_std = param / math.sqrt(3) if kind == "uniform" else (
        param * 0.87962566103423978 if kind == "truncated" else param)
    assert abs(x.std() / target_std - 1) < 0.03
    if kind == "uniform":
        assert np.all(np.abs(x) < param)
    elif kind == "truncated":
        assert np.all(np.abs(x) <= 2 * param * (1 + 1e-6))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_glorot_matches_tf(shape):
    fan_in, fan_out = tf_fans(shape)
    uni = tf.glorot_uniform_initializer(seed=1)(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    assert (uni.minval, uni.maxval) == pytest.approx((-limit, limit), rel=1e-12)
    x = value_of(uni).astype(np.float64)
    assert np.all(np.abs(x) < limit) and abs(x.std() / (limit / math.sqrt(3)) - 1) < 0.03
    nor = tf.glorot_normal_initializer(seed=1)(shape)
    assert nor.truncated and nor.stddev == pytest.approx(math.sqrt(2.0 / (fan_in + fan_out)) / 0.87962566103423978)
    y = value_of(nor).astype(np.float64)
    assert abs(y.std() / math.sqrt(2.0 / (fan_in + fan_out)) - 1) < 0.03


def test_variance_scaling_bad_arguments():
    for kw in (dict(scale=0.0), dict(scale=-1.0), dict(mode="fan_middle"), dict(distribution="cauchy")):
        with pytest.raises(tf.errors.InvalidArgumentError):
            tf.variance_scaling_initializer(**kw)


def test_initializer_objects():
    assert value_of(tf.zeros_initializer()([2, 2])).tolist() == [[0.0, 0.0], [0.0, 0.0]]
    ones = tf.ones_initializer(dtype=tf.int32)([3])
    assert ones.dtype == np.int32 and value_of(ones).tolist() == [1, 1, 1]
    assert tf.ones_initializer()([3], dtype=tf.float64).dtype == np.float64
    assert value_of(tf.constant_initializer(4.5)([2])).tolist() == [4.5, 4.5]
    assert value_of(tf.constant_initializer([1, 2, 3, 4])([2, 2])).tolist() == [[1, 2], [3, 4]]
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.constant_initializer([1, 2, 3])([2, 2])
    n = value_of(tf.random_normal_initializer(mean=1.0, stddev=0.5, seed=3)([100_000])).astype(np.float64)
    assert abs(n.mean() - 1.0) < 0.01 and abs(n.std() - 0.5) < 0.01
    t = value_of(tf.truncated_normal_initializer(stddev=0.1, seed=3)([100_000])).astype(np.float64)
    assert np.abs(t).max() <= 0.2 + 1e-6 and abs(t.std() - 0.087962566) < 0.003
    u = value_of(tf.random_uniform_initializer(-1.0, 1.0, seed=3)([100_000])).astype(np.float64)
    assert u.min() >= -1.0 and u.max() < 1.0 and abs(u.mean()) < 0.01
    a = tf.random_normal_initializer(seed=8)([10])
    b = tf.random_normal_initializer(seed=8)([10])
    assert np.array_equal(value_of(a), value_of(b))


# -- accepted values --------------------------------------------------------------------------
def test_python_and_numpy_values():
    cases = [
        (1.5, np.float32, 1.5), (3, np.int32, 3), (True, np.bool_, True),
        ([1.0, 2.0], np.float32, [1.0, 2.0]), ([[1, 2], [3, 4]], np.int32, [[1, 2], [3, 4]]),
        ((1, 2), np.int32, [1, 2]), ([True, False], np.bool_, [True, False]),
        (np.arange(3, dtype=np.int16), np.int16, [0, 1, 2]), (np.float64(2.0), np.float64, 2.0),
        (np.zeros((2,), tf.bfloat16), tf.bfloat16, [0.0, 0.0]), (np.uint8(7), np.uint8, 7),
    ]
    for value, dtype, expected in cases:
        v = tf.Variable(value)
        assert v.dtype == np.dtype(dtype), (value, v.dtype)
        v.initializer.run()
        assert v.numpy().tolist() == expected


def test_an_array_initial_value_is_taken_at_creation():
    # as TF does: the value is the array's value when the variable was created
    buf = np.zeros(2, np.float32)
    vs = []
    for i in range(3):
        buf[...] = i
        vs.append(tf.Variable(buf))
    view = np.arange(6.0).reshape(2, 3)
    w = tf.Variable(view[:, 1], dtype=tf.float64)
    view[:] = -1
    buf[...] = 42
    tf.global_variables_initializer().run()
    assert [v.numpy().tolist() for v in vs] == [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]
    assert w.numpy().tolist() == [1.0, 4.0]
    buf[...] = 7  # and after init the variable owns its buffer
    assert vs[0].numpy().tolist() == [0.0, 0.0]


def test_torch_values():
    torch = pytest.importorskip("torch")
    v = tf.Variable(torch.arange(6, dtype=torch.float64).reshape(2, 3))
    assert v.dtype == np.float64 and v.shape == (2, 3)
    w = tf.Variable(torch.ones(3), dtype=tf.float16)
    assert w.dtype == np.float16
    tf.variables_initializer([v, w]).run()
    assert v.numpy().tolist() == [[0, 1, 2], [3, 4, 5]] and w.numpy().tolist() == [1, 1, 1]
    assert tf.Variable(torch.tensor([1, 2])).dtype == np.int64
    t = torch.zeros(2)
    snap = tf.Variable(t)
    t += 5
    snap.initializer.run()
    assert snap.numpy().tolist() == [0.0, 0.0]
    for bad in (torch.tensor([1.5]), torch.tensor([1.0])):  # float arrays never become ints implicitly
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"float32.*int32"):
            tf.Variable(bad, dtype=tf.int32)


def test_callable_initial_value():
    calls = []

    def make():
        calls.append(1)
        return tf.ones([2]) * 3.0

    v = tf.Variable(make)
    assert v.shape == (2,) and v.dtype == np.float32
    v.initializer.run()
    assert v.numpy().tolist() == [3.0, 3.0]


# -- arithmetic on deferred values --------------------------------------------------------------------
def test_arithmetic_on_deferred_values():
    base = tf.Variable(tf.constant([1.0, 2.0, 4.0]), name="base")
    x = base.initialized_value()
    exprs = {
        "x*2": (x * 2.0, [2, 4, 8]), "2*x": (2.0 * x, [2, 4, 8]), "x+1": (x + 1, [2, 3, 5]),
        "1+x": (1 + x, [2, 3, 5]), "x-1": (x - 1.0, [0, 1, 3]), "1-x": (1.0 - x, [0, -1, -3]),
        "x/2": (x / 2, [0.5, 1, 2]), "4/x": (4.0 / x, [4, 2, 1]), "-x": (-x, [-1, -2, -4]),
        "x+x": (x + x, [2, 4, 8]), "x*x": (x * x, [1, 4, 16]), "x-ones": (x - tf.ones([3]), [0, 1, 3]),
        "zeros+x": (tf.zeros([3]) + x, [1, 2, 4]), "(x+1)*(x-1)": ((x + 1.0) * (x - 1.0), [0, 3, 15]),
        "-(x/x)": (-(x / x), [-1, -1, -1]), "x*[1,0,1]": (x * [1.0, 0.0, 1.0], [1, 0, 4]),
        "x+np": (x + np.float32(1), [2, 3, 5]),
    }
    vs = {k: tf.Variable(e) for k, (e, _) in exprs.items()}
    for k, (e, _) in exprs.items():
        assert isinstance(e, InitialValue), k
        assert vs[k].dtype == np.float32 and vs[k].shape == (3,), k
    tf.global_variables_initializer().run()
    for k, (_, want) in exprs.items():
        assert vs[k].numpy().tolist() == want, k


def test_deferred_arithmetic_is_deferred_and_broadcasts():
    a = tf.random_normal([4, 1], seed=1) * tf.ones([1, 3])
    assert a.shape == (4, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\(2,\).*\(3,\)"):
        tf.zeros([2]) + tf.zeros([3])
    with pytest.raises(tf.errors.InvalidArgumentError, match="float32.*int32|int32.*float32"):
        tf.zeros([2]) + tf.zeros([2], dtype=tf.int32)
    # as TF's truediv: integers divide as floats (int8/int16 as float32, int32/int64 as float64)
    for src, want in ((tf.int8, np.float32), (tf.int16, np.float32), (tf.int32, np.float64), (tf.int64, np.float64)):
        half = tf.ones([2], dtype=src) / 2
        assert half.dtype == want
        got = tf.Session().run(half)
        assert got.dtype == want and got.tolist() == [0.5, 0.5]
    assert tf.Session().run(tf.ones([2], dtype=tf.int32) // 2).tolist() == [0, 0]  # floordiv keeps int32
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.ones([2], dtype=tf.int32) * 1.5  # not exactly an int32


def test_integer_and_bool_arithmetic():
    i = tf.Variable(tf.fill([2], 5) * 2 - 3)
    i.initializer.run()
    assert i.dtype == np.int32 and i.numpy().tolist() == [7, 7]


# -- dtypes ----------------------------------------------------------------------------------------------
def _sample(dtype: str) -> object:
    return {"bool": True}.get(dtype, 3)


@given(st.sampled_from(ALL_DTYPES), st.lists(st.integers(0, 4), max_size=3))
@settings(max_examples=120, deadline=None)
def test_zeros_ones_constant_round_trip(dtype, shape):
    dt = tf.as_dtype(dtype)
    with tf.Graph().as_default():
        value = _sample(dtype)
        inits = {
            "zeros": (tf.zeros(shape, dtype=dtype), np.zeros(shape, dt)),
            "zeros_by_object": (tf.zeros(shape, dtype=dt), np.zeros(shape, dt)),
            "ones": (tf.ones(shape, dtype=dtype), np.ones(shape, dt)),
            "constant": (tf.constant(value, dtype=dtype, shape=shape), np.full(shape, value, dt)),
            "constant_array": (tf.constant(np.full(shape, value, dt)), np.full(shape, value, dt)),
            "initializer": (tf.ones_initializer(dtype=dtype)(shape), np.ones(shape, dt)),
        }
        vs = {k: tf.Variable(i) for k, (i, _) in inits.items()}
        tf.global_variables_initializer().run()
        for k, (_, want) in inits.items():
            got = vs[k].numpy()
            assert vs[k].dtype == dt and vs[k].shape == tuple(shape), k
            assert got.dtype == dt and got.shape == tuple(shape), k
            assert np.array_equal(got.astype(np.float64), want.astype(np.float64)), k


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_random_ops_produce_the_requested_float_dtype(dtype):
    dt = tf.as_dtype(dtype)
    for make in (tf.random_normal, tf.truncated_normal, tf.random_uniform):
        x = value_of(make([3, 4], dtype=dtype))
        assert x.dtype == dt and x.shape == (3, 4) and np.isfinite(x.astype(np.float32)).all()


def test_tf_dtype_names_are_the_numpy_dtypes():
    assert tf.float32 == np.float32 and tf.bfloat16 == tf.as_dtype("bfloat16")
    assert tf.as_dtype("half") == np.float16 and tf.as_dtype("double") == np.float64
    assert tf.bool == np.bool_
