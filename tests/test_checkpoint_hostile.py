"""Corrupt, truncated and hostile checkpoint files: only devices.errors.OpError subclasses escape.

Crafted files get a correct index checksum (see ``craft``), so each
validation rule is reached on its own rather than stopped by the checksum.
"""
from __future__ import annotations

import contextlib
import tempfile
import tracemalloc
from pathlib import Path

import msgpack
import numpy as np
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.errors import DataLossError, NotFoundError, OpError
from varstore.checkpoint import CheckpointReader, validate, write_checkpoint
from varstore.checkpoint import format as fmt

F32 = np.arange(4, dtype=np.float32)


def craft(path, index=None, *, body=None, raw_index=None, version=1, footer_version=None,
          index_offset=None, index_nbytes=None, index_checksum=None, tail=b""):
    """Write a file with our header and footer around ``body`` and ``index``.

    By default ``body`` holds one float32[4] tensor whose data starts at offset 64
    and the footer is correct for whatever index is given.
    """
    if body is None:
        body = bytes([fmt.PAD_BYTE]) * 37 + fmt.bin_header(16) + F32.tobytes()
    head = fmt.HEADER_PREFIX + bytes([version])
    raw = raw_index if raw_index is not None else msgpack.packb(index, use_bin_type=True)
    off = len(head) + len(body)
    footer = fmt.pack_footer(off if index_offset is None else index_offset,
                             len(raw) if index_nbytes is None else index_nbytes,
                             xxhash.xxh3_64_intdigest(raw) if index_checksum is None else index_checksum,
                             version=version if footer_version is None else footer_version)
    Path(path).write_bytes(head + body + raw + footer + tail)
    return path


def one_tensor(**changes):
    index = {"names": ["w"], "dtypes": ["float32"], "shapes": [[4]], "offsets": [64], "nbytes": [16],
             "checksums": [xxhash.xxh3_64_intdigest(F32.tobytes())], "bin_bytes": fmt.MAX_BIN_BYTES,
             "checksum": "xxh3_64", "extra": {}}
    index.update(changes)
    return index


def two_tensors(**changes):
    """'a' (64 bytes at 64) and 'b' (16 bytes at 192)."""
    a = np.arange(16, dtype=np.float32).tobytes()
    body = (bytes([fmt.PAD_BYTE]) * 37 + fmt.bin_header(64) + a
            + bytes([fmt.PAD_BYTE]) * 59 + fmt.bin_header(16) + F32.tobytes())
    index = {"names": ["a", "b"], "dtypes": ["float32"] * 2, "shapes": [[16], [4]], "offsets": [64, 192],
             "nbytes": [64, 16], "checksums": [xxhash.xxh3_64_intdigest(a), xxhash.xxh3_64_intdigest(F32.tobytes())],
             "bin_bytes": fmt.MAX_BIN_BYTES, "checksum": "xxh3_64", "extra": {}}
    index.update(changes)
    return index, body


def read_everything(path):
    """Open and read every tensor every way; return {name: bytes} (raises on any problem)."""
    with CheckpointReader(path) as r:
        out = {}
        _ = r.extra, r.get_variable_to_shape_map(), r.get_variable_to_dtype_map()
        for name in r.names():
            got = r.get_tensor(name).tobytes()
            assert r.read_tensor(name).tobytes() == got
            assert b"".join(bytes(c) for c in r.iter_chunks(name, 1000)) == got
            out[name] = got
        assert all(err is None for _, err in r.verify())
        return out


@contextlib.contextmanager
def cross_checked():
    """Make the column-at-a-time validator prove itself: whatever it accepts, the
    tensor-at-a-time reference validator must accept with the same result."""
    fast = validate._check_columns_fast

    def checked(cols, bin_bytes, index_offset):
        got = fast(cols, bin_bytes, index_offset)
        if got is not None:
            def bad(msg, name=None):
                raise AssertionError(f"fast validator accepted what the reference rejects: {name}: {msg}")
            assert validate._check_columns(cols, bin_bytes, index_offset, bad) == got
        return got

    validate._check_columns_fast = checked
    try:
        yield
    finally:
        validate._check_columns_fast = fast


def test_crafted_baseline_is_valid(tmp_path):
    """The crafting helpers make good files: every failure below comes from the one change."""
    assert read_everything(craft(tmp_path / "c", one_tensor())) == {"w": F32.tobytes()}
    index, body = two_tensors()
    assert read_everything(craft(tmp_path / "d", index, body=body))["b"] == F32.tobytes()


# -- truncation, flips, garbage ---------------------------------------------------------------
@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt-7"
    tensors = [("w", np.arange(12, dtype=np.float32).reshape(3, 4)), ("b", np.ones(3, np.float64)),
               ("step", np.array(7, np.int64)), ("mask", np.array([True, False]))]
    write_checkpoint(path, tensors, extra={"global_step": 7}, fsync=False)
    return path, dict(tensors)


def test_truncation_at_every_byte(small_checkpoint, tmp_path):
    path, _ = small_checkpoint
    data = path.read_bytes()
    cut = tmp_path / "cut"
    for n in range(len(data)):
        cut.write_bytes(data[:n])
        with pytest.raises(DataLossError, match=str(cut)):
            read_everything(cut)


def test_flipped_data_byte_names_the_tensor(small_checkpoint, tmp_path):
    path, tensors = small_checkpoint
    with CheckpointReader(path) as r:
        off = r._index.offsets[r._index.position["b"]]
    data = bytearray(path.read_bytes())
    data[off + 5] ^= 0x10
    bad = tmp_path / "bad"
    bad.write_bytes(bytes(data))
    r = CheckpointReader(bad)  # the index is intact: opening works
    assert np.array_equal(r.get_tensor("w"), tensors["w"])
    for read in (r.get_tensor, r.read_tensor, lambda n: r.read_into(n, np.empty(3)),
                 lambda n: list(r.iter_chunks(n, 4))):
        with pytest.raises(DataLossError, match=rf"{bad}.*tensor 'b'.*checksum"):
            read("b")
    report = dict(r.verify())
    assert report["w"] is None and report["step"] is None and "checksum" in report["b"]


def test_damaged_bin_header_names_the_tensor(small_checkpoint, tmp_path):
    path, _ = small_checkpoint
    with CheckpointReader(path) as r:
        off = r._index.offsets[r._index.position["w"]]
    data = bytearray(path.read_bytes())
    data[off - 1] ^= 0x01  # low byte of the bin32 length
    (tmp_path / "bad").write_bytes(bytes(data))
    r = CheckpointReader(tmp_path / "bad")
    for read in (r.get_tensor, r.read_tensor, lambda n: list(r.iter_chunks(n, 4))):
        with pytest.raises(DataLossError, match="tensor 'w'.*bin32 header"):
            read("w")


def test_flipped_index_byte(small_checkpoint, tmp_path):
    path, _ = small_checkpoint
    data = bytearray(path.read_bytes())
    index_offset = fmt.parse_footer(bytes(data[-fmt.FOOTER_SIZE:]))[1]
    for pos in (index_offset, index_offset + 10, len(data) - fmt.FOOTER_SIZE - 1):
        bad = bytearray(data)
        bad[pos] ^= 0x04
        (tmp_path / "bad").write_bytes(bytes(bad))
        with pytest.raises(DataLossError, match="index fails its checksum"):
            CheckpointReader(tmp_path / "bad")


def test_damaged_header_with_intact_footer(small_checkpoint, tmp_path):
    path, _ = small_checkpoint
    data = bytearray(path.read_bytes())
    data[3] ^= 0x20
    (tmp_path / "bad").write_bytes(bytes(data))
    with pytest.raises(DataLossError, match="header"):
        CheckpointReader(tmp_path / "bad")


def test_trailing_bytes_after_footer(small_checkpoint, tmp_path):
    path, _ = small_checkpoint
    (tmp_path / "bad").write_bytes(path.read_bytes() + b"\xc0")
    with pytest.raises(DataLossError, match="footer"):
        CheckpointReader(tmp_path / "bad")


def test_random_garbage_and_empty_files(tmp_path):
    rng = np.random.default_rng(0)
    for i, n in enumerate([1, 10, 65, 66, 1000, 100_000]):
        p = tmp_path / f"g{i}"
        p.write_bytes(b"\x00" + rng.bytes(n - 1))
        with pytest.raises(NotFoundError, match="not a varstore checkpoint"):
            CheckpointReader(p)
        p.write_bytes(fmt.HEADER + rng.bytes(n))
        with pytest.raises(DataLossError, match=str(p)):
            CheckpointReader(p)
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(DataLossError, match="empty"):
        CheckpointReader(tmp_path / "empty")
    (tmp_path / "prefix").write_bytes(fmt.HEADER[:9])
    with pytest.raises(DataLossError, match="truncated"):
        CheckpointReader(tmp_path / "prefix")


# -- versions and the footer -------------------------------------------------------------
def test_unknown_version(tmp_path):
    for v in (0, 2, 127, 200):
        craft(tmp_path / "c", one_tensor(), version=v)
        with pytest.raises(DataLossError, match=rf"version {v} is not understood.*versions \[1\]"):
            CheckpointReader(tmp_path / "c")


def test_footer_version_must_match_header(tmp_path):
    craft(tmp_path / "c", one_tensor(), footer_version=2)
    with pytest.raises(DataLossError, match="footer says 2"):
        CheckpointReader(tmp_path / "c")


def measure_peak(fn):
    tracemalloc.start()
    try:
        try:
            fn()
        except OpError as e:
            err = e
        else:
            err = None
        return tracemalloc.get_traced_memory()[1], err
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("claim", [fmt.MAX_INDEX_BYTES + 1, 2**40, 2**64 - 1])
def test_oversized_index_claim_fails_before_reading(tmp_path, claim):
    craft(tmp_path / "c", one_tensor(), index_nbytes=claim)
    peak, err = measure_peak(lambda: CheckpointReader(tmp_path / "c"))
    assert isinstance(err, DataLossError) and "larger than" in err.message
    assert peak < 64 << 10


@pytest.mark.parametrize("change", [dict(index_offset=0), dict(index_offset=10), dict(index_offset=2**63),
                                    dict(index_nbytes=1), dict(index_offset=2**64 - 1, index_nbytes=2)])
def test_index_position_must_match_footer(tmp_path, change):
    craft(tmp_path / "c", one_tensor(), **change)
    with pytest.raises(DataLossError, match="must end where the footer starts"):
        CheckpointReader(tmp_path / "c")


# -- hostile indexes (valid checksum) ---------------------------------------------------------
def test_one_terabyte_tensor_fails_before_any_allocation(tmp_path):
    craft(tmp_path / "c", one_tensor(shapes=[[2**38, 1]], nbytes=[2**40]))
    peak, err = measure_peak(lambda: CheckpointReader(tmp_path / "c").get_tensor("w"))
    assert isinstance(err, DataLossError) and "tensor 'w'" in err.message and "past" in err.message
    assert peak < 64 << 10


@pytest.mark.parametrize("offsets,match", [
    ([64, 64], "overlaps tensor"),
    ([64, 128], "tensor 'b'.*overlaps tensor 'a'"),
    ([128, 128], "overlaps tensor"),
    ([64, 2**40], "past the start of the index"),
    ([64, 2**64 - 64], "past the start of the index"),
    ([64, 0], "aligned"),
    ([64, -64], "aligned"),
    ([64, 193], "aligned"),
    ([64, 2**70], "aligned"),
    ([64, 1.5], "aligned"),
    ([64, None], "aligned"),
])
def test_bad_offsets(tmp_path, offsets, match):
    index, body = two_tensors(offsets=offsets)
    if offsets[1] == 2**70:
        index["offsets"] = [64, "x" * 70]  # msgpack cannot hold 2**70; a string is as wrong
    craft(tmp_path / "c", index, body=body)
    with cross_checked(), pytest.raises(DataLossError, match=match) as e:
        read_everything(tmp_path / "c")
    assert str(tmp_path / "c") in e.value.message


def test_offset_without_a_bin_header_is_caught_at_read(tmp_path):
    # Aligned, inside the file, no overlap, but the bytes before it are not its bin32 header.
    index, body = two_tensors(offsets=[64, 256])
    craft(tmp_path / "c", index, body=body + bytes(128))
    r = CheckpointReader(tmp_path / "c")
    for read in (r.get_tensor, r.read_tensor, lambda n: list(r.iter_chunks(n, 4))):
        with pytest.raises(DataLossError, match="tensor 'b'.*bin32 header"):
            read("b")
    assert dict(r.verify())["a"] is None


@pytest.mark.parametrize("dtype", ["float8", "object", "O", "<f4", "str", "", 3, None, b"float32", ["float32"]])
def test_unknown_dtype(tmp_path, dtype):
    craft(tmp_path / "c", one_tensor(dtypes=[dtype]))
    with pytest.raises(DataLossError, match="tensor 'w'.*unknown dtype"):
        CheckpointReader(tmp_path / "c")


@pytest.mark.parametrize("shape,nbytes,match", [
    ([5], 16, "does not match"),
    ([4], 17, "does not match"),
    ([4], 2**64 - 1, "does not match"),
    ([-4], 16, "non-negative"),
    ([True, 4], 16, "non-negative"),
    ([4.0], 16, "non-negative"),
    ([[4]], 16, "non-negative"),
    (4, 16, "list"),
    ([1] * 65, 4, "at most 64"),
    ([0, 2**63], 0, "too large"),
    ([0] + [2**63 - 1] * 10, 0, "too large"),
    ([2**64 - 1] * 3, 0, "too large"),
    ([2**31, 2**31], 0, "too large"),
    ([4], "16", "does not match"),
    ([4], 16.0, "does not match"),
])
def test_bad_shapes_and_sizes(tmp_path, shape, nbytes, match):
    craft(tmp_path / "c", one_tensor(shapes=[shape], nbytes=[nbytes]))
    with cross_checked(), pytest.raises(DataLossError, match=match):
        CheckpointReader(tmp_path / "c")


@pytest.mark.parametrize("changes,match", [
    (dict(names=["a", "a"], dtypes=["float32"] * 2, shapes=[[16], [4]]), "duplicate"),
    (dict(names=[b"a", "b"]), "not a str"),
    (dict(names=[1, "b"]), "not a str"),
    (dict(names=["a"]), "has 2 entries"),
    (dict(checksums=[1, 2, 3]), "has 3 entries"),
    (dict(checksums=[-1, 2]), "uint64"),
    (dict(checksums=["x", 2]), "uint64"),
    (dict(checksums=None), "must be a list"),
    (dict(bin_bytes=0), "bin_bytes"),
    (dict(bin_bytes=63), "bin_bytes"),
    (dict(bin_bytes=100), "bin_bytes"),
    (dict(bin_bytes=2**32), "bin_bytes"),
    (dict(bin_bytes=True), "bin_bytes"),
    (dict(checksum="crc32"), "checksum algorithm"),
    (dict(extra=[1]), "extra"),
    (dict(extra=None), "extra"),
])
def test_bad_columns(tmp_path, changes, match):
    index, body = two_tensors(**changes)
    craft(tmp_path / "c", index, body=body)
    with cross_checked(), pytest.raises(DataLossError, match=match):
        CheckpointReader(tmp_path / "c")


@pytest.mark.parametrize("key", ["names", "dtypes", "shapes", "offsets", "nbytes", "checksums", "bin_bytes",
                                 "checksum", "extra"])
def test_missing_index_field(tmp_path, key):
    index = one_tensor()
    del index[key]
    craft(tmp_path / "c", index)
    with pytest.raises(DataLossError, match=f"missing field '{key}'"):
        CheckpointReader(tmp_path / "c")


def test_unknown_index_keys_are_ignored(tmp_path):
    craft(tmp_path / "c", one_tensor(future_column=[1], comment="hi"))
    assert read_everything(tmp_path / "c") == {"w": F32.tobytes()}


@pytest.mark.parametrize("raw", [
    b"\x91" * 100_000 + b"\xc0",                   # 100000 nested arrays
    b"\x81\xa1k" * 100_000 + b"\xc0",              # 100000 nested maps
    b"\xdd\xff\xff\xff\xff",                       # array32 claiming 4 billion entries
    b"\xdf\xff\xff\xff\xff",                       # map32 claiming 4 billion entries
    b"\xdb\xff\xff\xff\xff",                       # str32 claiming 4 GiB
    b"\xc6\xff\xff\xff\xff",                       # bin32 claiming 4 GiB
    b"\xd4\x01\x00",                               # fixext
    b"\xd6\xff\x00\x00\x00\x00",                   # timestamp ext
    b"\xc7\x00\x05",                               # ext8 of length 0
    b"\xc1",                                       # never-used byte
    b"",                                           # nothing
    b"\xc0\xc0",                                   # extra data
    b"\x81\x01\x02",                               # int map key
    b"\x81\x91\x01\x02",                           # unhashable map key
    b"\x81\xa1\xff\x01",                           # invalid utf-8 key
    b"\xa2\xc3\x28",                               # invalid utf-8 str
    b"\x92\x01",                                   # truncated array
    b"\x90",                                       # not a map
    b"\xca\x7f\xc0\x00\x00",                       # a float (NaN)
])
def test_undecodable_or_hostile_index_bytes(tmp_path, raw):
    craft(tmp_path / "c", raw_index=raw)
    peak, err = measure_peak(lambda: CheckpointReader(tmp_path / "c"))
    assert isinstance(err, DataLossError), err
    assert "corrupt checkpoint index" in err.message and str(tmp_path / "c") in err.message
    assert peak < (1 << 20) + 80 * len(raw)


def test_invalid_utf8_in_a_name(tmp_path):
    raw = msgpack.packb(one_tensor(names=["wwww"]))
    craft(tmp_path / "c", raw_index=raw.replace(b"\xa4wwww", b"\xa4w\xff\xfew"))
    with pytest.raises(DataLossError, match="cannot decode"):
        CheckpointReader(tmp_path / "c")


# -- fuzzing ------------------------------------------------------------------------------
def _base_files():
    """Real checkpoints to mutate: mixed dtypes, and one with multi-bin tensors."""
    d = Path(tempfile.mkdtemp(prefix="hostile-"))
    rng = np.random.default_rng(7)
    mixed = [("w", rng.random((3, 5), dtype=np.float32)), ("b/ü", rng.integers(0, 9, 7).astype(np.int16)),
             ("s", np.array(2.5)), ("e", np.zeros((0, 2), np.complex64)), ("m", np.array([True, False]))]
    write_checkpoint(d / "mixed", mixed, extra={"global_step": 3, "note": "x"}, fsync=False)
    old = fmt.MAX_BIN_BYTES
    fmt.MAX_BIN_BYTES = 64
    try:
        multi = [("big", rng.random(50)), ("tail", np.arange(3, dtype=np.uint8))]
        write_checkpoint(d / "multi", multi, fsync=False)
    finally:
        fmt.MAX_BIN_BYTES = old
    out = {}
    for name, tensors in (("mixed", mixed), ("multi", multi)):
        data = (d / name).read_bytes()
        _, index_offset, index_nbytes, _ = fmt.parse_footer(data[-fmt.FOOTER_SIZE:])
        index = msgpack.unpackb(data[index_offset:index_offset + index_nbytes])
        # Where mutations land: hypothesis favours small numbers, so aim at each region explicitly.
        tensor_bytes = [p for off, n in zip(index["offsets"], index["nbytes"]) for p in range(off - 5, off + n)]
        regions = {"anywhere": list(range(len(data))), "tensors": tensor_bytes,
                   "index": list(range(index_offset, index_offset + index_nbytes)),
                   "footer": list(range(len(data) - fmt.FOOTER_SIZE, len(data)))}
        out[name] = (data, {n: np.ascontiguousarray(a).tobytes() for n, a in tensors}, regions)
    for p in d.iterdir():
        p.unlink()
    d.rmdir()
    return out


BASES = _base_files()

position = st.tuples(st.sampled_from(["anywhere", "tensors", "tensors", "index", "footer"]),
                     st.integers(0, 2**20))
mutation = st.one_of(
    st.tuples(st.just("flip"), position, st.integers(0, 7)),
    st.tuples(st.just("overwrite"), position, st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("insert"), position, st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), position, st.integers(1, 16)),
    st.tuples(st.just("truncate"), position, st.just(None)),
    st.tuples(st.just("append"), position, st.binary(min_size=1, max_size=16)),
)


def mutate(data: bytes, regions, ops) -> bytes:
    buf = bytearray(data)
    for kind, (region, k), arg in ops:
        pos = regions[region][k % len(regions[region])]
        if kind == "flip" and pos < len(buf):
            buf[pos] ^= 1 << arg
        elif kind == "overwrite":
            buf[pos:pos + len(arg)] = arg
        elif kind == "insert":
            buf[pos:pos] = arg
        elif kind == "delete":
            del buf[pos:pos + arg]
        elif kind == "truncate":
            del buf[pos:]
        elif kind == "append":
            buf += arg
    return bytes(buf)


@settings(max_examples=300, deadline=None)
@given(base=st.sampled_from(sorted(BASES)), ops=st.lists(mutation, min_size=1, max_size=3))
def test_mutated_checkpoints_fail_cleanly_or_read_correctly(base, ops):
    data, expected, regions = BASES[base]
    bad = mutate(data, regions, ops)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.ckpt"
        path.write_bytes(bad)
        results = {}

        def attempt():
            with CheckpointReader(path) as r:
                # Only an untouched index opens (it is checksummed), so the names are the originals.
                assert r.names() == sorted(expected)
                for name in r.names():
                    for how, read in (("map", r.get_tensor), ("copy", r.read_tensor),
                                      ("into", lambda n: r.read_into(n, bytearray(r.nbytes(n)))),
                                      ("chunks", lambda n: b"".join(bytes(c) for c in r.iter_chunks(n, 40)))):
                        try:
                            got = read(name)
                        except DataLossError as e:
                            assert name in e.message and str(path) in e.message
                        else:
                            results[(name, how)] = bytes(np.asarray(got).tobytes() if how in ("map", "copy")
                                                         else got)
                r.verify()

        with cross_checked():
            peak, err = measure_peak(attempt)
        # Only OpErrors escape (measure_peak re-raises anything else, failing the test).
        assert err is None or isinstance(err, OpError)
        for (name, _), got in results.items():
            assert got == expected[name]
        assert peak < 8 * len(bad) + (256 << 10), (peak, len(bad))


json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(key=st.sampled_from(["names", "dtypes", "shapes", "offsets", "nbytes", "checksums", "bin_bytes",
                            "checksum", "extra"]),
       where=st.integers(0, 1), value=json_like, whole=st.booleans())
def test_fuzzed_index_values_fail_cleanly(key, where, value, whole):
    index, body = two_tensors()
    if whole or not isinstance(index[key], list):
        index[key] = value
    else:
        index[key][where] = value
    with tempfile.TemporaryDirectory() as d:
        path = craft(Path(d) / "c", index, body=body)
        try:
            with cross_checked():
                got = read_everything(path)
        except OpError:
            return
    # Accepted: then it must read the right bytes (the change was harmless: a new extra, a new name).
    assert got == dict(zip(index["names"], [np.arange(16, dtype=np.float32).tobytes(), F32.tobytes()]))


DAMAGES = ["none", "none", "none", "misalign", "overlap", "past_index", "below_header", "size+1", "dtype",
           "negative_dim", "duplicate", "checksum-1", "checksum2**64", "zero_and_huge", "rank65",
           "bool_dim", "float_size", "str_offset", "name_bytes", "shape_tuple_like"]


@st.composite
def index_columns(draw):
    """A valid layout of up to 6 tensors, then at most one thing wrong with it."""
    n = draw(st.integers(1, 6))
    bin_bytes = draw(st.sampled_from([64, 128, fmt.MAX_BIN_BYTES]))
    names = draw(st.lists(st.text("abcdefg", min_size=1, max_size=2), min_size=n, max_size=n, unique=True))
    dtypes = draw(st.lists(st.sampled_from(sorted(validate._ITEMSIZE)), min_size=n, max_size=n))
    shapes = draw(st.lists(st.lists(st.integers(0, 9), max_size=3), min_size=n, max_size=n))
    sizes = [int(np.prod(s, dtype=np.int64)) * validate._ITEMSIZE[d] for d, s in zip(dtypes, shapes)]
    offsets, pos = [], fmt.HEADER_SIZE
    for size in sizes:  # lay out like the writer, with random extra gaps
        pos += fmt.padding_size(pos) + draw(st.sampled_from([0, 0, 64, 128])) + fmt.BIN_HEADER_SIZE
        offsets.append(pos)
        pos = fmt.tensor_span(pos, size, bin_bytes)[1]
    order = draw(st.permutations(range(n)))  # index order need not be file order
    offsets = [offsets[i] for i in order]
    checksums = draw(st.lists(st.integers(0, 2**64 - 1), min_size=n, max_size=n))
    index_offset = pos + draw(st.integers(0, 100))
    cols = [names, dtypes, shapes, offsets, sizes, checksums]
    damage, i = draw(st.sampled_from(DAMAGES)), draw(st.integers(0, n - 1))
    j = (i + 1) % n
    if damage == "misalign":
        offsets[i] += draw(st.integers(1, 63))
    elif damage == "overlap" and n > 1:
        offsets[i] = offsets[j] + draw(st.sampled_from([0, 64]))
    elif damage == "past_index":
        index_offset = fmt.tensor_span(max(offsets), sizes[offsets.index(max(offsets))], bin_bytes)[1] - 1
    elif damage == "below_header":
        offsets[i] = 0
    elif damage == "size+1":
        sizes[i] += 1
    elif damage == "dtype":
        dtypes[i] = draw(st.sampled_from(["float8", "object", "", "Float32"]))
    elif damage == "negative_dim":
        shapes[i] = shapes[i] + [-1]
    elif damage == "duplicate" and n > 1:
        names[i] = names[j]
    elif damage == "checksum-1":
        checksums[i] = -1
    elif damage == "checksum2**64":
        checksums[i] = 2**64
    elif damage == "zero_and_huge":
        shapes[i], sizes[i] = [0, 2**62, 2**62], 0
    elif damage == "rank65":
        shapes[i], sizes[i] = [1] * 65, validate._ITEMSIZE[dtypes[i]]
    elif damage == "bool_dim":
        shapes[i] = [True] + shapes[i]
    elif damage == "float_size":
        sizes[i] = float(sizes[i])
    elif damage == "str_offset":
        offsets[i] = str(offsets[i])
    elif damage == "name_bytes":
        names[i] = names[i].encode()
    elif damage == "shape_tuple_like":
        shapes[i] = {"dims": shapes[i]}
    return cols, bin_bytes, index_offset


@settings(max_examples=300, deadline=None)
@given(index_columns())
def test_fast_validator_agrees_with_the_reference(case):
    """Both validators accept exactly the same indexes (and build the same result)."""
    cols, bin_bytes, index_offset = case

    def bad(msg, name=None):
        return DataLossError(msg)

    fast = validate._check_columns_fast(cols, bin_bytes, index_offset)
    try:
        slow = validate._check_columns(cols, bin_bytes, index_offset, bad)
    except DataLossError:
        slow = None
    assert fast == slow
