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
from varstore.tensors import EagerTensor

CPU = "/device:CPU:0"


@pytest.fixture(autouse=True)
def fresh_graph():
    tf.reset_default_graph()
    yield
    tf.reset_default_graph()


def init(*vs):
    tf.variables_initializer(vs).run()


def run(*fetches):
    """One ``Session.run`` of ``fetches`` in the default graph (one value for one fetch)."""
    out = tf.Session().run(list(fetches))
    return out[0] if len(fetches) == 1 else out


def has_gpu() -> bool:
    return "/device:GPU:0" in devices.list_devices()


# -- creation and properties -------------------------------------------------------------
def test_properties():
    v = tf.Variable(tf.zeros([2, 3]), name="v")
    assert (v.name, v.shape, v.get_shape(), v.dtype) == ("v:0", (2, 3), (2, 3), np.float32)
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
    vs = [tf.Variable(0.0) for _ in range(3)] + [tf.Variable(0.0, name="weights") for _ in range(2)]
    ops = ["Variable", "Variable_1", "Variable_2", "weights", "weights_1"]
    assert [v.op.name for v in vs] == ops  # the checkpoint keys
    assert [v.name for v in vs] == [n + ":0" for n in ops]  # TF's tensor names


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
    # as TF, the function is called for every op made in the scope (tf.ones too); the variable's:
    seen = [s for s in seen if s[0] == "VariableV2"]
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
    read = v.read_value()  # graph mode: a tensor, read when run
    assert isinstance(read, tf.Tensor) and read.name.endswith("/read:0")
    live, snap, host = v.value(), run(read), v.numpy()
    assert all(isinstance(a, np.ndarray) for a in (live, snap, host))
    assert live.tolist() == snap.tolist() == host.tolist() == [1.0, 2.0, 3.0]
    host[0] = 99  # a copy: the variable does not change
    snap[1] = 99
    assert v.numpy().tolist() == [1.0, 2.0, 3.0]
    run(v.assign([4.0, 5.0, 6.0]))
    assert live.tolist() == [4.0, 5.0, 6.0]  # value() is the live buffer
    assert run(read).tolist() == [4.0, 5.0, 6.0]  # the same read tensor, run again: the new value
    assert np.asarray(v).tolist() == [4.0, 5.0, 6.0]
    assert np.asarray(v, dtype=np.float64).dtype == np.float64
    assert v.eval().tolist() == [4.0, 5.0, 6.0]


def test_read_value_in_eager_mode_is_a_snapshot():
    with tf.eager_mode():
        v = tf.Variable([1.0, 2.0, 3.0])
        snap = v.read_value()
        assert isinstance(snap, EagerTensor) and snap.numpy().tolist() == [1.0, 2.0, 3.0]
        v.assign([4.0, 5.0, 6.0])  # applied at once
        assert snap.numpy().tolist() == [1.0, 2.0, 3.0]
        assert v.read_value().numpy().tolist() == v.numpy().tolist() == [4.0, 5.0, 6.0]


def _arithmetic_cases(a, b, m, row):
    return {
        "a+1": (a + 1, [2.0, 3.0]), "1+a": (1 + a, [2.0, 3.0]), "a-b": (a - b, [-2.0, -2.0]),
        "5-a": (5 - a, [4.0, 3.0]), "a*b": (a * b, [3.0, 8.0]), "2*a": (2 * a, [2.0, 4.0]),
        "a/2": (a / 2, [0.5, 1.0]), "2/a": (2 / a, [2.0, 1.0]), "-a": (-a, [-1.0, -2.0]),
        "row@m": (row @ m, [[1.0, 4.0]]), "np+a": (np.array([1.0, 1.0], np.float32) + a, [2.0, 3.0]),
        "a[1]": (a[1], 2.0), "abs": (abs(-a), [1.0, 2.0]), "a**2": (a ** 2, [1.0, 4.0]),
        "a<b": (a < b, [True, True]),
    }


def test_arithmetic_builds_tensors_in_graph_mode():
    a = tf.Variable([1.0, 2.0])
    b = tf.Variable([3.0, 4.0])
    m = tf.Variable([[1.0, 0.0], [0.0, 2.0]])
    row = tf.Variable([[1.0, 2.0]])
    cases = _arithmetic_cases(a, b, m, row)  # built before the variables hold values, as in TF
    for label, (got, _) in cases.items():
        assert isinstance(got, tf.Tensor) and not isinstance(got, tf.Variable), (label, type(got))
    init(a, b, m, row)
    labels = list(cases)
    values = tf.Session().run([cases[k][0] for k in labels])
    for label, got in zip(labels, values):
        assert isinstance(got, (np.ndarray, np.generic)), (label, type(got))
        assert np.asarray(got).tolist() == cases[label][1], label
    run(a.assign([10.0, 20.0]))
    assert run(cases["a+1"][0]).tolist() == [11.0, 21.0]  # a tensor reads the variable at each run
    with pytest.raises(ValueError, match="rank"):  # as TF: matmul needs rank 2
        a @ m


def test_arithmetic_computes_at_once_in_eager_mode():
    with tf.eager_mode():
        a = tf.Variable([1.0, 2.0])
        b = tf.Variable([3.0, 4.0])
        m = tf.Variable([[1.0, 0.0], [0.0, 2.0]])
        row = tf.Variable([[1.0, 2.0]])
        for label, (got, want) in _arithmetic_cases(a, b, m, row).items():
            assert isinstance(got, EagerTensor), (label, type(got))
            assert np.asarray(got).tolist() == want, label


def test_reading_before_init_fails_on_every_path():
    v = tf.Variable(tf.zeros([2]), name="layer/w")
    msg = re.escape("Attempting to use uninitialized value layer/w")
    # graph mode: these build tensors (nothing is read yet) and fail when run, as in TF
    tensors = [v.value(), v.read_value(), v + 1, -v, v.assign_add([1.0, 1.0]), v.assign_sub([1.0, 1.0])]
    reads = [v.numpy, v.eval, lambda: np.asarray(v), lambda: tf.Session().run(v),
             lambda: tf.Session().run({"x": [v]})] + [lambda t=t: tf.Session().run(t) for t in tensors]
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
@pytest.mark.parametrize("mode", ["graph", "eager"])
@pytest.mark.parametrize("scope", ["/gpu:0", "/job:ps/task:3", "/cpu:0", "function"])
def test_mutations_ignore_the_surrounding_scope(placement, scope, mode):
    placement.set_soft_placement(True)
    v = tf.Variable(tf.zeros([3]), name="v")
    init(v)
    before = (v.device, v.requested_device)
    calls = []
    spec = (lambda op: calls.append(op) or "/job:ps/task:9") if scope == "function" else scope
    values = {}
    if mode == "eager":  # eager ops compute at once, in their scope (as TF): made outside it
        with tf.eager_mode():
            values = {"five": tf.ones([3]) * 5.0, "one": tf.ones([3])}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with tf.device(spec), tf.eager_mode(mode == "eager"):
            # graph mode: deferred values made in the scope, evaluated on v's device when run
            five = values["five"] if values else tf.ones([3]) * 5.0
            one = values["one"] if values else tf.ones([3])
            steps = [lambda: v.assign([1.0, 2.0, 3.0]), lambda: v.assign_add([1.0, 1.0, 1.0]),
                     lambda: v.assign_sub([0.5, 0.5, 0.5]), lambda: v.load([2.0, 3.0, 4.0]),
                     lambda: v.assign(five), lambda: v.assign_add(one)]
            sess = tf.Session()
            for step in steps:
                op = step()
                if mode == "graph" and op is not None:
                    sess.run(op)  # run inside the scope too: still on v's device
    assert (v.device, v.requested_device) == before
    assert v.numpy().tolist() == [6.0, 6.0, 6.0]
    assert isinstance(v.value(), np.ndarray)
    # nothing was placed for the mutations: the device function saw only the pure tensor ops
    # (tf.ones, the constant, the product), as TF calls it for every op, and no placement
    # warning for the scope
    assert not [c for c in calls if c.kind != "Op" or v.op.name in (c.name or "")], calls
    assert not [w for w in caught if issubclass(w.category, devices.PlacementWarning)]


def test_gpu_variable_assign_under_cpu_scope_stays(placement):
    placement.set_soft_placement(True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with tf.device("/gpu:0"):
            v = tf.Variable(tf.zeros([2]))
    init(v)
    with tf.device("/cpu:0"):
        op = v.assign([1.0, 2.0])
        run(op)
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
    op = v.assign(src)  # the value is a constant: taken when the op is built, as in TF
    src[0] = 42
    assert not v.is_initialized
    run(op)  # assign on an uninitialized variable initializes it (TF's Assign does)
    assert v.is_initialized
    assert v.numpy().tolist() == [1.0, 2.0, 3.0]
    run(v.assign(src))
    src[1] = 42
    assert v.numpy().tolist() == [42.0, 2.0, 3.0]
    # a fed array is the caller's too: the variable copies it
    ph = tf.placeholder(tf.float32, [3])
    fed = np.array([7.0, 8.0, 9.0], np.float32)
    run_fed = tf.Session().run(v.assign(ph), feed_dict={ph: fed})
    fed[0] = -1
    run_fed[1] = -1
    assert v.numpy().tolist() == [7.0, 8.0, 9.0] and not np.shares_memory(v.value(), fed)
    v.load(fed)  # load copies too
    fed[2] = -1
    assert v.numpy().tolist() == [-1.0, 8.0, 9.0]


@pytest.mark.parametrize("value", [
    [1, 2, 3], [1.0, 2.0, 3.0], (1.0, 2.0, 3.0),
    np.array([1, 2, 3], np.float64), np.array([1, 2, 3], np.float16), np.array([1, 2, 3], np.int64),
    np.array([1, 2, 3], tf.bfloat16),
], ids=["int-list", "float-list", "tuple", "float64", "float16", "int64", "bfloat16"])
def test_assign_converts_values(value):
    v = tf.Variable(tf.zeros([3]))
    init(v)
    op = v.assign(value)
    assert not v.numpy().any()  # built, not run
    assert run(op).tolist() == [1.0, 2.0, 3.0]
    out = v.numpy()
    assert out.dtype == np.float32 and out.tolist() == [1.0, 2.0, 3.0]
    assert v.dtype == np.float32


def test_assign_converts_torch_tensors():
    torch = pytest.importorskip("torch")
    v = tf.Variable(tf.zeros([2, 2]))
    init(v)
    run(v.assign(torch.arange(4, dtype=torch.float64).reshape(2, 2)))
    assert v.numpy().tolist() == [[0.0, 1.0], [2.0, 3.0]] and v.numpy().dtype == np.float32
    assert run(v.assign_add(torch.ones(2, 2))).tolist() == [[1.0, 2.0], [3.0, 4.0]]
    v.load(torch.full((2, 2), 7.0))
    assert v.numpy().tolist() == [[7.0, 7.0], [7.0, 7.0]]
    i = tf.Variable(tf.zeros([2], dtype=tf.int32))
    init(i)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"float32.*int32"):
        i.assign(torch.tensor([1.0, 2.0]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"float32.*int32"):
        i.load(torch.tensor([1.0, 2.0]))
    run(i.assign(torch.tensor([5, 6])))
    assert i.numpy().tolist() == [5, 6] and i.numpy().dtype == np.int32


def test_assign_from_another_variable():
    a = tf.Variable([1.0, 2.0])
    b = tf.Variable(tf.zeros([2], dtype=tf.float64))
    c = tf.Variable(tf.zeros([2]))
    init(a, b, c)
    # as TF: a float32 variable is not implicitly converted for a float64 one; cast it
    with pytest.raises(TypeError, match=r"float32.*float64"):
        b.assign(a)
    copy_ab, copy_ac = b.assign(tf.cast(a, tf.float64)), c.assign(a)
    run(copy_ab, copy_ac)
    assert b.numpy().tolist() == [1.0, 2.0] and b.numpy().dtype == np.float64
    assert c.numpy().tolist() == [1.0, 2.0]
    run(a.assign([5.0, 5.0]))
    assert b.numpy().tolist() == c.numpy().tolist() == [1.0, 2.0]  # copies, not views of a
    run(copy_ac)  # the op reads a again when run
    assert c.numpy().tolist() == [5.0, 5.0]
    b.load(a)  # load takes a variable's value (converted)
    assert b.numpy().tolist() == [5.0, 5.0] and b.numpy().dtype == np.float64


@pytest.mark.parametrize("bad", [[1.0, 2.0], [[1.0, 2.0, 3.0]], np.zeros((3, 1), np.float32), 1.0])
def test_assign_wrong_shape_names_both_shapes(bad):
    v = tf.Variable([1.0, 2.0, 3.0], name="v")
    init(v)
    shape = re.escape(str(np.shape(bad)))
    # building the op: ValueError naming both shapes, as TF's shape check
    for make in (v.assign, v.assign_add, v.assign_sub):
        with pytest.raises(ValueError, match=rf"\(3,\).*{shape}"):
            make(bad)
    # a value of unknown shape: the run checks it (InvalidArgumentError, as TF at run time)
    ph = tf.placeholder(tf.float32)
    for op in (v.assign(ph), v.assign_add(ph)):
        with pytest.raises(tf.errors.InvalidArgumentError, match=rf"{shape}.*\(3,\)"):
            tf.Session().run(op, feed_dict={ph: np.asarray(bad, np.float32)})
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"{shape}.*\(3,\)"):
        v.load(bad)
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
    with pytest.raises(TypeError):  # InvalidTypeError: what TF users catch
        v.assign(bad)
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"({src}|1\.5).*int32"):
        v.load(bad)
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
            run(v.assign(arr))
            assert v.numpy().tolist() == values
        else:
            with pytest.raises(tf.errors.InvalidArgumentError, match=rf"{src_dtype}.*{var_dtype}"):
                v.assign(arr)
            with pytest.raises(tf.errors.InvalidArgumentError, match=rf"{src_dtype}.*{var_dtype}"):
                v.load(arr)
            assert not v.numpy().any()
            with pytest.raises(tf.errors.InvalidArgumentError, match=rf"{src_dtype}.*{var_dtype}"):
                tf.Variable(arr, dtype=dst)


def test_validate_shape_false_allows_a_new_shape():
    v = tf.Variable(tf.zeros([2]), validate_shape=False)
    init(v)
    op = v.assign(np.ones((2, 3), np.float32))
    assert v.shape == (2,)  # built, not run
    run(op)
    assert v.shape == (2, 3) and v.numpy().shape == (2, 3)
    # tf.assign(validate_shape=False) on a variable that validates: that op may change the shape
    w = tf.Variable(tf.zeros([2]))
    init(w)
    with pytest.raises(ValueError, match=r"\(2,\).*\(4,\)"):
        w.assign(np.ones(4, np.float32))
    run(tf.assign(w, np.ones(4, np.float32), validate_shape=False))
    assert w.numpy().tolist() == [1.0] * 4


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


def _torn_reads(readers) -> tuple:
    """Run ``readers`` (functions of (v, read tensor, session)) in threads while a writer thread
    runs assign ops that set all-ones and all-zeros; return (errors, torn reads, read counts)."""
    n = 1 << 22  # 16 MiB of float32: copies long enough to interleave with a writer
    v = tf.Variable(tf.zeros([n]), name="big")
    init(v)
    zeros, ones = np.zeros(n, np.float32), np.ones(n, np.float32)
    set_ones, set_zeros = v.assign(ones), v.assign(zeros)  # graph mode: ops the writer runs
    read = v.read_value()
    done = threading.Event()
    torn, reads, errors = [], [0] * len(readers), []

    def writer():
        try:
            sess = tf.Session()
            for i in range(60):
                sess.run(set_ones if i % 2 == 0 else set_zeros)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            done.set()

    def reader(kind):
        sess = tf.Session()
        try:
            while not done.is_set():
                snap = readers[kind](v, read, sess)
                reads[kind] += 1
                if snap.min() != snap.max():
                    torn.append((kind, float(snap.min()), float(snap.max())))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(len(readers))]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert float(v.numpy()[0]) == 0.0  # the writer's last run (i = 59) set zeros
    return errors, torn, reads


def test_concurrent_reads_never_see_a_torn_value():
    # np.array(v) is a copy taken under the lock (np.asarray(v) may be the live buffer)
    errors, torn, reads = _torn_reads([lambda v, read, sess: v.numpy(), lambda v, read, sess: sess.run(v),
                                       lambda v, read, sess: np.array(v)])
    assert not errors and not torn, (errors, torn[:5])
    assert all(reads), reads


def test_concurrent_read_tensor_never_sees_a_torn_value():
    # sess.run(v.read_value()) reads what sess.run(v) reads: as consistent under concurrent assigns
    errors, torn, reads = _torn_reads([lambda v, read, sess: sess.run(read)])
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
        assert sess.run(tf.report_uninitialized_variables()).tolist() == [b"b"]
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
    assert isinstance(fetch, tf.Tensor) and fetch.dtype == np.bool_
    with tf.Session() as sess:
        got = sess.run(fetch)
        assert isinstance(got, np.bool_) and not got  # a numpy scalar, as TF's sess.run gives
        sess.run(v.initializer)
        assert sess.run(fetch)
        assert sess.run([fetch, {"x": fetch}]) == [True, {"x": True}]


def test_report_uninitialized_variables():
    tf.Variable(1.0, name="a")
    b = tf.Variable(2.0, name="b", trainable=False)
    all_report = tf.report_uninitialized_variables()  # var_list=None: all at run time
    some = tf.report_uninitialized_variables([b])
    c = tf.Variable(3.0, name="c")  # made after the report ops: all_report still names it
    with pytest.raises(TypeError):  # a tensor: run it to get the names
        list(all_report)
    with tf.Session() as sess:
        got = sess.run(all_report)
        assert isinstance(got, np.ndarray) and got.tolist() == [b"a", b"b", b"c"]  # bytes, as TF
        assert sess.run(some).tolist() == [b"b"]
        sess.run(b.initializer)
        assert sess.run(all_report).tolist() == [b"a", b"c"]
        assert sess.run(some).tolist() == []
        sess.run(tf.global_variables_initializer())
        assert sess.run(all_report).tolist() == [] and sess.run(all_report).shape == (0,)
    del c


def test_report_names_are_op_names_under_scopes():
    with tf.name_scope("layer"):
        tf.Variable(1.0, name="w")
    assert run(tf.report_uninitialized_variables()).tolist() == [b"layer/w"]


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
        # as TF: exactly the listed variables are initialized (a dependency not listed is
        # computed from its initial value but left alone), all from one draw of base
        assert {id(v) for v in vs if v.is_initialized} == set(map(id, order))
        names = [v.op.name for v in vs]
        got = {v.op.name: v.numpy() for v in vs if v.is_initialized}
        src = next(((n, got[n]) for n in ("base", "same", "twice") if n in got), None)
        if src is None:  # only mixed and/or neg
            if "neg" in got and "mixed" in got:
                assert np.array_equal(got["neg"], -got["mixed"] / np.float32(4))
            return
        base = src[1] / np.float32(2) if src[0] == "twice" else src[1]
        want = {"base": base, "same": base, "twice": base * np.float32(2)}
        want["mixed"] = want["same"] + want["twice"] - np.float32(1)
        want["neg"] = -want["mixed"] / np.float32(4)
        for n in names:
            if n in got:
                assert np.array_equal(got[n], want[n]), n


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
    run(p.assign([1.0, 2.0, 3.0]))
    tf.variables_initializer([q]).run()
    assert p.numpy().tolist() == [1.0, 2.0, 3.0]  # p kept its (assigned) value
    assert q.numpy().tolist() == [3.0, 6.0, 9.0]
    # in the run's list, p is re-initialized first and q follows its new value
    tf.variables_initializer([q, p]).run()
    assert p.numpy().tolist() != [1.0, 2.0, 3.0]
    assert np.array_equal(q.numpy(), p.numpy() * np.float32(3))


def test_dependency_not_initialized_and_not_listed_is_left_uninitialized():
    # TF: initialized_value() is the variable's value if initialized, else its initial value;
    # computing it does not initialize the variable
    p = tf.Variable(tf.random_normal([3]), name="p")
    q = tf.Variable(p.initialized_value(), name="q")
    tf.variables_initializer([q]).run()
    assert q.is_initialized and not p.is_initialized
    assert run(tf.report_uninitialized_variables()).tolist() == [b"p"]
    init(p)  # p's own initializer draws anew
    assert not np.array_equal(p.numpy(), q.numpy())
    # once p is initialized (and not re-initialized in the run), q follows p's value
    run(p.assign([1.0, 2.0, 3.0]))
    init(q)
    assert q.numpy().tolist() == [1.0, 2.0, 3.0]


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
    # a is initialized and not in this run: its current value is used, so there is no cycle;
    # c gets b's initial value (a * 2), and b itself stays uninitialized (as TF)
    tf.variables_initializer([c]).run()
    assert c.numpy().tolist() == [0.0, 0.0, 0.0] and not b.is_initialized


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
