"""Variable: creation and placement, reads, writes on the variable's device, conversions,
bad input, initialization ops and ``initialized_value()`` ordering, concurrent reads."""
from __future__ import annotations

import random
import re
import threading
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import devices
import varstore as tf
from varstore.initializers import InitialValue

CPU = "/device:CPU:0"


@pytest.fixture(autouse=True)
def fresh_graph():
    tf.reset_default_graph()
    yield
    tf.reset_default_graph()


def init(*vs):
    tf.variables_initializer(vs).run()


def has_gpu() -> bool:
    return "/device:GPU:0" in devices.list_devices()


# -- creation and properties -------------------------------------------------------------
def test_properties():
    v = tf.Variable(tf.zeros([2, 3]), name="v")
    assert (v.name, v.shape, v.get_shape(), v.dtype) == ("v", (2, 3), (2, 3), np.float32)
    assert v.device == CPU and v.requested_device == ""
    assert v.trainable and v.op.type == "VariableV2" and v.op.name == "v"
    assert isinstance(v.initial_value, InitialValue) and v.initial_value.shape == (2, 3)
    iv = v.initialized_value()
    assert isinstance(iv, InitialValue) and (iv.shape, iv.dtype) == ((2, 3), np.float32)
    assert "uninitialized" in repr(v)
    with tf.Session() as sess:
        assert sess.run(v.initializer) is None
    assert v.is_initialized and "uninitialized" not in repr(v)


def test_default_names_are_unique():
    names = [tf.Variable(0.0).name for _ in range(3)] + [tf.Variable(0.0, name="weights").name for _ in range(2)]
    assert names == ["Variable", "Variable_1", "Variable_2", "weights", "weights_1"]


def test_dtype_argument_and_shape_argument():
    assert tf.Variable([1, 2], dtype=tf.float64).dtype == np.float64
    assert tf.Variable(tf.zeros([2]), shape=[2]).shape == (2,)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\(3,\).*\(2,\)"):
        tf.Variable(tf.zeros([2]), shape=[3])


def test_device_resolved_at_creation_from_scopes():
    with tf.device("/job:localhost"), tf.device("/cpu:0"):
        v = tf.Variable(0.0)
    assert v.requested_device == "/job:localhost/device:CPU:0" and v.device == CPU
    # leaving the scope changes nothing afterwards
    assert v.requested_device == "/job:localhost/device:CPU:0"


def test_device_function_receives_the_op(placement):
    seen = []

    def fn(op):
        seen.append((op.type, op.kind, op.name, op.shape, op.dtype, op.device))
        return "/cpu:0"

    with tf.name_scope("layer1"), tf.device(fn):
        v = tf.Variable(tf.ones([4, 5], dtype=tf.int64), name="weights")
    assert seen == [("VariableV2", "VariableV2", "layer1/weights", (4, 5), np.dtype("int64"), "")]
    assert v.requested_device == CPU and v.device == CPU


def test_device_function_sees_outer_spec_and_inner_spec_wins(placement):
    placement.set_soft_placement(True)
    got = []

    def fn(op):
        got.append(op.device)
        return None  # leave the placement as it is

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with tf.device(fn), tf.device("/job:ps/task:2"):
            v = tf.Variable(0.0)
    assert got == ["/job:ps/task:2"]
    assert v.requested_device == "/job:ps/task:2" and v.device == CPU


def test_strict_placement_names_spec_and_devices(placement):
    if has_gpu():
        pytest.skip("this machine has a GPU")
    placement.set_soft_placement(False)
    with tf.device("/gpu:0"), pytest.raises(tf.errors.InvalidArgumentError, match=r"GPU:0.*CPU:0"):
        tf.Variable(0.0)


# -- reading ------------------------------------------------------------------------------------
def test_reads_value_read_value_numpy():
    v = tf.Variable([1.0, 2.0, 3.0])
    init(v)
    live, snap, host = v.value(), v.read_value(), v.numpy()
    assert all(isinstance(a, np.ndarray) for a in (live, snap, host))
    assert live.tolist() == snap.tolist() == host.tolist() == [1.0, 2.0, 3.0]
    host[0] = 99  # a copy: the variable does not change
    snap[1] = 99
    assert v.numpy().tolist() == [1.0, 2.0, 3.0]
    v.assign([4.0, 5.0, 6.0])
    assert live.tolist() == [4.0, 5.0, 6.0]  # value() is the live buffer
    assert np.asarray(v).tolist() == [4.0, 5.0, 6.0]
    assert np.asarray(v, dtype=np.float64).dtype == np.float64
    assert v.eval().tolist() == [4.0, 5.0, 6.0]


def test_arithmetic_returns_arrays():
    a = tf.Variable([1.0, 2.0])
    b = tf.Variable([3.0, 4.0])
    m = tf.Variable([[1.0, 0.0], [0.0, 2.0]])
    init(a, b, m)
    cases = {
        "a+1": (a + 1, [2.0, 3.0]), "1+a": (1 + a, [2.0, 3.0]), "a-b": (a - b, [-2.0, -2.0]),
        "5-a": (5 - a, [4.0, 3.0]), "a*b": (a * b, [3.0, 8.0]), "2*a": (2 * a, [2.0, 4.0]),
        "a/2": (a / 2, [0.5, 1.0]), "2/a": (2 / a, [2.0, 1.0]), "-a": (-a, [-1.0, -2.0]),
        "a@m": (a @ m, [1.0, 4.0]), "np+a": (np.array([1.0, 1.0], np.float32) + a, [2.0, 3.0]),
        "a[1]": (a[1], 2.0), "abs": (abs(-a), [1.0, 2.0]), "a**2": (a ** 2, [1.0, 4.0]),
    }
    for label, (got, want) in cases.items():
        assert not isinstance(got, tf.Variable), label
        assert isinstance(got, (np.ndarray, np.generic)), (label, type(got))
        assert np.asarray(got).tolist() == want, label
    assert (a < b).tolist() == [True, True]


def test_reading_before_init_fails_on_every_path():
    v = tf.Variable(tf.zeros([2]), name="layer/w")
    msg = re.escape("Attempting to use uninitialized value layer/w")
    reads = [v.value, v.read_value, v.numpy, v.eval, lambda: np.asarray(v), lambda: v + 1, lambda: -v,
             lambda: tf.Session().run(v), lambda: tf.Session().run({"x": [v]}),
             lambda: v.assign_add([1.0, 1.0]), lambda: v.assign_sub([1.0, 1.0])]
    for read in reads:
        with pytest.raises(tf.errors.FailedPreconditionError, match=msg):
            read()
    assert not v.is_initialized


def test_variable_from_uninitialized_variable_fails_at_init():
    v = tf.Variable(tf.zeros([2]), name="src")
    w = tf.Variable(v, name="copy")  # a plain read: v's initializer is not run for it
    with pytest.raises(tf.errors.FailedPreconditionError, match="uninitialized value src"):
        init(w)
    init(v, w)
    assert w.numpy().tolist() == [0.0, 0.0]


# -- writing: on the variable's device, whatever the scope ---------------------------------------------
@pytest.mark.parametrize("scope", ["/gpu:0", "/job:ps/task:3", "/cpu:0", "function"])
def test_mutations_ignore_the_surrounding_scope(placement, scope):
    placement.set_soft_placement(True)
    v = tf.Variable(tf.zeros([3]), name="v")
    init(v)
    before = (v.device, v.requested_device)
    calls = []
    spec = (lambda op: calls.append(op) or "/job:ps/task:9") if scope == "function" else scope
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with tf.device(spec):
            v.assign([1.0, 2.0, 3.0])
            v.assign_add([1.0, 1.0, 1.0])
            v.assign_sub([0.5, 0.5, 0.5])
            v.load([2.0, 3.0, 4.0])
            v.assign(tf.ones([3]) * 5.0)  # a deferred value is evaluated on v's device
            v.assign_add(tf.ones([3]))
    assert (v.device, v.requested_device) == before
    assert v.numpy().tolist() == [6.0, 6.0, 6.0]
    assert isinstance(v.value(), np.ndarray)
    # nothing was placed: no device function call, no placement warning for the scope
    assert calls == []
    assert not [w for w in caught if issubclass(w.category, devices.PlacementWarning)]


def test_gpu_variable_assign_under_cpu_scope_stays(placement):
    placement.set_soft_placement(True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with tf.device("/gpu:0"):
            v = tf.Variable(tf.zeros([2]))
    init(v)
    with tf.device("/cpu:0"):
        v.assign([1.0, 2.0])
    assert v.requested_device == "/device:GPU:0"
    assert v.device == ("/device:GPU:0" if has_gpu() else CPU)
    assert v.numpy().tolist() == [1.0, 2.0]


def test_assign_returns_something_run_accepts():
    v = tf.Variable([1.0, 2.0])
    init(v)
    with tf.Session() as sess:
        assert sess.run(v.assign([3.0, 4.0])).tolist() == [3.0, 4.0]
        assert sess.run(v.assign_add([1.0, 1.0])).tolist() == [4.0, 5.0]
        assert sess.run(v.assign_sub([4.0, 5.0])).tolist() == [0.0, 0.0]


def test_assign_does_not_alias_the_callers_array():
    v = tf.Variable(tf.zeros([3]))
    src = np.array([1.0, 2.0, 3.0], np.float32)
    v.assign(src)  # assign on an uninitialized variable initializes it
    assert v.is_initialized
    src[0] = 42
    assert v.numpy().tolist() == [1.0, 2.0, 3.0]
    v.assign(src)
    src[1] = 42
    assert v.numpy().tolist() == [42.0, 2.0, 3.0]


@pytest.mark.parametrize("value", [
    [1, 2, 3], [1.0, 2.0, 3.0], (1.0, 2.0, 3.0),
    np.array([1, 2, 3], np.float64), np.array([1, 2, 3], np.float16), np.array([1, 2, 3], np.int64),
    np.array([1, 2, 3], tf.bfloat16),
], ids=["int-list", "float-list", "tuple", "float64", "float16", "int64", "bfloat16"])
def test_assign_converts_values(value):
    v = tf.Variable(tf.zeros([3]))
    init(v)
    v.assign(value)
    out = v.numpy()
    assert out.dtype == np.float32 and out.tolist() == [1.0, 2.0, 3.0]
    assert v.dtype == np.float32


def test_assign_converts_torch_tensors():
    torch = pytest.importorskip("torch")
    v = tf.Variable(tf.zeros([2, 2]))
    init(v)
    v.assign(torch.arange(4, dtype=torch.float64).reshape(2, 2))
    assert v.numpy().tolist() == [[0.0, 1.0], [2.0, 3.0]] and v.numpy().dtype == np.float32
    v.assign_add(torch.ones(2, 2))
    v.load(torch.full((2, 2), 7.0))
    assert v.numpy().tolist() == [[7.0, 7.0], [7.0, 7.0]]
    i = tf.Variable(tf.zeros([2], dtype=tf.int32))
    init(i)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"float32.*int32"):
        i.assign(torch.tensor([1.0, 2.0]))
    i.assign(torch.tensor([5, 6]))
    assert i.numpy().tolist() == [5, 6] and i.numpy().dtype == np.int32


def test_assign_from_another_variable():
    a = tf.Variable([1.0, 2.0])
    b = tf.Variable(tf.zeros([2], dtype=tf.float64))
    init(a, b)
    b.assign(a)
    assert b.numpy().tolist() == [1.0, 2.0] and b.numpy().dtype == np.float64
    a.assign([5.0, 5.0])
    assert b.numpy().tolist() == [1.0, 2.0]


@pytest.mark.parametrize("bad", [[1.0, 2.0], [[1.0, 2.0, 3.0]], np.zeros((3, 1), np.float32), 1.0])
def test_assign_wrong_shape_names_both_shapes(bad):
    v = tf.Variable([1.0, 2.0, 3.0], name="v")
    init(v)
    shape = re.escape(str(np.shape(bad)))
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"{shape}.*\(3,\)"):
        v.assign(bad)
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"{shape}.*\(3,\)"):
        v.assign_add(bad)
    assert v.numpy().tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("bad", [np.array([1.5, 2.0]), np.array([1.0, 2.0], np.float32), [1.5, 2.0],
                                 np.array([1 + 1j, 2])], ids=["float64", "float32", "list", "complex"])
def test_assign_dtype_that_does_not_fit_names_both(bad):
    v = tf.Variable([1, 2], name="ints")
    assert v.dtype == np.int32
    init(v)
    src = np.asarray(bad).dtype.name
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"({src}|1\.5).*int32"):
        v.assign(bad)
    assert v.numpy().tolist() == [1, 2]


@given(st.sampled_from(["int8", "uint8", "int16", "int32"]), st.sampled_from(["int64", "uint64", "int32"]),
       st.lists(st.integers(-2**40, 2**40), min_size=1, max_size=5))
@settings(max_examples=60, deadline=None)
def test_integer_narrowing_never_wraps(var_dtype, src_dtype, values):
    dst, src = np.dtype(var_dtype), np.dtype(src_dtype)
    info = np.iinfo(src)
    values = [x for x in values if info.min <= x <= info.max] or [0]
    arr = np.array(values, src)
    with tf.Graph().as_default():
        v = tf.Variable(tf.zeros([len(values)], dtype=dst))
        init(v)
        fits = all(np.iinfo(dst).min <= x <= np.iinfo(dst).max for x in values)
        kind_ok = np.can_cast(src, dst, "same_kind")
        if fits and kind_ok:
            v.assign(arr)
            assert v.numpy().tolist() == values
        else:
            with pytest.raises(tf.errors.InvalidArgumentError, match=rf"{src_dtype}.*{var_dtype}"):
                v.assign(arr)
            assert not v.numpy().any()
            with pytest.raises(tf.errors.InvalidArgumentError, match=rf"{src_dtype}.*{var_dtype}"):
                tf.Variable(arr, dtype=dst)


def test_validate_shape_false_allows_a_new_shape():
    v = tf.Variable(tf.zeros([2]), validate_shape=False)
    init(v)
    v.assign(np.ones((2, 3), np.float32))
    assert v.shape == (2, 3) and v.numpy().shape == (2, 3)


# -- bad input -------------------------------------------------------------------------------------
def test_initial_value_of_the_wrong_dtype():
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"int32.*float32"):
        tf.Variable(tf.zeros([2], dtype=tf.int32), dtype=tf.float32)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"1\.5.*int32"):
        tf.Variable([1.5, 2.0], dtype=tf.int32)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"float64.*int32"):
        tf.Variable(np.array([1.0, 2.0]), dtype=tf.int32)
    assert tf.global_variables() == []  # nothing half-registered


@pytest.mark.parametrize("name", ["float33", "string", "object", "", "int128"])
def test_unknown_dtype_name(name):
    with pytest.raises(tf.errors.InvalidArgumentError, match="dtype"):
        tf.Variable(tf.zeros([2], dtype=name))
    with pytest.raises(tf.errors.InvalidArgumentError, match="dtype"):
        tf.Variable([1.0], dtype=name)


@given(st.lists(st.one_of(st.integers(-10, -1), st.floats(allow_nan=True), st.text(max_size=2),
                          st.booleans(), st.none()), min_size=1, max_size=3),
       st.lists(st.integers(0, 3), max_size=2))
@settings(max_examples=60, deadline=None)
def test_negative_or_non_integer_shape(bad_dims, good_dims):
    dims = good_dims + bad_dims
    for make in (tf.zeros, tf.ones, tf.random_normal, tf.random_uniform, lambda s: tf.fill(s, 1.0)):
        with pytest.raises(tf.errors.InvalidArgumentError, match="shape"):
            make(dims)


def test_initial_value_none_and_strings():
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.Variable(None)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.Variable("hello")
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.Variable([[1.0, 2.0], [3.0]])  # ragged


def test_concurrent_reads_never_see_a_torn_value():
    n = 1 << 22  # 16 MiB of float32: copies long enough to interleave with a writer
    v = tf.Variable(tf.zeros([n]), name="big")
    init(v)
    zeros, ones = np.zeros(n, np.float32), np.ones(n, np.float32)
    done = threading.Event()
    torn, reads, errors = [], [0, 0, 0], []

    def writer():
        try:
            for i in range(60):
                v.assign(ones if i % 2 == 0 else zeros)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            done.set()

    def reader(kind):
        sess = tf.Session()
        try:
            while not done.is_set():
                # np.array(v) is a copy taken under the lock (np.asarray(v) may be the live buffer)
                snap = v.numpy() if kind == 0 else sess.run(v) if kind == 1 else np.array(v)
                reads[kind] += 1
                if snap.min() != snap.max():
                    torn.append((kind, float(snap.min()), float(snap.max())))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(3)]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and not torn, (errors, torn[:5])
    assert all(reads), reads


# -- initialization ops ---------------------------------------------------------------------------------
def test_global_variables_initializer_takes_the_list_at_call_time():
    a = tf.Variable(1.0, name="a")
    op = tf.global_variables_initializer()
    b = tf.Variable(2.0, name="b")
    with tf.Session() as sess:
        sess.run(op)
        assert a.is_initialized and not b.is_initialized
        assert sess.run(tf.report_uninitialized_variables()) == ["b"]
        sess.run(tf.global_variables_initializer())
        assert b.is_initialized


def test_variables_initializer_only_its_list():
    a, b, c = tf.Variable(1.0), tf.Variable(2.0), tf.Variable(3.0)
    tf.variables_initializer([a, c]).run()
    assert (a.is_initialized, b.is_initialized, c.is_initialized) == (True, False, True)
    tf.variables_initializer([]).run()  # empty list: a no-op
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected Variables"):
        tf.variables_initializer([a, np.zeros(2)])


def test_is_variable_initialized_is_evaluated_when_run():
    v = tf.Variable(tf.zeros([2]))
    fetch = tf.is_variable_initialized(v)
    with tf.Session() as sess:
        assert sess.run(fetch) is False
        sess.run(v.initializer)
        assert sess.run(fetch) is True
        assert sess.run([fetch, {"x": fetch}]) == [True, {"x": True}]


def test_report_uninitialized_variables():
    tf.Variable(1.0, name="a")
    b = tf.Variable(2.0, name="b", trainable=False)
    all_report = tf.report_uninitialized_variables()  # var_list=None: all at run time
    some = tf.report_uninitialized_variables([b])
    c = tf.Variable(3.0, name="c")  # made after the report ops: all_report still names it
    with tf.Session() as sess:
        assert sess.run(all_report) == ["a", "b", "c"]
        assert sess.run(some) == ["b"]
        sess.run(b.initializer)
        assert sess.run(all_report) == ["a", "c"]
        assert sess.run(some) == []
        sess.run(tf.global_variables_initializer())
        assert sess.run(all_report) == []
    del c


# -- initialized_value(): ordering, once per run, current values, cycles ---------------------------------------
def _chain():
    base = tf.Variable(tf.random_normal([50]), name="base")
    same = tf.Variable(base.initialized_value(), name="same")
    twice = tf.Variable(base.initialized_value() * 2.0, name="twice")
    mixed = tf.Variable(same.initialized_value() + twice.initialized_value() - 1.0, name="mixed")
    neg = tf.Variable(-mixed.initialized_value() / 4.0, name="neg")
    return [base, same, twice, mixed, neg]


def _check_chain(vs):
    base, same, twice, mixed, neg = (v.numpy() for v in vs)
    assert np.array_equal(same, base)
    assert np.array_equal(twice, base * np.float32(2))
    assert np.array_equal(mixed, same + twice - np.float32(1))
    assert np.array_equal(neg, -mixed / np.float32(4))


def test_initialized_value_reversed_list():
    vs = _chain()
    tf.variables_initializer(list(reversed(vs))).run()
    _check_chain(vs)


@given(st.randoms(use_true_random=False), st.integers(1, 5))
@settings(max_examples=40, deadline=None)
def test_initialized_value_any_order_any_subset(rnd, k):
    with tf.Graph().as_default():
        vs = _chain()
        order = rnd.sample(vs, k)
        tf.variables_initializer(order).run()
        # every listed variable and every dependency is initialized, once, consistently
        initialized = [v for v in vs if v.is_initialized]
        assert set(map(id, order)) <= set(map(id, initialized))
        if len(initialized) == len(vs):
            _check_chain(vs)
        base = vs[0].numpy()
        for v in initialized[1:]:
            if v.name == "same":
                assert np.array_equal(v.numpy(), base)


def test_each_initializer_runs_at_most_once_per_run():
    calls = []

    class Counting(InitialValue):
        shape, dtype = (2,), np.dtype(np.float32)

        def _eval(self, device, ctx):
            calls.append(1)
            out = device.empty(self.shape, self.dtype)
            out[...] = len(calls)
            return out

    a = tf.Variable(Counting(), name="a")
    deps = [tf.Variable(a.initialized_value() * float(i), name=f"d{i}") for i in range(1, 5)]
    tf.variables_initializer(deps + [a] + deps).run()
    assert len(calls) == 1
    assert [d.numpy()[0] for d in deps] == [1.0, 2.0, 3.0, 4.0]
    tf.variables_initializer([a]).run()  # a new run re-runs it
    assert len(calls) == 2


def test_dependency_initialized_before_the_run_is_not_rerun():
    p = tf.Variable(tf.random_normal([3]), name="p")
    q = tf.Variable(p.initialized_value() * 3.0, name="q")
    init(p)
    p.assign([1.0, 2.0, 3.0])
    tf.variables_initializer([q]).run()
    assert p.numpy().tolist() == [1.0, 2.0, 3.0]  # p kept its (assigned) value
    assert q.numpy().tolist() == [3.0, 6.0, 9.0]
    # in the run's list, p is re-initialized first and q follows its new value
    tf.variables_initializer([q, p]).run()
    assert p.numpy().tolist() != [1.0, 2.0, 3.0]
    assert np.array_equal(q.numpy(), p.numpy() * np.float32(3))


def test_dependency_not_initialized_and_not_listed_is_initialized_first():
    p = tf.Variable(tf.random_normal([3]), name="p")
    q = tf.Variable(p.initialized_value(), name="q")
    tf.variables_initializer([q]).run()
    assert p.is_initialized and np.array_equal(p.numpy(), q.numpy())


def test_cycle_is_an_error_naming_the_cycle():
    # The API builds initial values from existing variables only, so a cycle needs a callable
    # initial value that, when run again later, reads a variable created after it.
    later = {}

    def a_value():
        return later["b"].initialized_value() + 1.0 if "b" in later else tf.zeros([3])

    a = tf.Variable(a_value, name="a")
    b = tf.Variable(a.initialized_value() * 2.0, name="b")
    c = tf.Variable(b.initialized_value(), name="c")
    init(a)
    later["b"] = b
    for order in ([a, b, c], [b, a], [c, a]):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"cycle: (a -> b -> a|b -> a -> b)"):
            tf.variables_initializer(order).run()
    assert a.numpy().tolist() == [0.0, 0.0, 0.0]  # untouched by the failed runs
    assert not b.is_initialized and not c.is_initialized
    # a is initialized and not in this run: its current value is used, so there is no cycle
    tf.variables_initializer([c]).run()
    assert b.numpy().tolist() == c.numpy().tolist() == [0.0, 0.0, 0.0]


def test_self_cycle():
    later = {}
    a = tf.Variable(lambda: later["a"].initialized_value() if "a" in later else tf.ones([2]), name="a")
    init(a)
    later["a"] = a
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"cycle: a -> a"):
        init(a)
    assert a.numpy().tolist() == [1.0, 1.0]


def test_shuffled_runs_use_python_random():
    # a quick extra run of the ordering property with plain random shuffles
    rnd = random.Random(7)
    for _ in range(5):
        with tf.Graph().as_default():
            vs = _chain()
            order = vs * 2
            rnd.shuffle(order)
            tf.variables_initializer(order).run()
            _check_chain(vs)
