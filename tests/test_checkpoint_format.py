"""The checkpoint file format: round trips, layout, stock-msgpack readability, atomic writes.

Layout checks parse the file with plain msgpack (as another language would),
not through the reader under test.
"""
from __future__ import annotations

import os
import re
import tempfile
import tracemalloc
from pathlib import Path

import ml_dtypes
import msgpack
import numpy as np
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.dtypes import DTYPE_NAMES, as_dtype
from devices.errors import DataLossError, FailedPreconditionError, InvalidArgumentError, NotFoundError
from varstore.checkpoint import (
    FORMAT_VERSION,
    TMP_PATTERN,
    CheckpointReader,
    is_checkpoint,
    is_temp_file,
    temp_target,
    write_checkpoint,
)
from varstore.checkpoint import format as fmt
from varstore.checkpoint import writer as writer_mod
from varstore.checkpoint.writer import TensorRun

DTYPES = sorted(DTYPE_NAMES)


# -- helpers ---------------------------------------------------------------------------
def random_array(rng: np.random.Generator, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    dt = as_dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64))
    if dt == np.bool_:
        return rng.integers(0, 2, size=shape).astype(bool)
    # Random bytes: every bit pattern (NaNs, subnormals) must survive unchanged.
    return np.frombuffer(rng.bytes(n * dt.itemsize), dtype=dt).reshape(shape).copy()


def raw_bytes(a: np.ndarray) -> bytes:
    """Little-endian C-order bytes of ``a`` (what the file must hold)."""
    a = np.ascontiguousarray(a)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return a.reshape(-1).view(np.uint8).tobytes()


def parse(path) -> tuple[list, dict, list]:
    """Header, index and footer of a checkpoint, with msgpack alone."""
    data = Path(path).read_bytes()
    header = msgpack.unpackb(data[:fmt.HEADER_SIZE])
    footer = msgpack.unpackb(data[-fmt.FOOTER_SIZE:])
    index = msgpack.unpackb(data[footer[2]:footer[2] + footer[3]])
    return header, index, footer


def walk(path, max_buffer_size=64 << 20) -> list:
    with open(path, "rb") as f:
        return list(msgpack.Unpacker(f, max_buffer_size=max_buffer_size))


@pytest.fixture
def small_bins(monkeypatch):
    """Lower the maximum bin so multi-bin tensors are small enough to test."""
    monkeypatch.setattr(fmt, "MAX_BIN_BYTES", 128)
    return 128


def check_all_reads(path, tensors):
    with CheckpointReader(path) as r:
        assert r.names() == sorted(n for n, _ in tensors)
        for name, a in tensors:
            want = raw_bytes(a)
            assert r.has_tensor(name) and name in r
            assert r.shape(name) == a.shape
            assert r.dtype(name) == as_dtype(a.dtype)
            assert r.nbytes(name) == len(want)
            got = r.get_tensor(name)
            assert got.shape == a.shape and got.dtype == as_dtype(a.dtype)
            assert not got.flags.writeable
            assert got.tobytes() == want
            out = np.empty(a.shape, as_dtype(a.dtype))
            assert r.read_into(name, out) is out
            assert out.tobytes() == want
            assert r.read_tensor(name).tobytes() == want
            assert b"".join(bytes(c) for c in r.iter_chunks(name, 7)) == want
        assert r.verify() == [(n, None) for n, _ in tensors]


# -- round trips -------------------------------------------------------------------------
shapes = st.lists(st.integers(0, 5), min_size=0, max_size=4).map(tuple)
tensor_specs = st.lists(st.tuples(st.sampled_from(DTYPES), shapes, st.booleans()), min_size=0, max_size=6)
names = st.lists(st.text(st.characters(exclude_categories=("Cs",)), max_size=12), unique=True,
                 min_size=6, max_size=6)


@settings(max_examples=60, deadline=None)
@given(specs=tensor_specs, names=names, seed=st.integers(0, 2**32 - 1), multi_bin=st.booleans())
def test_round_trip_random_tensors(specs, names, seed, multi_bin):
    rng = np.random.default_rng(seed)
    tensors = []
    for (dtype, shape, big_endian), name in zip(specs, names):
        a = random_array(rng, dtype, shape)
        if big_endian and a.dtype.itemsize > 1 and a.dtype != ml_dtypes.bfloat16:
            a = a.astype(a.dtype.newbyteorder(">"))
        tensors.append((name, a))
    old = fmt.MAX_BIN_BYTES
    fmt.MAX_BIN_BYTES = 64 if multi_bin else old
    try:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "model.ckpt")
            n = write_checkpoint(path, tensors, fsync=False, chunk_bytes=int(rng.integers(1, 100)))
            assert n == os.path.getsize(path)
            check_all_reads(path, tensors)
            check_layout(path, tensors)
    finally:
        fmt.MAX_BIN_BYTES = old


def check_layout(path, tensors):
    """Offsets aligned, bins where the index says, the stream walkable by stock msgpack."""
    data = Path(path).read_bytes()
    header, index, footer = parse(path)
    assert header == [fmt.MAGIC, FORMAT_VERSION]
    assert footer[:2] == [fmt.FOOTER_MAGIC, FORMAT_VERSION]
    assert footer[2] + footer[3] == len(data) - fmt.FOOTER_SIZE
    assert footer[4] == xxhash.xxh3_64_intdigest(data[footer[2]:footer[2] + footer[3]])
    assert index["names"] == [n for n, _ in tensors]
    step = index["bin_bytes"]
    for (_name, a), off, nbytes, dtype, shape, check in zip(
            tensors, index["offsets"], index["nbytes"], index["dtypes"], index["shapes"], index["checksums"]):
        want = raw_bytes(a)
        assert dtype == as_dtype(a.dtype).name and shape == list(a.shape) and nbytes == len(want)
        assert check == xxhash.xxh3_64_intdigest(want)
        got = b""
        for j in range(max(1, -(-nbytes // step))):
            pos = off + j * (step + 64)
            assert pos % 64 == 0
            length = min(step, nbytes - j * step)
            assert data[pos - 5:pos] == b"\xc6" + length.to_bytes(4, "big")
            got += data[pos:pos + length]
        assert got == want
    # The stream: header, then nils and bins (tensor data, in order), the index, the footer.
    objs = walk(path)
    assert objs[0] == header and objs[-2] == index and objs[-1] == footer
    middle = objs[1:-2]
    assert all(o is None or isinstance(o, bytes) for o in middle)
    assert b"".join(o for o in middle if o is not None) == b"".join(raw_bytes(a) for _, a in tensors)
    run = 0
    for o in middle:
        run = run + 1 if o is None else 0
        assert run < 64


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_including_zero_d_and_zero_size(tmp_path, dtype):
    rng = np.random.default_rng(1)
    tensors = [("scalar", random_array(rng, dtype, ())), ("empty", random_array(rng, dtype, (0, 3))),
               ("m", random_array(rng, dtype, (3, 4)))]
    path = tmp_path / "c"
    write_checkpoint(path, tensors, fsync=False)
    check_all_reads(path, tensors)
    check_layout(path, tensors)


def test_bfloat16_and_bool_bytes_are_the_documented_encoding(tmp_path):
    b = np.array([1.0, -2.5, np.inf], dtype=ml_dtypes.bfloat16)
    t = np.array([True, False, True])
    write_checkpoint(tmp_path / "c", [("b", b), ("t", t)], fsync=False)
    data = (tmp_path / "c").read_bytes()
    _, index, _ = parse(tmp_path / "c")
    ob, ot = index["offsets"]
    assert data[ob:ob + 6] == np.array([0x3F80, 0xC020, 0x7F80], "<u2").tobytes()
    assert data[ot:ot + 3] == b"\x01\x00\x01"


def test_big_endian_input_is_stored_little_endian(tmp_path):
    a = np.arange(6, dtype=">i4").reshape(2, 3)
    write_checkpoint(tmp_path / "c", [("a", a)], fsync=False)
    with CheckpointReader(tmp_path / "c") as r:
        got = r.get_tensor("a")
        assert got.dtype == np.dtype("<i4") and got.tolist() == a.tolist()


def test_non_contiguous_input_is_written_in_c_order(tmp_path):
    a = np.arange(12, dtype=np.float64).reshape(3, 4).T
    b = np.arange(20, dtype=np.int16)[::3]
    write_checkpoint(tmp_path / "c", [("a", a), ("b", b)], fsync=False)
    with CheckpointReader(tmp_path / "c") as r:
        assert np.array_equal(r.get_tensor("a"), a) and np.array_equal(r.get_tensor("b"), b)


def test_python_values_are_accepted(tmp_path):
    write_checkpoint(tmp_path / "c", [("f", 2.5), ("l", [[1, 2], [3, 4]])], fsync=False)
    with CheckpointReader(tmp_path / "c") as r:
        assert r.get_tensor("f").tolist() == 2.5 and r.get_tensor("l").tolist() == [[1, 2], [3, 4]]


def test_unicode_names(tmp_path):
    odd = ["layer/ü:0", "日本語/重み", "emoji 🙂", "", "a\x00b", "/", "x" * 1000, "café", "cafe\u0301"]
    tensors = [(n, np.full(2, i, np.int32)) for i, n in enumerate(odd)]
    write_checkpoint(tmp_path / "c", tensors, fsync=False)
    check_all_reads(tmp_path / "c", tensors)
    with CheckpointReader(tmp_path / "c") as r:
        assert r.get_variable_to_shape_map() == {n: [2] for n in odd}
        assert r.get_variable_to_dtype_map() == {n: np.dtype(np.int32) for n in odd}


def test_bad_names_and_duplicates_are_refused(tmp_path):
    path = tmp_path / "c"
    with pytest.raises(InvalidArgumentError, match="duplicate.*'w'"):
        write_checkpoint(path, [("w", np.zeros(1)), ("w", np.ones(1))], fsync=False)
    with pytest.raises(InvalidArgumentError, match="must be str"):
        write_checkpoint(path, [(b"w", np.zeros(1))], fsync=False)
    with pytest.raises(InvalidArgumentError, match="surrogate"):
        write_checkpoint(path, [("\ud800", np.zeros(1))], fsync=False)
    with pytest.raises(InvalidArgumentError, match="'o'"):
        write_checkpoint(path, [("o", np.array([object()]))], fsync=False)
    with pytest.raises(InvalidArgumentError, match="'s'"):
        write_checkpoint(path, [("s", np.array(["text"]))], fsync=False)
    with pytest.raises(InvalidArgumentError, match="pairs"):
        write_checkpoint(path, [np.zeros(1)], fsync=False)
    assert os.listdir(tmp_path) == []


# -- multi-bin tensors ---------------------------------------------------------------------
def test_multi_bin_tensors(tmp_path, small_bins):
    rng = np.random.default_rng(2)
    tensors = [(f"t{n}", random_array(rng, "uint8", (n,))) for n in (0, 1, 127, 128, 129, 256, 1000)]
    tensors.append(("c128", random_array(rng, "complex128", (5, 7))))
    write_checkpoint(tmp_path / "c", tensors, fsync=False, chunk_bytes=50)
    check_all_reads(tmp_path / "c", tensors)
    check_layout(tmp_path / "c", tensors)
    _, index, _ = parse(tmp_path / "c")
    assert index["bin_bytes"] == 128
    bins = [o for o in walk(tmp_path / "c") if isinstance(o, bytes)]
    assert [len(b) for b in bins[:9]] == [0, 1, 127, 128, 128, 1, 128, 128, 128]
    with CheckpointReader(tmp_path / "c") as r:
        a = r.get_tensor("t1000")
        assert not a.flags.writeable  # a copy (pieces are not contiguous), still read-only


def test_reader_uses_bin_bytes_from_the_file_not_its_constant(tmp_path, monkeypatch):
    a = np.arange(100, dtype=np.float32)
    monkeypatch.setattr(fmt, "MAX_BIN_BYTES", 64)
    write_checkpoint(tmp_path / "c", [("a", a)], fsync=False)
    monkeypatch.setattr(fmt, "MAX_BIN_BYTES", 4096)
    with CheckpointReader(tmp_path / "c") as r:
        assert np.array_equal(r.get_tensor("a"), a)


# -- extra ----------------------------------------------------------------------------
def test_extra_round_trip(tmp_path):
    extra = {"global_step": 1000, "lr": 0.125, "name": "ü", "blob": b"\x00\xff", "flags": [True, None],
             "nested": {"a": [1, [2, {"b": -3}]]}, "big": 2**64 - 1, "neg": -2**63}
    write_checkpoint(tmp_path / "c", [], extra=extra, fsync=False)
    with CheckpointReader(tmp_path / "c") as r:
        assert r.extra == extra and r.names() == []
    write_checkpoint(tmp_path / "d", [], fsync=False)
    assert CheckpointReader(tmp_path / "d").extra == {}


@pytest.mark.parametrize("extra", [{"x": object()}, {"x": np.float32(1)}, {1: 2}, {"x": {1: 2}}, [1], {"x": 2**64}])
def test_extra_must_be_msgpack_native(tmp_path, extra):
    with pytest.raises(InvalidArgumentError, match="extra"):
        write_checkpoint(tmp_path / "c", [("a", np.zeros(1))], extra=extra, fsync=False)
    assert os.listdir(tmp_path) == []


# -- atomicity -----------------------------------------------------------------------
@pytest.fixture
def previous(tmp_path):
    path = tmp_path / "model.ckpt"
    write_checkpoint(path, [("old", np.arange(10.0))], extra={"global_step": 1})
    return path, path.read_bytes()


class ExplodingTensor:
    """Tensor-like whose data cannot be produced: host_chunks fails when asked for it."""

    shape = (1000,)
    dtype = np.dtype(np.float32)

    def __init__(self, exc):
        self.exc = exc

    def __array__(self, dtype=None, copy=None):
        raise self.exc


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt(), OSError(28, "No space left")])
def test_failure_mid_write_keeps_previous_file(previous, exc):
    path, before = previous
    big = np.random.default_rng(0).random(1 << 17)  # 1 MiB: reaches the disk before the failure
    with pytest.raises(type(exc)):
        write_checkpoint(path, [("big", big), ("bad", ExplodingTensor(exc))], chunk_bytes=1 << 16)
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name]


def test_failure_inside_a_tensor_keeps_previous_file(previous, monkeypatch):
    path, before = previous
    real = writer_mod._chunks
    seen = []

    def failing_chunks(array, chunk_bytes):
        for c in real(array, chunk_bytes):
            for i, start in enumerate(range(0, len(c), 1 << 18)):
                if i == 3:  # 768 KiB of this tensor are on disk
                    seen.extend(os.listdir(path.parent))
                    raise KeyboardInterrupt
                yield c[start:start + (1 << 18)]

    monkeypatch.setattr(writer_mod, "_chunks", failing_chunks)
    with pytest.raises(KeyboardInterrupt):
        write_checkpoint(path, [("w", np.ones(1 << 20))])
    temps = [n for n in seen if n != path.name]
    assert len(temps) == 1 and is_temp_file(temps[0]) and temp_target(temps[0])[0] == path.name
    assert temp_target(temps[0])[1] == os.getpid()
    assert (path.parent / temps[0]).exists() is False
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name]


def test_strided_and_big_endian_input_is_staged_in_bounded_memory(tmp_path):
    rng = np.random.default_rng(6)
    strided = rng.random((1024, 2048))[:, ::2]        # 8 MiB of values, not contiguous
    swapped = rng.random((512, 1024)).astype(">f8")   # 4 MiB, big-endian
    transposed = rng.random((64, 4096), dtype=np.float32).T
    tracemalloc.start()
    try:
        write_checkpoint(tmp_path / "c", [("s", strided), ("b", swapped), ("t", transposed)],
                         chunk_bytes=64 << 10, fsync=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Staging (64 KiB) + the writer's 1 MiB small-write buffer; a full copy would be >= 8 MiB.
    assert peak < 2 << 20, peak
    with CheckpointReader(tmp_path / "c") as r:
        assert np.array_equal(r.get_tensor("s"), strided) and np.array_equal(r.get_tensor("b"), swapped)
        assert np.array_equal(r.get_tensor("t"), transposed)


def test_generator_raising_between_tensors_keeps_previous_file(previous):
    path, before = previous

    def tensors():
        yield "a", np.ones(1 << 18)
        raise ValueError("user code failed")

    with pytest.raises(ValueError, match="user code failed"):
        write_checkpoint(path, tensors())
    assert path.read_bytes() == before and os.listdir(path.parent) == [path.name]


def test_successful_write_replaces_and_leaves_no_temp(previous):
    path, before = previous
    write_checkpoint(path, [("new", np.zeros(3))])
    assert path.read_bytes() != before and os.listdir(path.parent) == [path.name]
    with CheckpointReader(path) as r:
        assert r.names() == ["new"] and r.extra == {}


def test_missing_parent_directory(tmp_path):
    missing = tmp_path / "no" / "such"
    with pytest.raises(NotFoundError, match=re.escape(str(missing))):
        write_checkpoint(missing / "model.ckpt", [("a", np.zeros(1))])


def test_temp_file_names():
    name = fmt.temp_name("model.ckpt-1000")
    m = TMP_PATTERN.match(name)
    assert m and m.group("target") == "model.ckpt-1000" and int(m.group("pid")) == os.getpid()
    assert is_temp_file("/some/dir/" + name) and is_temp_file(Path(name))
    for other in ("model.ckpt-1000", ".model.ckpt.tmp-12-xyz", "model.ckpt.tmp-1-0123456789abcdef",
                  ".a.tmp-1-0123456789abcde", "checkpoint"):
        assert not is_temp_file(other) and temp_target(other) is None


# -- reading ---------------------------------------------------------------------------
def test_get_tensor_is_mapped_read_only_and_reads_little(tmp_path):
    rng = np.random.default_rng(3)
    tensors = [(f"big{i}", rng.random(1 << 20, dtype=np.float32)) for i in range(8)]  # 32 MiB
    tensors.append(("small", np.arange(5, dtype=np.int64)))
    write_checkpoint(tmp_path / "c", tensors, fsync=False)
    tracemalloc.start()
    try:
        r = CheckpointReader(tmp_path / "c")
        small = r.get_tensor("small")
        big = r.get_tensor("big3")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 << 10, peak  # no 4 MiB tensor, let alone the 32 MiB file, was read into memory
    assert small.tolist() == [0, 1, 2, 3, 4] and np.array_equal(big, tensors[3][1])
    with pytest.raises(ValueError):
        big[0] = 1
    base = big
    while not isinstance(base, memoryview):
        base = base.base
    assert type(base.obj).__name__ == "mmap"
    r.close()
    assert float(big[1]) == float(tensors[3][1][1])  # the mapping outlives the reader
    with pytest.raises(FailedPreconditionError):
        r.read_into("small", np.empty(5, np.int64))


def test_read_into_checks_out(tmp_path):
    write_checkpoint(tmp_path / "c", [("w", np.arange(6, dtype=np.float32).reshape(2, 3))], fsync=False)
    r = CheckpointReader(tmp_path / "c")
    with pytest.raises(InvalidArgumentError, match=r"\(2, 3\).*float32.*\(3, 2\)"):
        r.read_into("w", np.empty((3, 2), np.float32))
    with pytest.raises(InvalidArgumentError, match=r"float32.*float64"):
        r.read_into("w", np.empty((2, 3), np.float64))
    with pytest.raises(InvalidArgumentError, match="contiguous"):
        r.read_into("w", np.empty((3, 2), np.float32).T)
    ro = np.empty((2, 3), np.float32)
    ro.flags.writeable = False
    with pytest.raises(InvalidArgumentError, match="writable"):
        r.read_into("w", ro)
    with pytest.raises(InvalidArgumentError, match="24 bytes"):
        r.read_into("w", bytearray(23))
    with pytest.raises(InvalidArgumentError, match="read-only"):
        r.read_into("w", bytes(24))
    with pytest.raises(InvalidArgumentError, match="host buffer"):
        r.read_into("w", object())
    buf = bytearray(24)
    assert r.read_into("w", buf) is buf
    assert np.frombuffer(buf, np.float32).tolist() == [0, 1, 2, 3, 4, 5]


def test_iter_chunks_bounded_and_into_a_given_buffer(tmp_path):
    a = np.arange(1000, dtype=np.int32)
    write_checkpoint(tmp_path / "c", [("a", a)], fsync=False)
    r = CheckpointReader(tmp_path / "c")
    chunks = [bytes(c) for c in r.iter_chunks("a", 999)]
    assert [len(c) for c in chunks] == [999, 999, 999, 999, 4] and b"".join(chunks) == a.tobytes()
    staging = np.empty(512, np.uint8)
    got = b""
    for c in r.iter_chunks("a", 512, buffer=staging):
        assert c.readonly and np.shares_memory(np.frombuffer(c, np.uint8), staging)
        got += bytes(c)
    assert got == a.tobytes()
    with pytest.raises(InvalidArgumentError):
        r.iter_chunks("a", 0)
    with pytest.raises(InvalidArgumentError):
        list(r.iter_chunks("a", 512, buffer=bytearray(10)))


def test_missing_key_names_the_closest(tmp_path):
    write_checkpoint(tmp_path / "c", [("layer1/weights", np.zeros(1)), ("layer1/biases", np.zeros(1)),
                                     ("global_step", np.zeros(()))], fsync=False)
    r = CheckpointReader(tmp_path / "c")
    for call in (r.get_tensor, r.shape, r.dtype, r.nbytes, r.read_tensor, lambda n: r.read_into(n, bytearray(8))):
        with pytest.raises(NotFoundError, match=r"layer1/weight'.*not found.*'layer1/weights'") as e:
            call("layer1/weight")
        assert isinstance(e.value, LookupError) and str(tmp_path / "c") in str(e.value)
    assert not r.has_tensor("layer1/weight") and not r.has_tensor(3)
    with pytest.raises(NotFoundError, match="not found"):
        r.get_tensor("zzzz")


def test_missing_file_and_not_a_checkpoint(tmp_path):
    with pytest.raises(NotFoundError, match="not found"):
        CheckpointReader(tmp_path / "nope")
    with pytest.raises(NotFoundError, match="directory"):
        CheckpointReader(tmp_path)
    (tmp_path / "text").write_text("model_checkpoint_path: \"model.ckpt-1\"\n")
    with pytest.raises(NotFoundError, match="not a varstore checkpoint"):
        CheckpointReader(tmp_path / "text")
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(DataLossError, match="empty"):
        CheckpointReader(tmp_path / "empty")
    write_checkpoint(tmp_path / "c", [("a", np.zeros(2))], fsync=False)
    assert is_checkpoint(tmp_path / "c") and not is_checkpoint(tmp_path / "text")
    assert not is_checkpoint(tmp_path / "empty") and not is_checkpoint(tmp_path / "nope")


def test_paths_that_are_not_files(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(NotFoundError, match="not a regular file"):
        CheckpointReader(tmp_path / "fifo")  # and does not block waiting for a writer
    with pytest.raises(NotFoundError):
        CheckpointReader(str(tmp_path / "a\0b"))
    with pytest.raises(InvalidArgumentError, match="PathLike"):
        CheckpointReader(3.5)


class HostTensorLike:
    """Not a numpy array: reaches devices.transfer.host_chunks, as a cupy array does."""

    def __init__(self, a):
        self._a = a
        self.shape, self.dtype = a.shape, a.dtype

    def __array__(self, dtype=None, copy=None):
        return self._a


def test_arrays_that_are_not_numpy_go_through_host_chunks(tmp_path, monkeypatch):
    a = np.random.default_rng(8).random((33, 17))
    calls = []
    real = writer_mod.host_chunks
    monkeypatch.setattr(writer_mod, "host_chunks", lambda arr, n: calls.append(n) or real(arr, n))
    write_checkpoint(tmp_path / "c", [("x", HostTensorLike(a)), ("n", a)], chunk_bytes=1000, fsync=False)
    assert calls == [1000]  # only the non-numpy one
    with CheckpointReader(tmp_path / "c") as r:
        assert np.array_equal(r.get_tensor("x"), a) and np.array_equal(r.get_tensor("n"), a)


def test_many_tensors(tmp_path):
    rng = np.random.default_rng(4)
    tensors = [(f"layer{i // 4}/{'wbmv'[i % 4]}", rng.random(int(rng.integers(1, 50)), dtype=np.float32))
               for i in range(2000)]
    write_checkpoint(tmp_path / "c", tensors, fsync=False)
    with CheckpointReader(tmp_path / "c") as r:
        assert len(r) == 2000 and r.names() == sorted(n for n, _ in tensors)
        for name, a in tensors[::97]:
            assert np.array_equal(r.get_tensor(name), a)
    assert len(walk(tmp_path / "c")) > 2000


# -- docs/FORMAT.md's reader --------------------------------------------------------------
def doc_reader():
    text = (Path(__file__).resolve().parent.parent / "docs" / "FORMAT.md").read_text()
    section = text.split("## Reading without varstore", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.splitlines()) <= 25
    namespace: dict = {}
    exec(compile(code, "FORMAT.md", "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace["read_checkpoint"]


def test_format_md_reader_reads_our_files(tmp_path, small_bins):
    read_checkpoint = doc_reader()
    rng = np.random.default_rng(5)
    tensors = [(f"{d}/x", random_array(rng, d, (3, 5))) for d in DTYPES]
    tensors += [("empty", np.zeros((0, 4), np.float32)), ("scalar", np.array(7, np.int64)),
                ("multi", random_array(rng, "float64", (50,)))]  # 400 bytes: 4 pieces of <= 128
    write_checkpoint(tmp_path / "c", tensors, extra={"global_step": 1}, fsync=False)
    got = read_checkpoint(str(tmp_path / "c"))
    assert list(got) == [n for n, _ in tensors]
    for name, a in tensors:
        g = got[name]
        assert g.shape == a.shape and g.tobytes() == raw_bytes(a)
        assert g.dtype == (np.dtype("<u2") if a.dtype == ml_dtypes.bfloat16 else a.dtype)


class _Plain(np.ndarray):
    """An ndarray subclass: the writer takes its general path for it, not the small-tensor one."""


@settings(max_examples=40, deadline=None)
@given(specs=st.lists(st.tuples(st.sampled_from(DTYPES), shapes, st.booleans()), min_size=1, max_size=12),
       seed=st.integers(0, 2**32 - 1))
def test_small_tensor_fast_path_writes_the_same_bytes_as_the_general_path(tmp_path_factory, specs, seed):
    rng = np.random.default_rng(seed)
    tensors = []
    for i, (dtype, shape, big_endian) in enumerate(specs):
        a = random_array(rng, dtype, shape)
        if big_endian and a.dtype.itemsize > 1 and a.dtype.kind in "iufc":
            a = a.astype(a.dtype.newbyteorder(">"))  # not native: the general path swaps it
        tensors.append((f"t{i}", a))
    d = tmp_path_factory.mktemp("paths")
    fast, general, runs = d / "fast", d / "general", d / "runs"
    write_checkpoint(fast, tensors, fsync=False)  # a list: grouped into TensorRuns
    write_checkpoint(general, [(n, a.view(_Plain)) for n, a in tensors], fsync=False)
    # Explicit runs, cut anywhere; a strided or big-endian array makes its run go tensor by tensor.
    cut = int(rng.integers(0, len(tensors) + 1))
    strided = [(n, np.repeat(a, 2, axis=-1)[..., ::2] if a.ndim and rng.random() < 0.3 else a) for n, a in tensors]
    items = [TensorRun([n for n, _ in part], [a for _, a in part]) for part in (strided[:cut], strided[cut:])]
    write_checkpoint(runs, iter(items), fsync=False)
    assert fast.read_bytes() == general.read_bytes() == runs.read_bytes()
    check_all_reads(fast, tensors)


def test_a_run_is_checked_as_a_whole_and_errors_name_the_tensor(tmp_path):
    path = tmp_path / "c"
    a = np.zeros(4, np.float32)
    for items, match in [([TensorRun(["x", "y", "x"], [a, a, a])], "duplicate.*'x'"),
                         ([("x", a), TensorRun(["y", "x"], [a, a])], "duplicate.*'x'"),
                         ([TensorRun(["x", 3], [a, a])], "must be str"),
                         ([TensorRun(["x", "\ud800"], [a, a])], "surrogate"),
                         ([TensorRun(["x", "o"], [a, np.array([object()])])], "'o'")]:
        with pytest.raises(InvalidArgumentError, match=match):
            write_checkpoint(path, iter(items), fsync=False)
    assert os.listdir(tmp_path) == []
