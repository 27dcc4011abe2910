"""The GPU backend's Python on the CPU, against the stricter fake cupy (tests/fakecupy): the
bugs of issue 15 that a CPU can show. Each test failed on the code before the fix.

The fake proves nothing about CUDA (tests/test_nvrtc.py compiles the kernels with the
real compiler); it tracks what real cupy enforces: the current device, generators bound
to their device, bfloat16 support by cupy and numpy version, and copies on a stream other
than the legacy default one staying pending until synchronized.
"""
from __future__ import annotations

import importlib
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from cupy_swap import gpu_caches_reset

from devices import manager
from devices.backends import arrays
from devices.dtypes import bfloat16
from devices.errors import InvalidArgumentError

FAKE = str(Path(__file__).resolve().parent / "fakecupy")


@pytest.fixture
def fake_cupy(monkeypatch, placement):
    """``import cupy`` gives the fake with two devices; caches of cupy and devices are reset
    on the way in and out, so no other test sees it."""
    monkeypatch.setenv("FAKECUPY_DEVICES", "2")
    saved = {k: v for k, v in sys.modules.items() if k == "cupy" or k.startswith("cupy.")}
    for k in saved:
        del sys.modules[k]
    sys.path.insert(0, FAKE)
    try:
        with gpu_caches_reset():
            cp = importlib.import_module("cupy")
            assert getattr(cp, "__fakecupy__", False)
            yield cp
    finally:
        sys.path.remove(FAKE)
        for k in [k for k in sys.modules if k == "cupy" or k.startswith("cupy.")]:
            del sys.modules[k]
        sys.modules.update(saved)

def _gpu(n: int):
    return manager.get_device(f"/device:GPU:{n}")


# -- bug 2: a suspended gather must not block other threads' reads ----------------------------
def test_a_gather_left_suspended_does_not_block_reads_from_other_threads(fake_cupy):
    cp = fake_cupy
    dev = _gpu(0)
    big = dev.asarray(np.arange(1 << 12, dtype=np.float32))
    gen = dev.host_chunks(big, chunk_bytes=1024)
    next(gen)  # suspended mid-gather, as a failed write's traceback keeps it (never closed)
    small = dev.asarray(np.arange(8, dtype=np.float32))
    out: list = []
    t = threading.Thread(target=lambda: out.append(dev.to_host(small, np.empty(8, np.float32))), daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "a read from another thread hung behind a suspended gather"
    np.testing.assert_array_equal(out[0], np.arange(8, dtype=np.float32))
    # The suspended gather still gives correct bytes when resumed, and gives its buffers back.
    rest = b"".join(bytes(c) for c in gen)
    assert len(rest) == big.nbytes - 1024
    del cp


# -- bug 3: a /gpu:1 variable from code whose current device is GPU 0 ----------------------------
def test_gpu1_allocations_draws_and_fills_run_on_gpu1(fake_cupy):
    import varstore as tf
    cp = fake_cupy
    tf.reset_default_graph()
    assert cp.cuda.runtime.getDevice() == 0
    with tf.device("/gpu:1"):
        v = tf.Variable(tf.random_normal([64, 4], seed=3), name="v")
        z = tf.Variable(tf.zeros([8]), name="z")
    tf.global_variables_initializer().run()  # draws with GPU 1's generator, GPU 0 current
    assert v.value().device.id == 1 and z.value().device.id == 1
    assert np.isfinite(v.numpy()).all() and v.numpy().std() > 0.5
    inc = z.assign_add(np.ones(8, np.float32))  # graph mode: an op, run on GPU 1 by the session
    np.testing.assert_array_equal(z.numpy(), np.zeros(8, np.float32))
    tf.Session().run(inc)
    np.testing.assert_array_equal(z.numpy(), np.ones(8, np.float32))
    assert z.value().device.id == 1
    snap = _gpu(1).snapshot(z.value())
    assert snap.device.id == 1
    tf.reset_default_graph()


def test_asarray_across_gpus_is_a_peer_copy(fake_cupy):
    cp = fake_cupy
    with cp.cuda.Device(0):
        a = cp.asarray(np.arange(6, dtype=np.float32))
    b = _gpu(1).asarray(a)
    assert b.device.id == 1
    np.testing.assert_array_equal(_gpu(1).to_host(b), np.arange(6, dtype=np.float32))
    c = _gpu(1).asarray(a, dtype=np.float64)  # across devices and cast
    assert c.device.id == 1 and c.dtype == np.float64
    np.testing.assert_array_equal(_gpu(1).to_host(c), np.arange(6))


# -- bug 4: bfloat16 ----------------------------------------------------------------------------
class _TorchBF16Like:
    """What torch exports for a CUDA bfloat16 tensor: "<V2" over __cuda_array_interface__;
    with requires_grad, reading the interface raises RuntimeError (hasattr does not catch it)."""

    def __init__(self, device_array, requires_grad=False):
        self._a, self.requires_grad = device_array, requires_grad
        self.dtype = "torch.bfloat16"
        self.shape = device_array.shape

    @property
    def __cuda_array_interface__(self):
        if self.requires_grad:
            raise RuntimeError("Can't get __cuda_array_interface__ on Variable that requires grad. "
                               "If gradients aren't required, use var.detach() to get Variable that doesn't "
                               "require grad.")
        cai = dict(self._a.__cuda_array_interface__)
        cai["typestr"] = "<V2"
        return cai

    def detach(self):
        return _TorchBF16Like(self._a)


def test_torch_bfloat16_over_cuda_array_interface_becomes_bfloat16(fake_cupy):
    cp = fake_cupy
    vals = np.array([1.0, -2.5, 3.0], dtype=bfloat16)
    bits = cp.asarray(vals.view(np.uint16))
    t = _TorchBF16Like(bits)
    out = _gpu(0).asarray(t)
    assert out.dtype == bfloat16
    np.testing.assert_array_equal(_gpu(0).to_host(out).view(np.uint16), vals.view(np.uint16))
    host = arrays.host_array(t)
    assert host.dtype == bfloat16 and host.tolist() == vals.tolist()


def test_a_cuda_tensor_that_requires_grad_is_a_clear_error(fake_cupy):
    """torch raises RuntimeError from __cuda_array_interface__ there, which hasattr lets
    through; the GPU path says what to do, as the CPU path does (tests/test_interop.py)."""
    t = _TorchBF16Like(fake_cupy.zeros(3, dtype=np.uint16), requires_grad=True)
    with pytest.raises(InvalidArgumentError, match="detach"):
        _gpu(0).asarray(t)
    np.testing.assert_array_equal(_gpu(0).to_host(_gpu(0).asarray(t.detach())).view(np.uint16), np.zeros(3))


def test_bfloat16_on_cupy_13_or_old_numpy_is_a_clear_error(fake_cupy, monkeypatch):
    cp = fake_cupy
    monkeypatch.setattr(cp, "__version__", "13.6.0+fakecupy")
    with pytest.raises(InvalidArgumentError, match="bfloat16 on the GPU needs cupy >= 14"):
        _gpu(0).empty((2,), bfloat16)
    monkeypatch.setattr(cp, "__version__", "14.2.0+fakecupy")
    monkeypatch.setattr(np, "__version__", "2.1.1")
    assert not arrays.bfloat16_supported(cp)
    with pytest.raises(InvalidArgumentError, match="numpy >= 2.1.2"):
        _gpu(0).zeros((2,), bfloat16)


# -- bug 5: stream ordering ---------------------------------------------------------------------
def _writer_gathers(dev, array) -> bytes:
    out: list = []
    t = threading.Thread(target=lambda: out.append(b"".join(bytes(c) for c in dev.host_chunks(array, 256))))
    t.start()
    t.join(30)
    return out[0]


def test_snapshot_gathered_by_another_thread_under_per_thread_default_streams(fake_cupy, monkeypatch):
    monkeypatch.setenv("CUPY_CUDA_PER_THREAD_DEFAULT_STREAM", "1")
    dev = _gpu(0)
    src = dev.asarray(np.arange(1000, dtype=np.float32))
    snap = dev.snapshot(src)  # queued on this thread's own stream
    assert _writer_gathers(dev, snap) == np.arange(1000, dtype=np.float32).tobytes()


def test_snapshot_on_a_users_non_blocking_stream(fake_cupy):
    cp = fake_cupy
    dev = _gpu(0)
    src = dev.asarray(np.arange(500, dtype=np.float64))
    with cp.cuda.Stream(non_blocking=True):
        snap = dev.snapshot(src)
    assert _writer_gathers(dev, snap) == np.arange(500, dtype=np.float64).tobytes()


def test_the_fake_shows_a_missing_sync_as_wrong_bytes(fake_cupy):
    """The premise of the two tests above: without an event, the copy is not there yet."""
    cp = fake_cupy
    a = cp.zeros(4, dtype=np.float32)
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        a[...] = cp.ones(4, dtype=np.float32)
    out: list = []
    t = threading.Thread(target=lambda: out.append(a.get()))
    t.start()
    t.join(10)
    np.testing.assert_array_equal(out[0], np.zeros(4, np.float32))  # read before the copy ran
    s.synchronize()
    np.testing.assert_array_equal(a.get(), np.ones(4, np.float32))


# -- restore into existing buffers --------------------------------------------------------------
def test_load_into_fills_the_existing_buffer_through_staging(fake_cupy, tmp_path):
    from varstore.checkpoint import CheckpointReader
    from varstore.checkpoint.writer import write_checkpoint
    vals = np.random.default_rng(0).standard_normal((300, 7)).astype(np.float32)
    path = str(tmp_path / "ck")
    write_checkpoint(path, [("w", vals)])
    dev = _gpu(1)
    dst = dev.zeros(vals.shape, np.float32)
    ptr = dst.data.ptr
    with CheckpointReader(path) as r:
        dev.load_into(dst, lambda buf: r.iter_chunks("w", len(buf), buffer=buf))
    assert dst.data.ptr == ptr
    np.testing.assert_array_equal(dev.to_host(dst), vals)
    with pytest.raises(InvalidArgumentError, match="load_into"):
        dev.load_into(dev.zeros((3,), np.float32), lambda buf: iter([memoryview(bytes(16))]))


def test_saver_restore_fills_existing_gpu_variables_through_staging(fake_cupy, tmp_path, monkeypatch):
    # Saver.restore reads through a CheckpointSet (shards followed): it must offer iter_chunks,
    # or every GPU restore falls back to a full host copy (found by gpu-check's RSS bound).
    import varstore as tf
    tf.reset_default_graph()
    vals = np.random.default_rng(1).standard_normal((64, 5)).astype(np.float32)
    with tf.device("/gpu:1"):
        v = tf.Variable(vals, name="w")
    tf.Session().run(tf.global_variables_initializer())
    path = tf.train.Saver().save(None, str(tmp_path / "model.ckpt"))
    v.load(np.zeros_like(vals))  # now, in place
    np.testing.assert_array_equal(v.numpy(), np.zeros_like(vals))
    before = v.storage.array
    calls = []
    assert v.device.endswith("GPU:1")
    real = type(v.device_object).load_into

    def spy(self, dst, fill):
        calls.append(dst)
        return real(self, dst, fill)

    monkeypatch.setattr(type(v.device_object), "load_into", spy)
    tf.train.Saver().restore(None, path)
    assert calls and calls[0] is before and v.storage.array is before  # filled in place
    np.testing.assert_array_equal(v.numpy(), vals)


def test_the_fake_forwards_only_real_cupy_names(fake_cupy):
    cp = fake_cupy
    assert cp.sqrt is not None
    with pytest.raises(AttributeError, match="fakecupy forwards only"):
        cp.busday_count  # noqa: B018 - numpy has it, cupy has not


# -- a GPU train op fed cupy gradients through placeholders -----------------------------------
def _count_host_transfers(cp, monkeypatch) -> dict:
    """Count every copy between host and device the fake can make: device->host (``get``,
    which ``asnumpy`` uses) and host->device (``set``, ``asarray``/``array`` of host data)."""
    counts = {"device_to_host": 0, "host_to_device": 0}
    real_get, real_set, real_asarray, real_array = cp.ndarray.get, cp.ndarray.set, cp.asarray, cp.array

    def get(self, *args, **kwargs):
        counts["device_to_host"] += 1
        return real_get(self, *args, **kwargs)

    def set_(self, *args, **kwargs):
        counts["host_to_device"] += 1
        return real_set(self, *args, **kwargs)

    def from_host(real):
        def f(obj, *args, **kwargs):
            if not isinstance(obj, cp.ndarray) and not hasattr(obj, "__cuda_array_interface__"):
                counts["host_to_device"] += 1
            return real(obj, *args, **kwargs)
        return f

    monkeypatch.setattr(cp.ndarray, "get", get)
    monkeypatch.setattr(cp.ndarray, "set", set_)
    monkeypatch.setattr(cp, "asarray", from_host(real_asarray))
    monkeypatch.setattr(cp, "array", from_host(real_array))
    return counts


GPU_RULES = {
    "sgd": lambda tf: tf.train.GradientDescentOptimizer(0.1),
    "momentum": lambda tf: tf.train.MomentumOptimizer(0.1, 0.9, use_nesterov=True),
    "adam": lambda tf: tf.train.AdamOptimizer(0.01),
    "adagrad": lambda tf: tf.train.AdagradOptimizer(0.1),
    "rmsprop": lambda tf: tf.train.RMSPropOptimizer(0.01, momentum=0.5, centered=True),
}


@pytest.mark.parametrize("kind", sorted(GPU_RULES))
def test_a_gpu_train_op_fed_cupy_gradients_makes_no_host_copy(fake_cupy, monkeypatch, kind):
    """TF 1.x's loop on a GPU: the train op built once over placeholders, cupy gradients fed
    each step. The fed arrays reach the kernel as they are (no copy, no trip through the
    host), Adam's beta powers stay on the card, and the result is the CPU's."""
    import varstore as tf
    from varstore.train.kernels import cpu as cpu_kernels
    from varstore.train.kernels import gpu as gpu_kernels
    cp = fake_cupy
    seen: list = []

    def group(rule, items, powers=None, **hyper):
        # No CUDA kernel runs on the fake: the CPU kernel on the memory behind the fake arrays.
        # The powers are read from that memory too (a real kernel reads them on the card).
        if powers is not None:
            b1p, b2p = (float(cp.unwrap(p)) for p in powers)
            hyper = dict(hyper, lr=hyper["lr"] * np.sqrt(1.0 - b2p) / (1.0 - b1p))
        for var, grad, slots in items:
            seen.append(grad)
            cpu_kernels.apply_dense(rule, cp.unwrap(var), cp.unwrap(grad), cp.unwrap(dict(slots)), **hyper)

    monkeypatch.setattr(gpu_kernels, "apply_group", group)
    rng = np.random.default_rng(11)
    w0, b0 = rng.standard_normal((32, 4)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    host_grads = [(rng.standard_normal((32, 4)).astype(np.float32), rng.standard_normal(4).astype(np.float32))
                  for _ in range(3)]
    tf.reset_default_graph()
    with tf.device("/gpu:0"):
        w, b = tf.Variable(w0, name="w"), tf.Variable(b0, name="b")
    gw, gb = tf.placeholder(tf.float32, [32, 4]), tf.placeholder(tf.float32, [4])
    opt = GPU_RULES[kind](tf)
    train = opt.apply_gradients([(gw, w), (gb, b)])
    sess = tf.Session()
    sess.run(tf.global_variables_initializer())
    assert w.value().device.id == 0 and all(s.device == w.device for s in opt.variables())
    grads = [(cp.asarray(a), cp.asarray(c)) for a, c in host_grads]  # the user's device gradients
    counts = _count_host_transfers(cp, monkeypatch)
    for g1, g2 in grads:
        assert sess.run(train, feed_dict={gw: g1, gb: g2}) is None
    assert counts == {"device_to_host": 0, "host_to_device": 0}
    # The kernel received the fed arrays themselves.
    assert len(seen) == 2 * len(grads)
    for got, (g1, g2) in zip(zip(seen[::2], seen[1::2]), grads):
        assert {id(cp.unwrap(x)) for x in got} == {id(cp.unwrap(g1)), id(cp.unwrap(g2))}
    got = [w.numpy(), b.numpy()]
    sess.close()
    # The same steps on the CPU, in eager mode, give the same values.
    with tf.eager_mode():
        cw, cb = tf.Variable(w0, name="cw"), tf.Variable(b0, name="cb")
        copt = GPU_RULES[kind](tf)
        for g1, g2 in host_grads:
            copt.apply_gradients([(g1, cw), (g2, cb)])
        want = [cw.numpy(), cb.numpy()]
    for x, y in zip(got, want):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    tf.reset_default_graph()
