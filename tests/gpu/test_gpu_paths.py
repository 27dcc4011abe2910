"""Every GPU code path of varstore, end to end, on a real CUDA card (issue 8).

Skipped without cupy or a card (CI). ``scripts/gpu-check`` runs it on a lent machine;
``scripts/gpu-check --dry-run`` also runs it on a CPU machine against ``tests/fakecupy``
(a numpy-backed stand-in for cupy) at tiny sizes, which proves the tests' own Python
but nothing about CUDA: under the stand-in, optimizer kernels are routed to the CPU
kernels (``_kernels_under_fakecupy``) and torch CUDA tests skip.

Optimizer kernels against the float64 reference are in ``test_kernels_gpu.py``; this
file checks the paths around them: placement, scopes, device-side random values,
assignment across devices, half-precision parameters, checkpoints across devices,
bounded host memory while gathering, async saves, memory accounting.
"""
from __future__ import annotations

import gc
import inspect
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

cp = pytest.importorskip("cupy")

from devices.backends.gpu import gpu_count  # noqa: E402

if gpu_count() == 0:
    pytest.skip("no CUDA device visible to cupy", allow_module_level=True)

import devices  # noqa: E402
import varstore as tf  # noqa: E402
from devices import get_device  # noqa: E402
from devices.backends.base import DEFAULT_CHUNK_BYTES  # noqa: E402
from devices.backends.gpu import GpuDevice  # noqa: E402
from varstore import initializers as _init  # noqa: E402
from varstore.checkpoint import CheckpointReader  # noqa: E402
from varstore.train.kernels import reference  # noqa: E402

pytestmark = pytest.mark.gpu

FAKE = bool(getattr(cp, "__fakecupy__", False))
MiB = 1 << 20
# Sizes: real ones on a card, tiny ones under the dry run's stand-in.
BIG_SAVE_BYTES = 48 * MiB if FAKE else 2 << 30      # the bounded-RSS save (issue: 2 GiB)
RSS_BUDGET = 256 * MiB                              # growth allowed beyond the staging buffers
ASYNC_VAR_BYTES = 256 << 10 if FAKE else 64 * MiB   # each of the async-save variables
GPU0 = "/device:GPU:0"
CPU0 = "/device:CPU:0"

try:
    import torch
    HAVE_TORCH_CUDA = bool(torch.cuda.is_available()) and not FAKE
except Exception:  # not installed, or a broken CUDA build
    torch = None
    HAVE_TORCH_CUDA = False


# -- fixtures and helpers ---------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _fresh_graph():
    tf.reset_default_graph()
    yield
    tf.reset_default_graph()


@pytest.fixture(autouse=True)
def _kernels_under_fakecupy(monkeypatch):
    """Under the stand-in no CUDA kernel can run: send GPU updates to the CPU kernels, which
    work in place on the numpy arrays behind the fake device arrays. A no-op on a card."""
    if not FAKE:
        yield
        return
    from varstore.train import kernels
    from varstore.train.kernels import cpu as cpu_kernels
    orig_dense = getattr(kernels, "apply_dense", None)
    orig_sparse = getattr(kernels, "apply_sparse", None)

    def dense(rule, dev, var, grad, slots, **hyper):
        if getattr(dev, "kind", None) == "gpu":
            cp.cuda.get_current_stream().synchronize()  # a launch would follow the stream's copies
            return cpu_kernels.apply_dense(rule, cp.unwrap(var), cp.unwrap(grad), cp.unwrap(dict(slots)), **hyper)
        return orig_dense(rule, dev, var, grad, slots, **hyper)

    def sparse(rule, dev, var, indices, values, slots, **hyper):
        if getattr(dev, "kind", None) == "gpu":
            cp.cuda.get_current_stream().synchronize()
            return cpu_kernels.apply_sparse(rule, cp.unwrap(var), cp.unwrap(indices), cp.unwrap(values),
                                            cp.unwrap(dict(slots)), **hyper)
        return orig_sparse(rule, dev, var, indices, values, slots, **hyper)

    monkeypatch.setattr(kernels, "apply_dense", dense, raising=False)
    monkeypatch.setattr(kernels, "apply_sparse", sparse, raising=False)

    # The optimizer's GPU path (one multi-tensor launch per group) lands in these two.
    from varstore.train.kernels import gpu as gpu_kernels

    def host_lr(hyper, powers):
        if powers is None:
            return hyper
        b1p, b2p = (float(p.get()) for p in powers)
        return dict(hyper, lr=hyper["lr"] * np.sqrt(1.0 - b2p) / (1.0 - b1p))

    def group(rule, items, powers=None, **hyper):
        cp.cuda.get_current_stream().synchronize()
        for var, grad, slots in items:
            cpu_kernels.apply_dense(rule, cp.unwrap(var), cp.unwrap(grad), cp.unwrap(dict(slots)),
                                    **host_lr(hyper, powers))

    def group_sparse(rule, var, indices, values, slots, powers=None, **hyper):
        cp.cuda.get_current_stream().synchronize()
        cpu_kernels.apply_sparse(rule, cp.unwrap(var), cp.unwrap(indices), cp.unwrap(values),
                                 cp.unwrap(dict(slots)), **host_lr(hyper, powers))

    monkeypatch.setattr(gpu_kernels, "apply_group", group)
    monkeypatch.setattr(gpu_kernels, "apply_sparse", group_sparse)
    yield


@pytest.fixture
def gpu():
    return get_device(GPU0)


@pytest.fixture
def shm_dir():
    """A scratch directory in RAM (/dev/shm) when it has room, so the disk is not what is measured."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    if base is not None:
        st = os.statvfs(base)
        if st.f_bavail * st.f_frsize < 3 * BIG_SAVE_BYTES:
            base = None
    d = tempfile.mkdtemp(prefix="varstore-gpu-test-", dir=base)
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


def sync():
    cp.cuda.Device().synchronize()


def host(a) -> np.ndarray:
    """A numpy copy of a device or host array (explicit, as cupy requires)."""
    return cp.asnumpy(a) if isinstance(a, cp.ndarray) else np.asarray(a)


def derived_seed(graph_seed, op_seed) -> int:
    """The generator seed varstore derives from TF's (graph seed, op seed) pair."""
    seeds = (graph_seed if graph_seed is not None else _init.DEFAULT_GRAPH_SEED, op_seed)
    entropy = [int(s) % (1 << 64) for s in seeds]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])


def bits(a: np.ndarray) -> np.ndarray:
    """The raw bits of a 2-byte float array (bit-exact comparisons of float16/bfloat16)."""
    return np.ascontiguousarray(a).view(np.uint16)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


class PeakRSS:
    """Peak resident memory growth of this process inside the block.

    Exact where the kernel lets us reset the high-water mark (``/proc/self/clear_refs`` = 5,
    then ``VmHWM``); a 2 ms sampler of ``VmRSS`` runs as well, and the larger reading wins.
    """

    def __enter__(self):
        gc.collect()
        self.hwm_reset = False
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.hwm_reset = _status_kib("VmHWM") <= _status_kib("VmRSS") + 1024
        except OSError:
            pass
        self.base = _status_kib("VmRSS") << 10
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _status_kib("VmRSS") << 10)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status_kib("VmRSS") << 10)
        if self.hwm_reset:
            self.peak = max(self.peak, _status_kib("VmHWM") << 10)
        self.growth = self.peak - self.base


# -- placement -------------------------------------------------------------------------------------
def test_variables_on_gpu0_live_there_as_cupy_arrays():
    with tf.device("/gpu:0"):
        w = tf.Variable(tf.zeros([3, 4]), name="w")
        b = tf.Variable(tf.ones([4], dtype=tf.float16), name="b")
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for v in (w, b):
            assert v.device == GPU0 and v.requested_device == GPU0
            assert isinstance(v.value(), cp.ndarray) and v.value().device.id == 0
            got = v.numpy()
            assert type(got) is np.ndarray and got.dtype == v.dtype
        assert (w.numpy() == 0).all() and (b.numpy() == 1).all()
        assert isinstance(sess.run(w), np.ndarray)
    assert GPU0 in devices.list_devices()


def test_missing_gpu_falls_back_to_cpu_under_soft_placement(placement):
    missing = f"/gpu:{gpu_count()}"  # one past the last card: /gpu:1 on a one-card machine
    with pytest.warns(devices.PlacementWarning, match="does not exist here"), tf.device(missing):
        v = tf.Variable(tf.random_normal([8]), name="v")
    assert v.device == CPU0
    assert v.requested_device == f"/device:GPU:{gpu_count()}"
    v.initializer.run()
    assert type(v.value()) is np.ndarray
    with tf.device("/gpu:0"):  # an existing card is still used
        w = tf.Variable(tf.zeros([2]), name="w")
    assert w.device == GPU0


@pytest.mark.parametrize("how", ["environment", "set_soft_placement"])
def test_missing_gpu_is_an_error_under_strict_placement(placement, monkeypatch, how):
    if how == "environment":
        monkeypatch.setenv("VARSTORE_SOFT_PLACEMENT", "0")
    else:
        devices.set_soft_placement(False)
    missing = f"/gpu:{gpu_count()}"
    with pytest.raises(tf.errors.InvalidArgumentError) as e, tf.device(missing):
        tf.Variable(tf.zeros([2]), name="v")
    msg = str(e.value)
    assert f"GPU:{gpu_count()}" in msg and GPU0 in msg  # names the spec and the devices that exist
    with tf.device("/gpu:0"):  # strict placement still places on a card that exists
        assert tf.Variable(tf.zeros([2]), name="ok").device == GPU0


def test_entering_a_gpu_scope_makes_that_device_current_for_cupy(monkeypatch):
    entered = []
    real_activate = GpuDevice.activate

    def spy(self):
        entered.append(self.index)
        return real_activate(self)

    monkeypatch.setattr(GpuDevice, "activate", spy)
    for i in range(gpu_count()):
        entered.clear()
        with tf.device(f"/gpu:{i}"):
            assert entered == [i]
            assert cp.cuda.Device().id == i
            x = cp.arange(4, dtype=cp.float32)  # the user's own cupy code
            assert x.device.id == i
            with tf.device("/cpu:0"):  # a CPU scope inside leaves cupy where it was
                assert cp.cuda.Device().id == i
    entered.clear()
    with tf.device("/job:worker/task:0"):  # not a local GPU: nothing is activated
        pass
    with tf.device(lambda op: "/gpu:0"):  # a device function places ops; it activates nothing
        pass
    assert entered == []


# -- random initial values drawn on the device ------------------------------------------------------
def test_device_rng_is_cupys_generator(gpu):
    rng = gpu.rng(1234)
    assert isinstance(rng, cp.random.Generator)
    a = cp.empty(1000, cp.float32)
    rng.standard_normal(dtype=cp.float32, out=a)
    b = cp.empty(1000, cp.float32)
    cp.random.default_rng(1234).standard_normal(dtype=cp.float32, out=b)
    assert bool(cp.array_equal(a, b))


def test_seeded_random_normal_is_cupys_draw_with_the_derived_seed(monkeypatch):
    shape, stddev = (64, 33), 0.35
    # Nothing may go through the host while initializers run: no host->device copy at all.
    def no_host(*args, **kwargs):
        raise AssertionError("a random initial value went through the host")

    with tf.device("/gpu:0"):
        v = tf.Variable(tf.random_normal(shape, stddev=stddev, seed=7), name="v")
    monkeypatch.setattr(GpuDevice, "asarray", no_host)
    monkeypatch.setattr(devices.backends.cpu, "host_array", no_host)
    v.initializer.run()
    monkeypatch.undo()
    got = v.value()
    assert isinstance(got, cp.ndarray) and got.dtype == np.float32 and got.shape == shape
    expected = cp.empty(shape, cp.float32)
    cp.random.default_rng(derived_seed(None, 7)).standard_normal(dtype=cp.float32, out=expected.reshape(-1))
    expected *= np.float32(stddev)
    assert bool(cp.array_equal(got, expected))
    # The graph seed takes part too, and the same seeds give the same values in a new graph.
    tf.reset_default_graph()
    tf.set_random_seed(3)
    with tf.device("/gpu:0"):
        w = tf.Variable(tf.random_normal(shape, stddev=stddev, seed=7), name="w")
    w.initializer.run()
    expected2 = cp.empty(shape, cp.float32)
    cp.random.default_rng(derived_seed(3, 7)).standard_normal(dtype=cp.float32, out=expected2.reshape(-1))
    expected2 *= np.float32(stddev)
    assert bool(cp.array_equal(w.value(), expected2))
    assert not bool(cp.array_equal(w.value(), got))


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
def test_random_initializers_on_the_gpu_have_the_right_statistics(dtype):
    n = 1 << 12 if FAKE else 1 << 20
    dt = tf.as_dtype(dtype)
    with tf.device("/gpu:0"):
        normal = tf.Variable(tf.random_normal([n], mean=1.0, stddev=2.0, dtype=dt), name="normal")
        trunc = tf.Variable(tf.truncated_normal([n], stddev=0.5, dtype=dt), name="trunc")
        unif = tf.Variable(tf.random_uniform([n], minval=-3, maxval=5, dtype=dt), name="unif")
        glorot = tf.Variable(tf.glorot_uniform_initializer(dtype=dt)([256, 128]), name="glorot")
    tf.global_variables_initializer().run()
    tol = 6.0 / np.sqrt(n)  # ~6 standard errors
    for v in (normal, trunc, unif, glorot):
        assert isinstance(v.value(), cp.ndarray) and v.value().dtype == dt
    x = normal.numpy().astype(np.float64)
    assert abs(x.mean() - 1.0) < 2.0 * tol + 0.02 and abs(x.std() - 2.0) < 2.0 * tol + 0.02
    t = trunc.numpy().astype(np.float64)
    assert np.abs(t).max() <= 1.0 + 1e-6 and t.std() > 0.3
    u = unif.numpy().astype(np.float64)
    assert u.min() >= -3 and u.max() < 5 and abs(u.mean() - 1.0) < 8 * tol + 0.05
    limit = np.sqrt(6.0 / (256 + 128))
    assert np.abs(glorot.numpy().astype(np.float64)).max() < limit * 1.01
    assert len(np.unique(x)) > n // 100  # random, not a constant


def test_integer_random_uniform_on_the_gpu():
    with tf.device("/gpu:0"):
        v = tf.Variable(tf.random_uniform([4096], minval=-5, maxval=7, dtype=tf.int32, seed=1), name="v")
    v.initializer.run()
    assert isinstance(v.value(), cp.ndarray) and v.value().dtype == np.int32
    x = v.numpy()
    assert x.min() >= -5 and x.max() < 7 and len(np.unique(x)) == 12


def test_initialized_value_chain_stays_on_the_gpu():
    with tf.device("/gpu:0"):
        w = tf.Variable(tf.random_normal([100], seed=1), name="w")
        w2 = tf.Variable(w.initialized_value() * 2.0, name="w2")
    with tf.Session() as sess:
        sess.run(w2.initializer)  # computes w's initial value on the GPU; w itself is left alone (TF)
        assert not w.is_initialized and isinstance(w2.value(), cp.ndarray)
        sess.run(tf.global_variables_initializer())  # w's value is drawn once in the run: w2 is twice it
    assert isinstance(w.value(), cp.ndarray)
    assert bool(cp.array_equal(w2.value(), w.value() * 2.0))


# -- assign across devices ---------------------------------------------------------------------------
def test_assign_numpy_into_a_gpu_variable_in_place():
    with tf.device("/gpu:0"):
        v = tf.Variable(tf.zeros([5, 7]), name="v")
    v.initializer.run()
    ptr = v.value().data.ptr
    x = np.random.default_rng(0).standard_normal((5, 7)).astype(np.float32)
    delta = tf.placeholder(tf.float32, [5, 7])
    assign, add, sub = v.assign(x), v.assign_add(x), v.assign_sub(delta)  # graph mode: ops
    with tf.Session() as sess:
        sess.run(assign)
        assert v.value().data.ptr == ptr  # written into the existing device buffer
        np.testing.assert_array_equal(v.numpy(), x)
        sess.run(add)
        np.testing.assert_array_equal(v.numpy(), x + x)
        sess.run(sub, feed_dict={delta: cp.asarray(x)})  # a cupy delta, fed
        np.testing.assert_array_equal(v.numpy(), x)
    v.load(x.astype(np.float64) * 3)  # float64 -> float32 on the way
    np.testing.assert_array_equal(v.numpy(), (x.astype(np.float64) * 3).astype(np.float32))
    with tf.eager_mode():  # eager: applied at the call, a cupy delta as it is
        v.assign_sub(cp.asarray(x))
    np.testing.assert_array_equal(v.numpy(), (x.astype(np.float64) * 3).astype(np.float32) - x)
    assert v.value().data.ptr == ptr
    with pytest.raises(ValueError, match="incompatible"):
        v.assign(np.zeros((7, 5), np.float32))  # graph mode: when the op is built, as TF
    with tf.eager_mode(), pytest.raises(tf.errors.InvalidArgumentError):
        v.assign(np.zeros((7, 5), np.float32))


def test_assign_between_gpu_and_cpu_variables():
    with tf.device("/gpu:0"):
        g = tf.Variable(tf.random_normal([64, 32], seed=1), name="g")
    with tf.device("/cpu:0"):
        c = tf.Variable(tf.zeros([64, 32]), name="c")
    sess = tf.Session()
    sess.run(tf.global_variables_initializer())
    sess.run(c.assign(g))  # GPU variable -> CPU variable
    assert type(c.value()) is np.ndarray
    np.testing.assert_array_equal(c.value(), g.numpy())
    doubled = tf.placeholder(tf.float32, [64, 32])
    sess.run(c.assign(doubled), feed_dict={doubled: g.value() * 2})  # a cupy array -> CPU variable
    np.testing.assert_array_equal(c.value(), g.numpy() * 2)
    sess.run(c.assign_add(np.ones((64, 32), np.float32)))
    sess.run(g.assign(c))  # CPU variable -> GPU variable
    assert isinstance(g.value(), cp.ndarray)
    np.testing.assert_array_equal(g.numpy(), c.numpy())
    with tf.eager_mode():  # eager: the same moves at the call
        c.assign(g.value() * 0.5)
        g.assign_add(c)
    np.testing.assert_array_equal(g.numpy(), c.numpy() * 3)
    with tf.device("/gpu:0"):
        g2 = tf.Variable(g.initialized_value(), name="g2")  # GPU -> GPU (g initialized: its value, as TF)
    sess.run(g2.initializer)
    sess.close()
    assert bool(cp.array_equal(g2.value(), g.value()))
    assert g2.value().data.ptr != g.value().data.ptr


class _CudaArrayLike:
    """Stands in, under the dry run, for another library's GPU array: its dtype is not a numpy
    dtype (a torch dtype when torch is there) and its memory is reached through
    __cuda_array_interface__."""

    def __init__(self, array):
        self._array = array
        self.shape = array.shape
        self.dtype = torch.float32 if torch is not None else "float32-of-another-library"

    @property
    def __cuda_array_interface__(self):
        return self._array.__cuda_array_interface__


@pytest.mark.skipif(not (HAVE_TORCH_CUDA or FAKE), reason="needs torch with CUDA (or the dry run's stand-in)")
def test_assign_a_torch_cuda_tensor_into_a_gpu_variable():
    with tf.device("/gpu:0"):
        v = tf.Variable(tf.zeros([256, 16]), name="v")
    v.initializer.run()
    ptr = v.value().data.ptr
    ref = np.random.default_rng(3).standard_normal((256, 16)).astype(np.float32)
    if HAVE_TORCH_CUDA:
        t = torch.from_numpy(ref).to("cuda:0")
        with tf.eager_mode():  # the data path itself: applied at the call, on the device
            v.assign(t)  # torch's dtype is no numpy dtype: must still work, on the device
        np.testing.assert_array_equal(v.numpy(), ref)
        p = tf.placeholder(tf.float32, [256, 16])
        with tf.Session() as sess:  # graph mode: the DLPack route, fed
            sess.run(v.assign(p), feed_dict={p: cp.from_dlpack(t * 2)})
        np.testing.assert_array_equal(v.numpy(), ref * 2)
        back = torch.from_dlpack(v)  # and out again, zero-copy
        assert back.device.type == "cuda" and back.data_ptr() == v.value().data.ptr
        torch.testing.assert_close(back.cpu(), torch.from_numpy(ref * 2))
    else:
        with tf.eager_mode():
            v.assign(_CudaArrayLike(cp.asarray(ref)))
        np.testing.assert_array_equal(v.numpy(), ref)
    assert v.value().data.ptr == ptr


# -- float16 and bfloat16 parameters -----------------------------------------------------------------
HALF = [pytest.param("float16", id="float16"), pytest.param("bfloat16", id="bfloat16")]
# One unit in the last place, relative: float16 keeps 11 significant bits, bfloat16 8.
HALF_RTOL = {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}


@pytest.mark.parametrize("dtype", HALF)
def test_half_precision_variables_save_and_restore_bit_exactly(dtype, shm_dir):
    dt = tf.as_dtype(dtype)
    with tf.device("/gpu:0"):
        v = tf.Variable(tf.random_normal([333, 17], dtype=dt, seed=5), name="v")
    v.initializer.run()
    assert v.value().dtype == dt
    before = v.numpy()
    assert before.dtype == dt and np.isfinite(before.astype(np.float32)).all()
    saver = tf.train.Saver()
    path = saver.save(None, str(shm_dir / "model.ckpt"), global_step=1)
    with CheckpointReader(path) as r:
        assert r.dtype("v") == dt
        np.testing.assert_array_equal(bits(r.get_tensor("v")), bits(before))
    v.load(np.zeros(v.shape, dt))
    saver.restore(None, path)
    assert isinstance(v.value(), cp.ndarray) and v.value().dtype == dt
    np.testing.assert_array_equal(bits(v.numpy()), bits(before))
    # Into a fresh graph's uninitialized GPU variable as well.
    tf.reset_default_graph()
    with tf.device("/gpu:0"):
        w = tf.Variable(tf.zeros([333, 17], dtype=dt), name="v")
    tf.train.Saver().restore(None, path)
    np.testing.assert_array_equal(bits(w.numpy()), bits(before))


@pytest.mark.parametrize("grad_dtype", ["same", "float32"])
@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("rule", ["sgd", "adam"])
def test_half_precision_optimizer_step_on_the_gpu(rule, dtype, grad_dtype):
    dt = tf.as_dtype(dtype)
    n = 4096
    rng = np.random.default_rng(11)
    start = rng.standard_normal(n).astype(dt)
    g_host = (rng.standard_normal(n) * 0.5).astype(dt if grad_dtype == "same" else np.float32)
    with tf.device("/gpu:0"):
        v = tf.Variable(start, name="v")
    lr = 0.05
    if rule == "sgd":
        opt = tf.train.GradientDescentOptimizer(lr)
        hyper = {"lr": lr}
        slots = {}
    else:
        b1, b2, eps = 0.9, 0.999, 1e-8
        opt = tf.train.AdamOptimizer(lr, b1, b2, eps)
        hyper = {"lr": lr * np.sqrt(1 - b2) / (1 - b1), "beta1": b1, "beta2": b2, "epsilon": eps}
        slots = {"m": np.zeros(n), "v": np.zeros(n)}
    g = tf.placeholder(g_host.dtype, [n])
    train = opt.apply_gradients([(g, v)])
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(train, feed_dict={g: cp.asarray(g_host)})
    got = v.numpy()
    assert got.dtype == dt and isinstance(v.value(), cp.ndarray)
    exp, exp_slots = reference.apply_dense(rule, start.astype(np.float64), g_host.astype(np.float64), slots, **hyper)
    # One rounding of the result (rtol) plus the step computed from rounded operands (atol).
    atol = 2 * lr * HALF_RTOL[dtype] + 1e-6
    np.testing.assert_allclose(got.astype(np.float64), exp, rtol=HALF_RTOL[dtype], atol=atol)
    for name, s in exp_slots.items():
        slot = opt.get_slot(v, name)
        assert isinstance(slot.value(), cp.ndarray)
        np.testing.assert_allclose(slot.numpy().astype(np.float64), s, rtol=HALF_RTOL[dtype], atol=1e-6)
    assert not np.array_equal(bits(got), bits(start))  # the step was not lost to rounding


# -- every optimizer through the public API: GPU against CPU ------------------------------------------
OPTIMIZERS = {
    "sgd": lambda: tf.train.GradientDescentOptimizer(0.1),
    "momentum": lambda: tf.train.MomentumOptimizer(0.1, 0.9),
    "nesterov": lambda: tf.train.MomentumOptimizer(0.1, 0.9, use_nesterov=True),
    "adam": lambda: tf.train.AdamOptimizer(0.01),
    "adagrad": lambda: tf.train.AdagradOptimizer(0.1),
    "rmsprop": lambda: tf.train.RMSPropOptimizer(0.01, momentum=0.5),
    "centered_rmsprop": lambda: tf.train.RMSPropOptimizer(0.01, momentum=0.5, centered=True),
}


def _steps_on(where: str, name: str, sparse: bool, start, grads, idx, rows, eager: bool):
    """Three steps of optimizer ``name`` on a variable at ``where``: TF 1.x's way (train op
    over placeholders, device arrays fed) or eager (apply_gradients applies at the call)."""
    to_dev = cp.asarray if where == "/gpu:0" else np.asarray
    g = tf.Graph()
    with g.as_default():
        if eager:
            with tf.eager_mode():
                with tf.device(where):
                    v = tf.Variable(start, name="v")
                opt = OPTIMIZERS[name]()
                for k in range(3):
                    gr = (tf.train.IndexedSlices(to_dev(rows[k]), to_dev(idx), dense_shape=(96, 40)) if sparse
                          else to_dev(grads[k]))
                    assert opt.apply_gradients([(gr, v)]) is None
        else:
            with tf.device(where):
                v = tf.Variable(start, name="v")
            opt = OPTIMIZERS[name]()
            if sparse:
                vals, ids = tf.placeholder(tf.float32, [None, 40]), tf.placeholder(tf.int64, [None])
                train = opt.apply_gradients([(tf.train.IndexedSlices(vals, ids, dense_shape=(96, 40)), v)])
                feeds = [{vals: to_dev(rows[k]), ids: to_dev(idx)} for k in range(3)]
            else:
                gp = tf.placeholder(tf.float32, [96, 40])
                train = opt.apply_gradients([(gp, v)])
                feeds = [{gp: to_dev(grads[k])} for k in range(3)]
            with tf.Session(graph=g) as sess:
                sess.run(tf.global_variables_initializer())
                for f in feeds:
                    sess.run(train, feed_dict=f)
        if where == "/gpu:0":
            assert isinstance(v.value(), cp.ndarray)
            for s in opt.get_slot_names():
                assert opt.get_slot(v, s).device == GPU0
                assert isinstance(opt.get_slot(v, s).value(), cp.ndarray)
        return v.numpy()


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_steps_on_the_gpu_match_the_cpu(name, sparse):
    rng = np.random.default_rng(5)
    start = rng.standard_normal((96, 40)).astype(np.float32)
    grads = [rng.standard_normal((96, 40)).astype(np.float32) for _ in range(3)]
    idx = np.array([3, 7, 3, 90, 0], np.int64)
    rows = [rng.standard_normal((5, 40)).astype(np.float32) for _ in range(3)]
    results = {(where, eager): _steps_on(where, name, sparse, start, grads, idx, rows, eager)
               for where in ("/gpu:0", "/cpu:0") for eager in (False, True)}
    np.testing.assert_allclose(results["/gpu:0", False], results["/cpu:0", False], rtol=2e-5, atol=2e-6)
    assert not np.array_equal(results["/gpu:0", False], start)
    # Graph and eager run the same kernels: the same bits, on each device.
    for where in ("/gpu:0", "/cpu:0"):
        assert results[where, False].tobytes() == results[where, True].tobytes(), where


def test_a_gpu_train_op_fed_cupy_gradients_makes_no_host_transfer(monkeypatch):
    """TF 1.x's loop on the card: the train op built once, cupy gradients fed each step. The
    fed arrays reach the update kernel as they are (same device memory: no copy, no trip
    through the host), Adam's beta powers go to the kernel as device arrays, and (where
    cupy's methods can be wrapped) no device<->host copy is made in a step."""
    from varstore.train.kernels import gpu as gpu_kernels
    n = 1 << 16
    rng = np.random.default_rng(2)
    with tf.device("/gpu:0"):
        w = tf.Variable(rng.standard_normal((n,)).astype(np.float32), name="w")
        b = tf.Variable(np.zeros(64, np.float32), name="b")
    gw, gb = tf.placeholder(tf.float32, [n]), tf.placeholder(tf.float32, [64])
    train = tf.train.AdamOptimizer(0.01).apply_gradients([(gw, w), (gb, b)])
    grads = [(cp.asarray(rng.standard_normal(n).astype(np.float32)),
              cp.asarray(rng.standard_normal(64).astype(np.float32))) for _ in range(3)]
    sess = tf.Session()
    sess.run(tf.global_variables_initializer())
    sess.run(train, feed_dict={gw: grads[0][0], gb: grads[0][1]})  # kernels compiled before counting
    sync()
    launches = []
    real_group = gpu_kernels.apply_group

    def spy(rule, items, powers=None, **hyper):
        launches.append(([g.data.ptr for _, g, _ in items], powers is not None))
        return real_group(rule, items, powers=powers, **hyper)

    monkeypatch.setattr(gpu_kernels, "apply_group", spy)
    transfers: list = []
    if not FAKE:  # the dry run's stand-in kernels read the beta powers on the host; a card's do not
        try:
            real_get, real_set = cp.ndarray.get, cp.ndarray.set
            monkeypatch.setattr(cp.ndarray, "get", lambda self, *a, **k: transfers.append("get") or
                                real_get(self, *a, **k))
            monkeypatch.setattr(cp.ndarray, "set", lambda self, *a, **k: transfers.append("set") or
                                real_set(self, *a, **k))
        except TypeError:  # an extension type whose methods cannot be replaced: the pointers tell
            pass
    for g1, g2 in grads[1:]:
        sess.run(train, feed_dict={gw: g1, gb: g2})
    sync()
    assert transfers == []
    assert launches == [([g1.data.ptr, g2.data.ptr], True) for g1, g2 in grads[1:]]
    assert isinstance(w.value(), cp.ndarray)
    sess.close()


# -- checkpoints across devices -------------------------------------------------------------------------
def _model(where: str, init: bool = True):
    with tf.device(where):
        w = tf.Variable(tf.random_normal([257, 129], seed=1), name="layer/w")
        b = tf.Variable(tf.random_uniform([129], seed=2, dtype=tf.float64), name="layer/b")
        h = tf.Variable(tf.truncated_normal([64, 8], seed=3, dtype=tf.bfloat16), name="layer/h")
        s = tf.Variable(tf.random_uniform([10], 0, 1000, dtype=tf.int64, seed=4), name="step")
    if init:
        tf.global_variables_initializer().run()
    return [w, b, h, s]


@pytest.mark.parametrize("src,dst", [("/gpu:0", "/cpu:0"), ("/cpu:0", "/gpu:0"), ("/gpu:0", "/gpu:0")])
def test_checkpoint_restores_across_devices(src, dst, shm_dir):
    g1 = tf.Graph()
    with g1.as_default():
        saved = _model(src)
        values = {v.op.name: v.numpy() for v in saved}
        path = tf.train.Saver().save(None, str(shm_dir / "model.ckpt"), global_step=3)
    g2 = tf.Graph()
    with g2.as_default():
        fresh = _model(dst, init=False)
        tf.train.Saver().restore(None, path)
        for v in fresh:
            assert v.device == (GPU0 if dst == "/gpu:0" else CPU0)
            want_type = cp.ndarray if dst == "/gpu:0" else np.ndarray
            assert isinstance(v.value(), want_type), (v.op.name, type(v.value()))
            np.testing.assert_array_equal(v.numpy().view(np.uint8), values[v.op.name].view(np.uint8))
    # The same file through load_variable and the reader, bit for bit.
    assert np.array_equal(tf.train.load_variable(path, "layer/w"), values["layer/w"])


def test_checkpoint_from_a_gpu_graph_restores_on_a_machine_without_one(shm_dir, placement, monkeypatch):
    """The graph names /gpu:0; restored where cupy sees no card (soft placement puts it on the CPU)."""
    with tf.Graph().as_default():
        saved = _model("/gpu:0")
        values = {v.op.name: v.numpy() for v in saved}
        path = tf.train.Saver().save(None, str(shm_dir / "model.ckpt"))
    # Pretend there is no card: cupy stays importable, but no GPU device is resolvable.
    from devices import manager
    from devices.backends import gpu as gpu_backend
    monkeypatch.setattr(manager, "gpu_count", lambda: 0)
    with manager._lock:
        hidden = {s: d for s, d in manager._cache.items() if d.kind == "gpu"}
        for s in hidden:
            del manager._cache[s]
    try:
        with tf.Graph().as_default():
            with pytest.warns(devices.PlacementWarning):
                fresh = _model("/gpu:0", init=False)
            tf.train.Saver().restore(None, path)
            for v in fresh:
                assert v.device == CPU0 and type(v.value()) is np.ndarray
                np.testing.assert_array_equal(v.numpy().view(np.uint8), values[v.op.name].view(np.uint8))
    finally:
        with manager._lock:
            for s in [s for s, d in manager._cache.items() if d.kind == "gpu"]:
                del manager._cache[s]
            manager._cache.update(hidden)
    assert gpu_backend.gpu_count() >= 1


# -- chunked, pinned gathers with bounded host memory ---------------------------------------------------
def test_host_chunks_use_two_reused_pinned_buffers(gpu):
    n = (3 * MiB + 12345) // 4
    a = cp.arange(n, dtype=cp.float32)
    chunk = MiB
    seen = []
    for _ in range(2):
        addrs, total = set(), bytearray()
        for view in devices.host_chunks(a, chunk):
            assert len(view) <= chunk
            addrs.add(np.frombuffer(view, np.uint8).ctypes.data)
            total += view
        assert len(addrs) == 2  # double-buffered
        seen.append(addrs)
        np.testing.assert_array_equal(np.frombuffer(bytes(total), np.float32), np.arange(n, dtype=np.float32))
    assert seen[0] == seen[1]  # reused, not reallocated per gather
    attrs_fn = getattr(cp.cuda.runtime, "pointerGetAttributes", None)
    if attrs_fn is not None and not FAKE:
        for ptr in seen[0]:
            kind = getattr(attrs_fn(ptr), "type", None)
            assert kind in (None, 1), f"staging buffer at {ptr:#x} is memory type {kind}, not pinned host (1)"


def test_gather_waits_for_the_kernels_that_produce_the_array(gpu):
    n = (64 * MiB if not FAKE else MiB) // 4
    a = cp.ones(n, cp.float32)
    sync()
    for k in range(3):
        a *= 2  # queued; the gather must see its result, not the bytes before it
        out = np.empty(n, np.float32)
        devices.gather(a, out)
        assert out[0] == 2.0 ** (k + 1) and out[-1] == 2.0 ** (k + 1)
    s = cp.cuda.Stream(non_blocking=True)
    with s:  # the user's own stream: the gather orders itself after the current stream's work
        a[...] = 5
        out = devices.to_host(a)
    assert (out == 5).all()


def test_saving_a_big_gpu_variable_keeps_host_memory_bounded(shm_dir):
    n = BIG_SAVE_BYTES // 4
    with tf.device("/gpu:0"):
        v = tf.Variable(tf.random_normal([n // 1024, 1024], seed=9), name="big")
    v.initializer.run()
    saver = tf.train.Saver([v])
    # Warm up once on a small variable: the staging buffers (2 x chunk, pinned) exist before the
    # measurement, like in any training run after its first checkpoint.
    with tf.device("/gpu:0"):
        small = tf.Variable(tf.ones([1024]), name="small")
    small.initializer.run()
    tf.train.Saver([small]).save(None, str(shm_dir / "warm.ckpt"), write_meta_graph=False)
    sync()
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        path = saver.save(None, str(shm_dir / "big.ckpt"), write_meta_graph=False)
        elapsed = time.perf_counter() - t0
    staging = 2 * DEFAULT_CHUNK_BYTES
    print(f"\nsaved {BIG_SAVE_BYTES / 2**30:.2f} GiB from the GPU in {elapsed:.2f} s "
          f"({BIG_SAVE_BYTES / elapsed / 1e9:.2f} GB/s); peak RSS growth {rss.growth / MiB:.1f} MiB "
          f"(exact high-water mark: {rss.hwm_reset})")
    assert rss.growth <= RSS_BUDGET + staging, (
        f"host RSS grew by {rss.growth / MiB:.0f} MiB while saving a {BIG_SAVE_BYTES / MiB:.0f} MiB GPU "
        f"variable; allowed {RSS_BUDGET / MiB:.0f} MiB beyond the {staging / MiB:.0f} MiB staging buffers")
    # Every byte made it, compared on the device chunk by chunk (no full host copy).
    flat = v.value().reshape(-1).view(cp.uint8)
    pos = 0
    with CheckpointReader(path) as r:
        for chunk in r.iter_chunks("big", 256 * MiB if not FAKE else 4 * MiB):
            part = cp.asarray(np.frombuffer(chunk, np.uint8))
            assert bool(cp.array_equal(part, flat[pos:pos + part.size])), f"bytes differ near offset {pos}"
            pos += part.size
    assert pos == BIG_SAVE_BYTES


# -- async save while kernels keep updating --------------------------------------------------------------
def test_async_save_snapshot_stays_consistent_while_kernels_update(shm_dir):
    params = inspect.signature(tf.train.Saver.save).parameters
    if "async_save" not in params:
        pytest.skip("Saver.save has no async_save parameter yet")
    n = ASYNC_VAR_BYTES // 4
    with tf.device("/gpu:0"):
        vs = [tf.Variable(tf.fill([n], float(k + 1)), name=f"v{k}") for k in range(4)]
    opt = tf.train.GradientDescentOptimizer(1.0)
    g = tf.placeholder(tf.float32, [n])
    train = opt.apply_gradients([(g, v) for v in vs])  # TF 1.x: built once, run per step
    sess = tf.Session()
    sess.run(tf.global_variables_initializer())
    minus_one = cp.full((n,), -1.0, cp.float32)
    sess.run(train, feed_dict={g: minus_one})  # kernels compiled before the clock
    snapshot = {v.op.name: float(k + 2) for k, v in enumerate(vs)}  # each var is uniform: k + 2
    saver = tf.train.Saver(vs)
    sync()
    handle = saver.save(sess, str(shm_dir / "model.ckpt"), global_step=1, async_save=True)
    steps = 0
    deadline = time.perf_counter() + 30
    while steps < 50 and time.perf_counter() < deadline:
        sess.run(train, feed_dict={g: minus_one})  # var += 1, while the save runs
        steps += 1
    path = handle.result()
    sync()
    if not isinstance(path, str):  # the handle may report something else; the state file knows
        path = tf.train.latest_checkpoint(str(shm_dir))
    assert path.endswith("model.ckpt-1")
    for k, v in enumerate(vs):  # the live variables moved on
        assert float(v.value()[0]) == k + 2 + steps and float(v.value()[-1]) == k + 2 + steps
    with CheckpointReader(path) as r:
        for name, want in snapshot.items():
            t = r.get_tensor(name)
            lo, hi = float(t.min()), float(t.max())
            assert lo == hi == want, (f"{name}: checkpoint holds values in [{lo}, {hi}], expected all {want} "
                                      f"(the values when save() was called; {steps} updates ran meanwhile)")
    assert tf.train.latest_checkpoint(str(shm_dir)) == path


# -- memory accounting against cupy's pool ---------------------------------------------------------------
def _settle():
    gc.collect()
    sync()


def test_memory_in_use_matches_cupys_pool(gpu):
    pool = cp.get_default_memory_pool()
    nbytes = 4 * MiB  # a multiple of the pool's 512-byte rounding
    g = tf.Graph()
    _settle()
    m0, p0, peak0 = gpu.memory_in_use, pool.used_bytes(), gpu.peak_memory
    with g.as_default():
        with tf.device("/gpu:0"):
            v = tf.Variable(tf.zeros([nbytes // 4]), name="v")
        v.initializer.run()
        _settle()
        assert gpu.memory_in_use - m0 == nbytes
        assert pool.used_bytes() - p0 == nbytes
        assert gpu.peak_memory >= max(peak0, m0 + nbytes)
        tf.Session(graph=g).run(v.assign(np.ones(nbytes // 4, np.float32)))  # the host->device temporary is freed
        _settle()
        assert gpu.memory_in_use - m0 == nbytes and pool.used_bytes() - p0 == nbytes
        with tf.device("/gpu:0"):
            r = tf.Variable(tf.random_normal([nbytes // 4], seed=1), name="r")
        r.initializer.run()
        _settle()
        assert gpu.memory_in_use - m0 == 2 * nbytes
        # The pool also holds the generator's state (cuRAND), which varstore does not count.
        assert pool.used_bytes() - p0 >= 2 * nbytes
        opt = tf.train.AdamOptimizer(0.1)
        grad = tf.placeholder(tf.float32, [nbytes // 4])
        train = opt.apply_gradients([(grad, v)])
        with tf.Session(graph=g) as sess:
            sess.run(tf.variables_initializer(opt.variables()))
            sess.run(train, feed_dict={grad: cp.ones(nbytes // 4, cp.float32)})
        _settle()
        # Adam's two slots, and its two float32 beta powers (colocated with v).
        expected = 4 * nbytes + 2 * 4
        assert gpu.memory_in_use - m0 == expected
        assert pool.used_bytes() - p0 >= expected
        assert GPU0 in devices.memory_summary()
    del v, r, opt, g, grad, train, sess
    _settle()
    assert gpu.memory_in_use == m0, "varstore's accounting did not return to where it was"
    assert pool.used_bytes() - p0 <= 1 * MiB, "device memory was not released with the graph"


def test_memory_accounting_drops_when_a_variable_is_reassigned_a_new_shape(gpu):
    pool = cp.get_default_memory_pool()
    _settle()
    m0, p0 = gpu.memory_in_use, pool.used_bytes()
    with tf.Graph().as_default():
        with tf.device("/gpu:0"):
            v = tf.Variable(tf.zeros([1024, 256]), name="v", validate_shape=False)
        with tf.Session() as sess:
            sess.run(v.initializer)
            sess.run(v.assign(np.ones((256, 256), np.float32)))  # a new, smaller buffer replaces the old one
        del sess
        _settle()
        assert gpu.memory_in_use - m0 == 256 * 256 * 4
        assert pool.used_bytes() - p0 == 256 * 256 * 4
        del v
    _settle()
    assert gpu.memory_in_use == m0 and pool.used_bytes() == p0
