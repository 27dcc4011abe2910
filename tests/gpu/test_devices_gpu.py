"""The cupy backend on a real card: placement, scopes, chunked gathers, accounting.

Skipped (see conftest.py) where cupy is missing or sees no device.
"""
from __future__ import annotations

import gc
import hashlib
import threading
import warnings

import numpy as np
import pytest

cp = pytest.importorskip("cupy")

import devices  # noqa: E402
from devices import InvalidArgumentError, PlacementWarning, get_device  # noqa: E402
from devices.backends.gpu import GpuDevice, gpu_count  # noqa: E402

MiB = 1 << 20
CPU = "/device:CPU:0"


@pytest.fixture
def gpu0(placement):
    return get_device("/gpu:0")


def pattern(n_words: int, device: int = 0):
    """A uint32 array on a GPU whose bytes differ from chunk to chunk."""
    with cp.cuda.Device(device):
        x = cp.arange(n_words, dtype=cp.uint32)
        x *= np.uint32(2654435761)
        x ^= x >> np.uint32(13)
        return x


def sha(buf) -> str:
    return hashlib.sha256(memoryview(buf).cast("B")).hexdigest()


def status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux clear_refs 5); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# -- placement ------------------------------------------------------------------------------

def test_gpu_count_matches_cupy(n_gpus):
    assert gpu_count() == n_gpus == cp.cuda.runtime.getDeviceCount()
    assert devices.list_devices() == [CPU] + [f"/device:GPU:{i}" for i in range(n_gpus)]


def test_gpu0_is_a_gpu_device_holding_cupy_arrays(gpu0):
    assert isinstance(gpu0, GpuDevice) and gpu0.kind == "gpu" and gpu0.index == 0
    assert gpu0.name == "/device:GPU:0" and gpu0.xp is cp
    for a in (gpu0.empty((3, 4), "float32"), gpu0.zeros((3, 4), "float32")):
        assert isinstance(a, cp.ndarray) and a.device.id == 0
        assert a.shape == (3, 4) and a.dtype == np.float32
        assert gpu0.holds(a) and devices.device_of(a) is gpu0
    assert not gpu0.zeros((5, 7), "int64").any()
    assert not gpu0.holds(np.zeros(3))
    gpu0.synchronize()


@pytest.mark.parametrize("spelling", [
    "/gpu:0", "/GPU:0", "/device:GPU:0", "/gpu:*", "/job:localhost/replica:0/task:0/device:GPU:0",
])
def test_every_name_of_gpu0_is_the_same_device_without_warnings(placement, spelling):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get_device(spelling) is get_device("/gpu:0")


def test_gpu_rng_draws_on_the_gpu(gpu0):
    a = gpu0.rng(3).standard_normal(16)
    b = gpu0.rng(3).standard_normal(16)
    assert isinstance(a, cp.ndarray) and a.device.id == 0
    assert bool((a == b).all())


def test_missing_gpu_soft_lands_on_the_cpu_with_a_warning(placement, n_gpus):
    with pytest.warns(PlacementWarning) as record:
        dev = get_device(f"/gpu:{n_gpus}")
    assert dev is get_device(CPU)
    assert any(f"'/device:GPU:{n_gpus}'" in str(w.message) for w in record)


def test_missing_gpu_strict_names_it_and_lists_the_gpus(placement, n_gpus):
    devices.set_soft_placement(False)
    with pytest.raises(InvalidArgumentError) as info:
        get_device(f"/gpu:{n_gpus}")
    message = str(info.value)
    assert f"'/device:GPU:{n_gpus}'" in message
    for i in range(n_gpus):
        assert f"/device:GPU:{i}" in message
    assert get_device("/gpu:0").kind == "gpu"  # strict still serves what exists


# -- scopes make the GPU current for cupy ---------------------------------------------------

def test_gpu_scope_makes_each_gpu_current_for_cupy(placement, n_gpus):
    outside = cp.cuda.Device().id
    for i in range(n_gpus):
        with devices.device(f"/gpu:{i}"):
            assert cp.cuda.Device().id == i
            assert cp.zeros(3).device.id == i  # the user's own cupy code allocates there
        assert cp.cuda.Device().id == outside


def test_gpu_scope_restores_the_current_device_after_an_exception(placement, n_gpus):
    last = n_gpus - 1
    outside = cp.cuda.Device().id
    with pytest.raises(KeyError), devices.device(f"/gpu:{last}"):
        assert cp.cuda.Device().id == last
        raise KeyError
    assert cp.cuda.Device().id == outside


def test_nested_gpu_scopes(placement, n_gpus):
    if n_gpus < 2:
        pytest.skip("needs two GPUs")
    with devices.device("/gpu:1"):
        assert cp.cuda.Device().id == 1
        with devices.device("/gpu:0"):
            assert cp.cuda.Device().id == 0
        assert cp.cuda.Device().id == 1


def test_gpu_scope_sets_the_device_in_its_own_thread_only(placement, n_gpus):
    if n_gpus < 2:
        pytest.skip("needs two GPUs")
    inside = threading.Event()
    release = threading.Event()
    seen = []

    def worker():
        with devices.device("/gpu:1"):
            seen.append(cp.cuda.Device().id)
            inside.set()
            release.wait(30)

    t = threading.Thread(target=worker)
    with cp.cuda.Device(0):
        t.start()
        assert inside.wait(30)
        assert cp.cuda.Device().id == 0
        release.set()
        t.join(30)
    assert seen == [1]


def test_missing_gpu_scope_does_not_fail(placement, n_gpus):
    outside = cp.cuda.Device().id
    with devices.device(f"/gpu:{n_gpus}"):
        assert cp.cuda.Device().id == outside
        assert devices.current_device().to_string() == f"/device:GPU:{n_gpus}"


# -- chunked gathers ------------------------------------------------------------------------

def test_gather_of_100_mib_is_exact_with_bounded_extra_host_memory(gpu0):
    chunk = 8 * MiB
    x = pattern(100 * MiB // 4)
    expected = sha(cp.asnumpy(x))
    dst = np.empty(x.nbytes, np.uint8)
    dst.fill(0xA5)  # touch every page now, so the gather adds only what it allocates
    gc.collect()
    peak_resettable = reset_peak_rss()
    before = status_kib("VmRSS")
    devices.gather(x, dst, chunk_bytes=chunk)
    after = status_kib("VmRSS")
    peak = status_kib("VmHWM") if peak_resettable else after
    growth = (max(after, peak) - before) * 1024
    # Two pinned staging buffers, plus slack for the driver; a gather that staged the
    # whole array (cp.asnumpy, then copy) would add another 100 MiB.
    assert growth <= 2 * chunk + 32 * MiB, f"host memory grew by {growth / MiB:.1f} MiB"
    assert sha(dst) == expected


@pytest.mark.parametrize("chunk", [4 * MiB, 4 * MiB + 1, 3 * MiB - 7])
def test_host_chunks_yield_exact_bytes_in_order(gpu0, chunk):
    x = pattern(25 * MiB // 4)
    expected = cp.asnumpy(x).tobytes()
    h = hashlib.sha256()
    sizes = []
    for c in devices.host_chunks(x, chunk):
        assert isinstance(c, memoryview)
        h.update(c)
        sizes.append(len(c))
    assert h.hexdigest() == hashlib.sha256(expected).hexdigest()
    assert all(s == chunk for s in sizes[:-1]) and 0 < sizes[-1] <= chunk
    assert sum(sizes) == x.nbytes


def test_host_chunks_wait_for_kernels_still_running(gpu0):
    # The copies run on their own stream; they must not overtake the kernels queued on
    # the current stream that compute the array.
    x = cp.zeros(16 * MiB, dtype=cp.float32)  # 64 MiB
    for _ in range(40):
        x += 1  # queued, not finished, when the gather starts
    dst = np.empty(x.shape, np.float32)
    devices.gather(x, dst, chunk_bytes=4 * MiB)
    assert (dst == 40).all()


def test_host_chunks_of_strided_and_empty_gpu_arrays(gpu0):
    base = pattern(24 * 1000).reshape(24, 1000)
    for v in (base[:, ::3], base.T, base[::5]):
        got = b"".join(bytes(c) for c in devices.host_chunks(v, 4096 + 5))
        assert got == cp.asnumpy(cp.ascontiguousarray(v)).tobytes()
    assert list(devices.host_chunks(gpu0.empty((0, 4), "float32"), 64)) == []


def test_a_gather_stopped_early_leaves_the_next_one_correct(gpu0):
    x = pattern(16 * MiB // 4)
    expected = cp.asnumpy(x).tobytes()
    g = devices.host_chunks(x, 1 * MiB)
    assert bytes(next(g)) == expected[:MiB]
    g.close()
    y = pattern(16 * MiB // 4) + np.uint32(1)
    out = bytearray(y.nbytes)
    devices.gather(y, out, chunk_bytes=1 * MiB)
    assert bytes(out) == cp.asnumpy(y).tobytes()


def test_a_gather_nested_in_another_on_the_same_gpu_does_not_deadlock(gpu0):
    x = pattern(8 * MiB // 4)
    y = pattern(1000)
    result = {}

    def writer():
        got = bytearray()
        inner = np.empty(y.shape, y.dtype)
        for c in devices.host_chunks(x, 1 * MiB):
            got += c
            devices.to_host(y, inner)  # a second gather while the first is suspended
        result["outer"] = bytes(got)
        result["inner"] = inner

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "nested gather deadlocked"
    assert result["outer"] == cp.asnumpy(x).tobytes()
    np.testing.assert_array_equal(result["inner"], cp.asnumpy(y))


def test_concurrent_gathers_from_threads_are_each_exact(gpu0):
    arrays = [pattern(4 * MiB // 4) + np.uint32(i) for i in range(4)]
    expected = [cp.asnumpy(a).tobytes() for a in arrays]
    outs = [bytearray(a.nbytes) for a in arrays]
    errors = []

    def run(i):
        try:
            devices.gather(arrays[i], outs[i], chunk_bytes=512 * 1024)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert [bytes(o) for o in outs] == expected


# -- copies between places ------------------------------------------------------------------

def test_asarray_from_host_values_to_the_gpu(gpu0):
    h = np.arange(12, dtype=np.float32).reshape(3, 4)
    for value, want in [(h, h), (h.T, h.T), ([[1, 2], [3, 4]], np.array([[1, 2], [3, 4]])), (2.5, np.array(2.5))]:
        g = gpu0.asarray(value)
        assert isinstance(g, cp.ndarray) and g.device.id == 0 and g.flags.c_contiguous
        np.testing.assert_array_equal(cp.asnumpy(g), want)
    g = gpu0.asarray(h, dtype="float64")
    assert g.dtype == np.float64
    with pytest.raises(InvalidArgumentError):
        gpu0.asarray(np.array(["a"]))


def test_asarray_on_the_same_gpu_copies_only_when_asked(gpu0):
    g = gpu0.asarray(np.arange(6, dtype=np.float32))
    assert gpu0.asarray(g) is g
    c = gpu0.asarray(g, copy=True)
    assert c is not g and c.data.ptr != g.data.ptr
    assert bool((c == g).all())
    d = gpu0.asarray(g, dtype="int32")
    assert d.dtype == np.int32 and bool((d == cp.arange(6)).all())


def test_gpu_arrays_to_the_host(gpu0):
    g = pattern(24).reshape(4, 6)
    want = cp.asnumpy(g)
    back = get_device(CPU).asarray(g)
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, want)
    np.testing.assert_array_equal(devices.to_host(g), want)
    out = np.zeros((4, 6), np.uint32)
    assert devices.to_host(g, out) is out
    np.testing.assert_array_equal(out, want)
    strided = np.zeros((6, 4), np.uint32).T  # a non-contiguous out is filled too
    assert devices.to_host(g, strided) is strided
    np.testing.assert_array_equal(strided, want)
    for bad in (np.zeros((6, 4), np.uint32), np.zeros((4, 6), np.int64)):
        with pytest.raises(InvalidArgumentError):
            devices.to_host(g, bad)
        with pytest.raises(InvalidArgumentError):
            gpu0.to_host(g, bad)


def test_asarray_between_two_gpus(placement, n_gpus):
    if n_gpus < 2:
        pytest.skip("needs two GPUs")
    g0 = pattern(1000, device=0)
    gpu1 = get_device("/gpu:1")
    g1 = gpu1.asarray(g0)
    assert g1.device.id == 1 and gpu1.holds(g1)
    np.testing.assert_array_equal(cp.asnumpy(g1), cp.asnumpy(g0))


# -- memory accounting ----------------------------------------------------------------------

def test_memory_in_use_tracks_allocations_like_cupys_pool(gpu0):
    pool = cp.get_default_memory_pool()
    gc.collect()
    with cp.cuda.Device(0):
        dev0, pool0 = gpu0.memory_in_use, pool.used_bytes()
        size = 4 * MiB  # a multiple of cupy's 512-byte allocation unit: exact comparison
        a = gpu0.empty((size // 4,), "float32")
        assert gpu0.memory_in_use - dev0 == size
        assert pool.used_bytes() - pool0 == size
        b = gpu0.zeros((size // 8,), "float64")
        assert gpu0.memory_in_use - dev0 == 2 * size
        assert pool.used_bytes() - pool0 == 2 * size
        assert gpu0.peak_memory >= dev0 + 2 * size
        view = a[1:]
        del a
        gc.collect()
        assert gpu0.memory_in_use - dev0 == 2 * size  # the view keeps it alive
        assert pool.used_bytes() - pool0 == 2 * size
        del view, b
        gc.collect()
        assert gpu0.memory_in_use == dev0
        assert pool.used_bytes() == pool0


def test_asarray_copies_to_the_gpu_are_counted(gpu0):
    gc.collect()
    before = gpu0.memory_in_use
    g = gpu0.asarray(np.ones(1024, np.float64))
    assert gpu0.memory_in_use == before + 8192
    del g
    gc.collect()
    assert gpu0.memory_in_use == before
