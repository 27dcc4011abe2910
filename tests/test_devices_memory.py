"""CPU allocation, memory accounting, transfers and chunked gathers, dtypes and shapes."""
from __future__ import annotations

import gc
import threading
import time

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import devices
from devices import InvalidArgumentError, as_dtype, as_shape, gather, get_device, host_chunks, to_host
from devices.backends.gpu import pipelined_chunks
from devices.dtypes import DTYPE_NAMES

DTYPES = sorted(DTYPE_NAMES)
SHAPES = st.lists(st.integers(0, 7), max_size=4).map(tuple)
# Host buffers start on a 64-byte boundary (cache lines, AVX-512): the documented promise,
# written out here so the tests check it rather than whatever the module's constant says.
ALIGNMENT = 64


@pytest.fixture
def cpu():
    return get_device("/cpu:0")


def settle() -> None:
    """Collect garbage (cycles, hypothesis leftovers) so accounting reflects live arrays."""
    gc.collect()


def payload(n: int) -> np.ndarray:
    """n distinct-looking bytes (a pattern that catches reordered or repeated chunks)."""
    return (np.arange(n, dtype=np.uint64) * 2654435761 >> 7).astype(np.uint8)


# -- allocation -------------------------------------------------------------------------------

@settings(max_examples=150)
@given(SHAPES, st.sampled_from(DTYPES))
def test_empty_and_zeros_are_aligned_c_order_arrays_of_the_dtype(shape, name):
    cpu = get_device("/cpu:0")
    for a in (cpu.empty(shape, name), cpu.zeros(shape, name)):
        assert isinstance(a, np.ndarray)
        assert a.shape == shape and a.dtype == as_dtype(name) and a.dtype.name == name
        if a.size:  # a zero-size array has no bytes; numpy picks its pointer
            assert a.ctypes.data % ALIGNMENT == 0
        assert a.flags.c_contiguous and a.flags.writeable
        a[...] = 1  # the whole buffer is writable
    z = cpu.zeros(shape, name)
    assert not z.reshape(-1).view(np.uint8).any()  # +0 everywhere, bfloat16 and bool included


def test_allocation_rejects_bad_shapes_and_dtypes(cpu):
    with pytest.raises(InvalidArgumentError):
        cpu.empty((2, -1), "float32")
    with pytest.raises(InvalidArgumentError):
        cpu.zeros((2.0,), "float32")
    with pytest.raises(InvalidArgumentError):
        cpu.empty((2,), object)
    with pytest.raises(InvalidArgumentError):
        cpu.empty((2,), "string")


@pytest.mark.parametrize("name", DTYPES)
def test_asarray_from_numpy_without_copy_when_it_already_fits(cpu, name):
    x = np.ones((3, 4), dtype=as_dtype(name))
    assert cpu.asarray(x) is x
    assert cpu.asarray(x, dtype=name) is x


def test_asarray_copy_is_a_new_aligned_array(cpu):
    x = np.arange(10, dtype=np.float32)
    y = cpu.asarray(x, copy=True)
    assert y is not x and not np.shares_memory(x, y)
    assert y.ctypes.data % ALIGNMENT == 0
    np.testing.assert_array_equal(x, y)


def test_asarray_casts_and_makes_c_order(cpu):
    x = np.arange(12, dtype=np.int64).reshape(3, 4)
    y = cpu.asarray(x, dtype="float32")
    assert y.dtype == np.float32 and y.ctypes.data % ALIGNMENT == 0
    np.testing.assert_array_equal(y, x)
    t = cpu.asarray(x.T)
    assert t.flags.c_contiguous and t.ctypes.data % ALIGNMENT == 0
    np.testing.assert_array_equal(t, x.T)
    b = cpu.asarray(np.arange(4, dtype=np.float32), dtype="bfloat16")
    assert b.dtype == devices.bfloat16
    np.testing.assert_array_equal(b.astype(np.float32), [0, 1, 2, 3])


def test_asarray_makes_byte_swapped_input_native(cpu):
    x = np.arange(5, dtype=">f4")
    y = cpu.asarray(x)
    assert y.dtype == np.dtype("float32") and y.dtype.isnative
    np.testing.assert_array_equal(y, [0, 1, 2, 3, 4])


@pytest.mark.parametrize("value, dtype, expected", [
    ([[1, 2], [3, 4]], None, np.array([[1, 2], [3, 4]])),
    ([1.5, 2.5], "float32", np.array([1.5, 2.5], np.float32)),
    ([True, False], None, np.array([True, False])),
    (3, None, np.array(3)),
    (2.5, "float16", np.array(2.5, np.float16)),
    (np.float32(7), None, np.array(7, np.float32)),
])
def test_asarray_from_lists_and_scalars(cpu, value, dtype, expected):
    y = cpu.asarray(value, dtype=dtype)
    assert isinstance(y, np.ndarray)
    assert y.shape == expected.shape and y.dtype == expected.dtype
    np.testing.assert_array_equal(y, expected)


def test_asarray_from_an_object_with_array_protocol(cpu):
    class Wrapped:
        def __array__(self, dtype=None, copy=None):
            return np.arange(6, dtype=np.int32).reshape(2, 3)

    y = cpu.asarray(Wrapped())
    np.testing.assert_array_equal(y, [[0, 1, 2], [3, 4, 5]])
    assert y.dtype == np.int32
    z = cpu.asarray(Wrapped(), dtype="float64", copy=True)
    assert z.dtype == np.float64 and z.ctypes.data % ALIGNMENT == 0


@pytest.mark.parametrize("value", [["a", "b"], [object()], [[1], [1, 2]], {"a": 1}])
def test_asarray_refuses_values_that_are_not_numeric_arrays(cpu, value):
    with pytest.raises(InvalidArgumentError):
        cpu.asarray(value)


def test_asarray_and_to_host_from_torch_cpu_tensors(cpu):
    torch = pytest.importorskip("torch")
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    y = cpu.asarray(t)
    assert isinstance(y, np.ndarray) and y.dtype == np.float32
    np.testing.assert_array_equal(y, t.numpy())
    z = cpu.asarray(t, dtype="float64", copy=True)
    assert z.dtype == np.float64 and z.ctypes.data % ALIGNMENT == 0
    np.testing.assert_array_equal(z, t.numpy())
    out = np.empty((3, 4), np.float32)
    assert to_host(t, out) is out
    np.testing.assert_array_equal(out, t.numpy())
    with pytest.raises(InvalidArgumentError):
        to_host(t, np.empty((3, 4), np.float64))
    assert b"".join(host_chunks(t, 7)) == t.numpy().tobytes()


def test_holds(cpu):
    assert cpu.holds(np.zeros(2))
    assert not cpu.holds([0, 0])


def test_rng_draws_reproducibly_on_the_host(cpu):
    a = cpu.rng(7).standard_normal(5)
    b = cpu.rng(7).standard_normal(5)
    assert isinstance(a, np.ndarray)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, cpu.rng(8).standard_normal(5))  # the seed picks the stream


# -- memory accounting ----------------------------------------------------------------------

def test_memory_in_use_follows_allocations_and_their_views(cpu):
    settle()
    base = cpu.memory_in_use
    a = cpu.empty((1000,), "float64")
    assert cpu.memory_in_use == base + 8000
    b = cpu.zeros((10, 10), "int16")
    assert cpu.memory_in_use == base + 8000 + 200
    view = a[100:200].reshape(10, 10)
    del a
    settle()
    assert cpu.memory_in_use == base + 8200  # a view keeps the allocation alive
    del view
    settle()
    assert cpu.memory_in_use == base + 200
    del b
    settle()
    assert cpu.memory_in_use == base


def test_memory_is_released_when_a_reference_cycle_is_collected(cpu):
    settle()
    base = cpu.memory_in_use

    class Holder:
        pass

    h = Holder()
    h.me = h
    h.array = cpu.empty((256,), "float32")
    del h
    settle()
    assert cpu.memory_in_use == base


def test_peak_memory_records_the_high_water_mark(cpu):
    settle()
    base = cpu.memory_in_use
    a = cpu.empty((1 << 16,), "uint8")
    b = cpu.empty((1 << 16,), "uint8")
    assert cpu.peak_memory >= base + (2 << 16)
    del a, b
    settle()
    assert cpu.memory_in_use == base
    assert cpu.peak_memory >= base + (2 << 16)  # a peak does not go down


def test_copies_are_counted_and_borrowed_arrays_are_not(cpu):
    settle()
    base = cpu.memory_in_use
    x = np.ones(500, np.float64)  # the user's array: not allocated by the device
    same = cpu.asarray(x)
    assert same is x and cpu.memory_in_use == base
    copy = cpu.asarray(x, copy=True)
    assert cpu.memory_in_use == base + 4000
    cast = cpu.asarray(x, dtype="float32")
    assert cpu.memory_in_use == base + 6000
    del copy, cast
    settle()
    assert cpu.memory_in_use == base


def test_zero_size_allocations_cost_nothing(cpu):
    settle()
    base = cpu.memory_in_use
    a = cpu.empty((0, 5), "float64")
    assert a.shape == (0, 5) and cpu.memory_in_use == base


def test_accounting_is_exact_under_concurrent_allocation(cpu):
    settle()
    base = cpu.memory_in_use
    start = threading.Barrier(4)
    kept = []

    def churn():
        start.wait(timeout=10)
        for i in range(200):
            a = cpu.empty((64 + i % 7,), "float32")
            if i % 50 == 0:
                kept.append(a)

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    settle()
    assert cpu.memory_in_use == base + sum(a.nbytes for a in kept)
    kept.clear()
    settle()
    assert cpu.memory_in_use == base


def test_memory_summary_reports_bytes_in_use(cpu):
    a = cpu.empty((3 << 20,), "uint8")  # >= 3 MiB while alive
    row = next(line for line in devices.memory_summary().splitlines() if line.startswith("/device:CPU:0"))
    in_use = float(row.split()[1])
    unit = row.split()[2]
    assert unit in ("MiB", "GiB") and (in_use >= 3.0 or unit == "GiB")
    del a


# -- to_host --------------------------------------------------------------------------------

def test_to_host_of_a_numpy_array_is_the_array():
    x = np.arange(4)
    assert to_host(x) is x
    assert get_device("/cpu:0").to_host(x) is x


def test_to_host_into_out(cpu):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = np.zeros((3, 4), np.float32)
    assert to_host(x, out) is out
    np.testing.assert_array_equal(out, x)
    strided = np.zeros((4, 3), np.float32).T  # a non-contiguous out is filled too
    assert to_host(x, strided) is strided
    np.testing.assert_array_equal(strided, x)
    out2 = np.zeros((3, 4), np.float32)
    assert cpu.to_host(x, out2) is out2
    np.testing.assert_array_equal(out2, x)


def test_to_host_of_lists_and_scalars():
    np.testing.assert_array_equal(to_host([[1, 2], [3, 4]]), [[1, 2], [3, 4]])
    out = np.zeros(2, np.float32)
    to_host([1, 2], out)  # no dtype to compare: cast like numpy's same_kind
    np.testing.assert_array_equal(out, [1, 2])
    assert to_host(3.5).shape == ()


@pytest.mark.parametrize("array, out", [
    (np.zeros((3, 4), np.float32), np.zeros((4, 3), np.float32)),
    (np.zeros((3, 4), np.float32), np.zeros((3, 4), np.float64)),
    (np.zeros((3, 4), np.float32), np.zeros(12, np.float32)),
    (np.zeros((), np.int64), np.zeros(1, np.int64)),
    ([1.5, 2.5], np.zeros(2, np.int64)),  # float into int: numpy refuses the cast
    ([1, 2, 3], np.zeros(2, np.int64)),
    (np.zeros(2), [0.0, 0.0]),  # out must be a numpy array
])
def test_to_host_mismatched_out_is_invalid_argument(array, out):
    before = np.array(out, copy=True)
    with pytest.raises(InvalidArgumentError):
        to_host(array, out)
    np.testing.assert_array_equal(np.asarray(out), before)  # nothing half-written


# -- chunked reads --------------------------------------------------------------------------

@settings(max_examples=150)
@given(st.integers(0, 700), st.integers(1, 300), st.sampled_from(["uint8", "float32", "float64", "bfloat16"]))
def test_host_chunks_yield_the_exact_bytes_in_order(nbytes_hint, chunk_bytes, name):
    dt = as_dtype(name)
    n = nbytes_hint // dt.itemsize
    a = payload(n * dt.itemsize).view(dt)
    chunks = [bytes(c) for c in host_chunks(a, chunk_bytes)]
    assert b"".join(chunks) == a.tobytes()
    assert all(len(c) == chunk_bytes for c in chunks[:-1])
    assert all(0 < len(c) <= chunk_bytes for c in chunks)
    assert len(chunks) == -(-a.nbytes // chunk_bytes)


@pytest.mark.parametrize("chunk_bytes", [1, 7, 8, 48, 96, 1000])
def test_host_chunks_for_dividing_and_non_dividing_chunk_sizes(chunk_bytes):
    a = payload(96)
    chunks = list(host_chunks(a, chunk_bytes))
    assert all(isinstance(c, memoryview) for c in chunks)
    assert b"".join(chunks) == a.tobytes()
    last = 96 % chunk_bytes or min(chunk_bytes, 96)
    assert len(chunks[-1]) == last


@pytest.mark.parametrize("shape", [(0,), (0, 5), (3, 0, 2)])
def test_host_chunks_of_zero_size_arrays_yield_nothing(shape):
    assert list(host_chunks(np.zeros(shape, np.float32), 4)) == []


def test_host_chunks_of_a_scalar_array():
    a = np.array(1.25, np.float64)
    assert b"".join(host_chunks(a, 3)) == a.tobytes()


@pytest.mark.parametrize("view", ["transpose", "step", "fortran"])
def test_host_chunks_of_strided_arrays_are_c_order_bytes(view):
    a = payload(4 * 60).view(np.float32).reshape(6, 10)
    v = {"transpose": a.T, "step": a[::2, 1::3], "fortran": np.asfortranarray(a)}[view]
    assert b"".join(host_chunks(v, 13)) == np.ascontiguousarray(v).tobytes()


@pytest.mark.parametrize("chunk_bytes", [0, -4])
def test_host_chunks_need_a_positive_chunk_size(chunk_bytes):
    with pytest.raises(InvalidArgumentError):
        host_chunks(np.zeros(4), chunk_bytes)


@settings(max_examples=60)
@given(st.integers(0, 500), st.integers(1, 128))
def test_gather_into_a_bytearray(nbytes, chunk_bytes):
    a = payload(nbytes)
    out = bytearray(nbytes)
    assert gather(a, out, chunk_bytes) is out
    assert bytes(out) == a.tobytes()


def test_gather_into_a_numpy_buffer_and_bad_sizes():
    a = np.arange(30, dtype=np.float32).reshape(5, 6)
    out = np.empty(a.nbytes, np.uint8)
    gather(a, out, chunk_bytes=16)
    assert out.tobytes() == a.tobytes()
    typed = np.empty((5, 6), np.float32)
    gather(a, typed, chunk_bytes=50)
    np.testing.assert_array_equal(typed, a)
    with pytest.raises(InvalidArgumentError):
        gather(a, bytearray(a.nbytes - 1))
    with pytest.raises(InvalidArgumentError):
        gather(a, bytearray(a.nbytes + 1))


# -- the double-buffered copy-out, driven by CPU copies ---------------------------------------

class Recorder:
    """Asynchronous CPU "copies" (a thread each, with a small delay) that log every event.

    The log holds ("start", chunk, buffer), ("done", chunk) when a wait returns,
    ("got", chunk, buffer) when the consumer receives a chunk and ("release", chunk)
    just before it asks for the next one.
    """

    def __init__(self, data: bytes, delay: float = 0.0):
        self.data = data
        self.delay = delay
        self.log: list[tuple] = []
        self.lock = threading.Lock()
        self.started: list[int] = []
        self.waited: list[int] = []

    def event(self, *e):
        with self.lock:
            self.log.append(e)

    def start_copy(self, off, n, buf):
        token = len(self.started)
        self.started.append(token)
        self.event("start", off, id(buf))

        def copy():
            if self.delay:
                time.sleep(self.delay)
            memoryview(buf)[:n] = self.data[off:off + n]

        t = threading.Thread(target=copy)
        t.start()
        return token, t, off

    def wait(self, token):
        number, t, off = token
        t.join()
        self.waited.append(number)
        self.event("done", off)


def consume(gen, rec: Recorder, stop_after: int | None = None, hold: float = 0.0) -> bytes:
    """Read chunks the way a writer does, verifying each is intact until it is released."""
    out = bytearray()
    for k, chunk in enumerate(gen):
        offset = len(out)
        rec.event("got", offset, id(chunk.obj))
        copy = bytes(chunk)
        assert copy == rec.data[offset:offset + len(chunk)]
        if hold:
            time.sleep(hold)  # a slow writer: an early refill would land in this window
        assert bytes(chunk) == copy, "the buffer changed while the consumer still held it"
        out += copy
        rec.event("release", offset)
        if stop_after is not None and k + 1 == stop_after:
            break
    return bytes(out)


def check_buffer_discipline(log, chunk_bytes):
    holder: dict[int, int | None] = {}  # buffer -> offset of the chunk handed out and not released
    released = set()
    for e in log:
        if e[0] == "got":
            holder[e[2]] = e[1]
        elif e[0] == "release":
            released.add(e[1])
        elif e[0] == "start":
            _, off, buf = e
            previous = holder.get(buf)
            assert previous is None or previous in released, (
                f"buffer refilled with offset {off} while chunk {previous} was still held")


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 300), st.integers(1, 64))
def test_pipelined_chunks_exact_bytes_and_buffer_discipline(nbytes, chunk_bytes):
    data = payload(nbytes).tobytes()
    rec = Recorder(data)
    buffers = [bytearray(chunk_bytes) for _ in range(4)]  # more than it should ever use
    got = consume(pipelined_chunks(nbytes, chunk_bytes, buffers, rec.start_copy, rec.wait), rec)
    assert got == data
    used = {e[2] for e in rec.log if e[0] == "start"}
    assert len(used) <= 2 and used <= {id(b) for b in buffers}
    check_buffer_discipline(rec.log, chunk_bytes)
    assert sorted(rec.waited) == rec.started  # every copy was waited for exactly once
    # Double buffering: the second copy is started before the first chunk is handed out.
    if nbytes > chunk_bytes:
        kinds = [e[0] for e in rec.log]
        assert kinds.index("start", kinds.index("start") + 1) < kinds.index("got")


def test_pipelined_chunks_with_slow_copies_and_a_slow_consumer():
    data = payload(10_000).tobytes()
    rec = Recorder(data, delay=0.002)
    buffers = [bytearray(1024), bytearray(1024)]
    got = consume(pipelined_chunks(len(data), 1024, buffers, rec.start_copy, rec.wait), rec, hold=0.003)
    assert got == data
    check_buffer_discipline(rec.log, 1024)


def test_pipelined_chunks_wait_for_every_started_copy_when_the_consumer_stops_early():
    data = payload(1000).tobytes()
    rec = Recorder(data, delay=0.01)
    gen = pipelined_chunks(len(data), 100, [bytearray(100), bytearray(100)], rec.start_copy, rec.wait)
    assert consume(gen, rec, stop_after=3) == data[:300]
    gen.close()
    # Nothing may still be writing into the buffers the next gather will reuse.
    # Chunks 0-2 were handed out and chunk 3 was in flight: all four copies were waited for.
    assert sorted(rec.waited) == rec.started == [0, 1, 2, 3]


def test_pipelined_chunks_wait_for_copies_when_the_consumer_fails():
    data = payload(1000).tobytes()
    rec = Recorder(data, delay=0.005)

    def writer():
        for _chunk in pipelined_chunks(len(data), 100, [bytearray(100), bytearray(100)],
                                      rec.start_copy, rec.wait):
            raise OSError("disk full")

    with pytest.raises(OSError):
        writer()
    assert sorted(rec.waited) == rec.started and len(rec.started) == 2


def test_pipelined_chunks_of_nothing_starts_nothing():
    rec = Recorder(b"")
    assert list(pipelined_chunks(0, 16, [bytearray(16)] * 2, rec.start_copy, rec.wait)) == []
    assert rec.log == []


# -- dtypes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", DTYPES)
def test_as_dtype_accepts_every_supported_name_and_its_numpy_dtype(name):
    dt = as_dtype(name)
    # A DType (TF's API) that numpy takes as the dtype it names.
    assert isinstance(dt, devices.dtypes.DType) and isinstance(np.dtype(dt), np.dtype) and dt.name == name
    assert as_dtype(dt) == dt
    assert as_dtype(dt.type) == dt
    assert devices.dtypes.dtype_name(dt) == name


@pytest.mark.parametrize("value, name", [
    ("half", "float16"), ("float", "float32"), ("double", "float64"), ("bool_", "bool"),
    (np.float32, "float32"), (np.dtype("int8"), "int8"), (np.uint16, "uint16"),
    (float, "float32"), (bool, "bool"), (complex, "complex128"),  # Python's float: float32, as TF
    (np.dtype(">f4"), "float32"), (np.dtype("<i8"), "int64"),
    (ml_dtypes.bfloat16, "bfloat16"), (np.dtype(ml_dtypes.bfloat16), "bfloat16"), ("bfloat16", "bfloat16"),
    (devices.bfloat16, "bfloat16"),
])
def test_as_dtype_accepts_aliases_and_numpy_types(value, name):
    assert as_dtype(value).name == name
    assert as_dtype(value).isnative


@pytest.mark.parametrize("value", [
    object, np.object_, np.dtype("O"), str, np.str_, np.dtype("U3"), bytes, np.dtype("S4"),
    np.dtype([("a", "f4"), ("b", "i4")]), np.dtype(("f4", (2,))), "f4,f4", np.void,
    {"names": ["a", "a"], "formats": ["f4", "f4"]},
    np.longdouble, np.dtype("datetime64[s]"), np.dtype("timedelta64"),
    ml_dtypes.float8_e4m3fn, "float8_e4m3fn", "int4",
    "unknown", "FLOAT32", "f4", "<f4", "", None, 3.5, 7, [1, 2],
])
def test_as_dtype_rejects_everything_else(value):
    with pytest.raises(InvalidArgumentError) as info:
        as_dtype(value)
    assert "dtype" in str(info.value)


@given(st.one_of(st.text(max_size=12), st.integers(), st.floats(), st.lists(st.integers(), max_size=3)))
def test_as_dtype_of_arbitrary_input_is_supported_or_invalid_argument(value):
    try:
        dt = as_dtype(value)
    except InvalidArgumentError:
        return
    assert dt.name in DTYPE_NAMES


def test_is_floating():
    floats = {n for n in DTYPES if devices.dtypes.is_floating(as_dtype(n))}
    assert floats == {"float16", "bfloat16", "float32", "float64"}


# -- shapes ---------------------------------------------------------------------------------

@given(st.lists(st.integers(0, 10**12), max_size=6))
def test_as_shape_of_non_negative_ints(dims):
    assert as_shape(dims) == tuple(dims)
    assert as_shape(tuple(dims)) == tuple(dims)
    assert as_shape(np.array(dims, dtype=np.int64)) == tuple(dims)
    assert all(type(d) is int for d in as_shape(np.array(dims, dtype=np.int64)))


def test_as_shape_of_a_scalar_and_numpy_ints():
    assert as_shape(3) == (3,)
    assert as_shape(np.int64(4)) == (4,)
    assert as_shape([np.int32(2), np.uint8(5)]) == (2, 5)
    assert as_shape(()) == ()


@pytest.mark.parametrize("value", [
    -1, [2, -1], (-5,), [2.0], [2, 1.5], 2.0, [True], [2, False], True,
    [np.True_], [np.float32(2)], ["2"], [None], None, object(), [[2]],
])
def test_as_shape_rejects_negative_float_bool_and_other_dims(value):
    with pytest.raises(InvalidArgumentError) as info:
        as_shape(value)
    assert "shape" in str(info.value)


@given(st.lists(st.one_of(st.integers(), st.floats(), st.booleans(), st.none(), st.text(max_size=2)), max_size=4))
def test_as_shape_of_arbitrary_dims_is_valid_or_invalid_argument(dims):
    try:
        shape = as_shape(dims)
    except InvalidArgumentError:
        assert any(isinstance(d, (bool, float, str, type(None))) or d < 0 for d in dims)
        return
    assert shape == tuple(dims) and all(d >= 0 for d in shape)
