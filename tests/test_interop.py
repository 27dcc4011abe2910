"""Zero-copy interop: __array__, DLPack and __cuda_array_interface__ on Variables, and
assign / apply_gradients accepting anything that speaks those protocols.

Both execution modes: in eager mode (``tf.eager_mode()``) an assign or a step applies when
called; in graph mode (TF 1.x's default) it builds an op that applies when ``sess.run``
runs it. ``v.load(x)`` sets a value now in both.

numpy everywhere; torch (CPU) where installed."""
from __future__ import annotations

import importlib

import numpy as np
import pytest

import varstore as tf
from devices.dtypes import bfloat16

try:
    import torch
except ImportError:  # pragma: no cover - torch is optional
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


@pytest.fixture(autouse=True)
def _fresh_graph():
    tf.reset_default_graph()
    yield
    tf.reset_default_graph()


def var(value, dtype="float32", name="v"):
    v = tf.Variable(np.asarray(value, dtype=dtype), name=name)
    v.initializer.run()
    return v


class DLPackOnly:
    """An array from some other library that speaks only DLPack."""

    def __init__(self, a):
        self._a = a

    def __dlpack__(self, **kw):
        return self._a.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


class ArrayOnly:
    """An array-like that speaks only the __array__ protocol."""

    def __init__(self, a):
        self._a = a

    def __array__(self, dtype=None, copy=None):
        return self._a if dtype is None else self._a.astype(dtype)


def _kernels_ready() -> bool:
    try:
        return hasattr(importlib.import_module("varstore.train.kernels"), "apply_dense")
    except ImportError:
        return False


needs_kernels = pytest.mark.skipif(not _kernels_ready(), reason="optimizer kernels not available")
MODES = ["eager", "graph"]


def apply(mode, build):
    """Eager: ``build()`` applies as it is called. Graph: it builds an op, then run once."""
    if mode == "eager":
        with tf.eager_mode():
            build()
        return
    op = build()
    assert op is not None
    with tf.Session() as sess:
        sess.run(op)


# Graph-mode conversions of foreign arrays that the core does not do yet (reported): a value
# captured by an op goes through initializers._to_numpy (np.asarray) instead of
# devices.backends.arrays.host_array (DLPack, torch bfloat16, clear errors), and a fed value
# through Tensor._feed, which takes a torch dtype for a numpy one.


# -- numpy: __array__ ------------------------------------------------------------------------------
def test_np_asarray_shares_the_live_buffer():
    v = var([1.0, 2.0, 3.0])
    a = np.asarray(v)
    assert np.shares_memory(a, v.value())
    v.load([4.0, 5.0, 6.0])
    assert a.tolist() == [4.0, 5.0, 6.0]  # later assigns show through
    with tf.Session() as sess:
        sess.run(v.assign([8.0, 5.0, 6.0]))  # a graph-mode assign op writes in place too
    assert a.tolist() == [8.0, 5.0, 6.0]
    a[0] = 7.0                            # and writes change the variable
    assert v.numpy().tolist() == [7.0, 5.0, 6.0]
    assert np.shares_memory(np.asarray(v, copy=False), a)
    assert np.shares_memory(np.asarray(v, dtype=np.float32), a)


def test_np_array_is_a_snapshot_copy():
    v = var([1.0, 2.0])
    snap = np.array(v)  # copy=True: taken under the variable's lock
    assert not np.shares_memory(snap, v.value())
    v.load([3.0, 4.0])
    assert v.numpy().tolist() == [3.0, 4.0] and snap.tolist() == [1.0, 2.0]
    assert not np.shares_memory(np.asarray(v, copy=True), v.value())


def test_np_asarray_other_dtype_is_a_converted_copy():
    v = var([1.0, 2.0])
    a = np.asarray(v, dtype=np.float64)
    assert a.dtype == np.float64 and not np.shares_memory(a, v.value())
    with pytest.raises(ValueError, match="needs a copy"):
        np.asarray(v, dtype=np.float64, copy=False)


def test_numpy_functions_and_ufuncs_read_the_variable():
    v = var([[1.0, 2.0], [3.0, 4.0]])
    assert np.sum(v) == 10.0
    assert np.add(v, 1).tolist() == [[2.0, 3.0], [4.0, 5.0]]
    assert np.stack([v, v]).shape == (2, 2, 2)


def test_uninitialized_variable_refuses_every_protocol():
    v = tf.Variable(tf.zeros([2]), name="cold")
    for read in (lambda: np.asarray(v), lambda: np.from_dlpack(v), v.__dlpack_device__):
        with pytest.raises(tf.errors.FailedPreconditionError, match="uninitialized value cold"):
            read()


def test_cpu_variable_has_no_cuda_array_interface():
    cold = tf.Variable(tf.zeros([2]), name="cold")
    warm = var([1.0])
    # hasattr must be False (not an error) whether or not the variable is initialized,
    # so libraries probing for GPU arrays fall through to __array__/DLPack.
    assert not hasattr(cold, "__cuda_array_interface__")
    assert not hasattr(warm, "__cuda_array_interface__")


# -- DLPack -----------------------------------------------------------------------------------------
def test_np_from_dlpack_shares_memory():
    v = var([1.0, 2.0])
    a = np.from_dlpack(v)
    assert np.shares_memory(a, v.value())
    assert v.__dlpack_device__()[0] == 1  # kDLCPU


@needs_torch
@pytest.mark.parametrize("source", ["variable", "value"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "bfloat16", "float16", "bool", "uint8"])
def test_torch_from_dlpack_shares_memory(source, dtype):
    v = var([1, 0, 1], dtype=dtype)
    if dtype == "bfloat16" and source == "value":
        # v.value() is a plain numpy array, and numpy cannot export bfloat16: pass the Variable.
        with pytest.raises(BufferError):
            torch.from_dlpack(v.value())
        return
    t = torch.from_dlpack(v if source == "variable" else v.value())
    assert str(t.dtype) == f"torch.{dtype}"
    assert t.data_ptr() == v.value().ctypes.data
    t[1] = 1
    assert v.numpy().astype(np.float64).tolist() == [1.0, 1.0, 1.0]


@needs_torch
def test_torch_from_dlpack_of_bfloat16_keeps_the_bits():
    bits = np.array([0x3F80, 0xC020, 0x7F80, 0x0001], np.uint16)  # 1, -2.5, inf, a subnormal
    v = var(bits.view(bfloat16), dtype=bfloat16)
    t = torch.from_dlpack(v)
    assert t.dtype == torch.bfloat16
    assert t.view(torch.int16).numpy().view(np.uint16).tolist() == bits.tolist()


# -- assign accepts the protocols ------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wrap", [DLPackOnly, ArrayOnly], ids=["dlpack-only", "array-only"])
def test_assign_accepts_protocol_objects(wrap, mode):
    v = var([0.0, 0.0, 0.0])
    apply(mode, lambda: v.assign(wrap(np.array([1.0, 2.0, 3.0], np.float32))))
    assert v.numpy().tolist() == [1.0, 2.0, 3.0]
    apply(mode, lambda: v.assign_add(wrap(np.array([1.0, 1.0, 1.0], np.float32))))
    assert v.numpy().tolist() == [2.0, 3.0, 4.0]


def test_load_accepts_protocol_objects():
    v = var([0.0, 0.0])
    v.load(DLPackOnly(np.array([1.0, 2.0], np.float32)))
    assert v.numpy().tolist() == [1.0, 2.0]
    v.load(ArrayOnly(np.array([3.0, 4.0], np.float32)))
    assert v.numpy().tolist() == [3.0, 4.0]


def test_assign_copies_into_the_variable_never_aliases_the_source():
    v = var([0.0, 0.0])
    src = np.array([1.0, 2.0], np.float32)
    with tf.eager_mode():
        v.assign(DLPackOnly(src))
    src[0] = 99.0
    assert v.numpy().tolist() == [1.0, 2.0]
    # Graph mode: the op holds the value as it was when built (a constant, as in TF).
    src = np.array([3.0, 4.0], np.float32)
    op = v.assign(src)
    src[0] = 99.0
    with tf.Session() as sess:
        sess.run(op)
    assert v.numpy().tolist() == [3.0, 4.0]
    src[1] = 99.0
    assert v.numpy().tolist() == [3.0, 4.0]


@needs_torch
@pytest.mark.parametrize("mode", MODES)
def test_assign_accepts_torch_tensors(mode):
    v = var([0.0, 0.0, 0.0])
    before = v.value()
    apply(mode, lambda: v.assign(torch.tensor([1.0, 2.0, 3.0])))
    assert v.numpy().tolist() == [1.0, 2.0, 3.0]
    assert v.value() is before  # written in place
    apply(mode, lambda: v.assign(torch.tensor([4.0, 5.0, 6.0], dtype=torch.float64)))  # within-kind cast
    assert v.numpy().tolist() == [4.0, 5.0, 6.0]
    apply(mode, lambda: v.assign(torch.arange(6.0).view(3, 2)[:, 0]))  # non-contiguous
    assert v.numpy().tolist() == [0.0, 2.0, 4.0]
    apply(mode, lambda: v.assign_sub(torch.ones(3)))
    assert v.numpy().tolist() == [-1.0, 1.0, 3.0]
    assert v.value() is before


@needs_torch
@pytest.mark.parametrize("mode", MODES)
def test_assign_accepts_torch_bfloat16_bit_exact(mode):
    bits = torch.tensor([0x3F80, -0x3FE0, 0x7F80, 0x0001], dtype=torch.int16)
    v = var(np.zeros(4), dtype=bfloat16)
    apply(mode, lambda: v.assign(bits.view(torch.bfloat16)))
    assert v.numpy().view(np.int16).tolist() == bits.tolist()


@needs_torch
def test_load_accepts_torch_bfloat16_bit_exact():
    bits = torch.tensor([0x3F80, -0x3FE0, 0x7F80, 0x0001], dtype=torch.int16)
    v = var(np.zeros(4), dtype=bfloat16)
    v.load(bits.view(torch.bfloat16))
    assert v.numpy().view(np.int16).tolist() == bits.tolist()


@needs_torch
@pytest.mark.parametrize("mode", MODES)
def test_assign_refuses_with_clear_errors(mode):
    v = var([0.0, 0.0])
    # Graph mode checks the shape when the op is built (ValueError, as TF); eager mode when
    # the value is written.
    with pytest.raises(tf.errors.InvalidArgumentError if mode == "eager" else ValueError, match="hape"):
        apply(mode, lambda: v.assign(torch.ones(3)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="float32"):
        apply(mode, lambda: v.assign(torch.ones(2, dtype=torch.complex64)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="detach"):
        apply(mode, lambda: v.assign(torch.ones(2, requires_grad=True)))
    assert v.numpy().tolist() == [0.0, 0.0]


@needs_torch
def test_a_torch_tensor_can_be_fed_to_a_placeholder():
    """TF's feed_dict takes anything numpy can convert (torch tensors included)."""
    v = var([0.0, 0.0])
    p = tf.placeholder(tf.float32, [2])
    with tf.Session() as sess:
        sess.run(v.assign(p), feed_dict={p: torch.tensor([1.0, 2.0])})
    assert v.numpy().tolist() == [1.0, 2.0]


# -- apply_gradients accepts the protocols ------------------------------------------------------------
@needs_kernels
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["numpy", "dlpack-only", "array-only", "torch", "variable"])
def test_apply_gradients_accepts_protocol_gradients(kind, mode):
    if kind == "torch" and torch is None:
        pytest.skip("torch is not installed")
    w = var([1.0, 2.0], name="w")
    g = np.array([2.0, 2.0], np.float32)
    grad = {"numpy": lambda: g, "dlpack-only": lambda: DLPackOnly(g), "array-only": lambda: ArrayOnly(g),
            "torch": lambda: torch.from_numpy(g), "variable": lambda: var(g, name="g")}[kind]()
    opt = tf.train.GradientDescentOptimizer(0.5)
    apply(mode, lambda: opt.apply_gradients([(grad, w)]))
    assert w.numpy().tolist() == [0.0, 1.0]


@needs_kernels
def test_apply_gradients_fed_through_placeholders():
    """TF 1.x's loop: the train op built once, each step's gradient fed (numpy, lists)."""
    w = var([1.0, 2.0], name="w")
    p = tf.placeholder(tf.float32, [2])
    train = tf.train.GradientDescentOptimizer(0.5).apply_gradients([(p, w)])
    with tf.Session() as sess:
        sess.run(train, feed_dict={p: np.array([2.0, 2.0], np.float32)})
        sess.run(train, feed_dict={p: [2.0, 2.0]})
    assert w.numpy().tolist() == [-1.0, 0.0]


@needs_kernels
@needs_torch
def test_apply_gradients_fed_torch_gradients_through_placeholders():
    w = var([1.0, 2.0], name="w")
    p = tf.placeholder(tf.float32, [2])
    train = tf.train.GradientDescentOptimizer(0.5).apply_gradients([(p, w)])
    with tf.Session() as sess:
        sess.run(train, feed_dict={p: torch.full((2,), 2.0)})
    assert w.numpy().tolist() == [0.0, 1.0]


@needs_kernels
@needs_torch
@pytest.mark.parametrize("mode", MODES)
def test_apply_gradients_with_torch_autograd_gradients(mode):
    """The PyTorch way: autograd computes the gradient, varstore applies it in place."""
    w = var([1.0, -1.0], name="w")
    x = torch.from_dlpack(w).clone().requires_grad_(True)
    (x ** 2).sum().backward()
    opt = tf.train.GradientDescentOptimizer(0.25)
    apply(mode, lambda: opt.apply_gradients([(x.grad, w)]))
    assert w.numpy().tolist() == [0.5, -0.5]
