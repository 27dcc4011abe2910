"""Protocol buffer wire format: just what TF's bundle index needs, decoded by hand.

The index holds two messages (``tensorflow/core/protobuf/tensor_bundle.proto``)
and the ones they embed; field numbers as TF declares them::

    BundleHeaderProto  1 num_shards int32   2 endianness enum   3 version VersionDef
    VersionDef         1 producer int32     2 min_consumer int32   3 bad_consumers repeated int32
    BundleEntryProto   1 dtype enum   2 shape TensorShapeProto   3 shard_id int32
                       4 offset int64   5 size int64   6 crc32c fixed32
                       7 slices repeated TensorSliceProto
    TensorShapeProto   2 dim repeated Dim {1 size int64, 2 name string}   3 unknown_rank bool
    TensorSliceProto   1 extent repeated Extent {1 start int64, 2 length int64 (absent: all)}

No protobuf dependency: decoding these is ~100 lines, bounded by the buffer (every
length is checked before it is used), and it never recurses into fields it does
not know. Unknown fields are skipped, as protobuf does, so a newer TF's additions
are read. Anything malformed raises :class:`WireError`; callers turn it into
DataLossError naming the file and the key.

>>> e = Entry(dtype=1, shape=(2, 3), size=24, crc32c=7)
>>> decode_entry(encode_entry(e)) == e
True
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class WireError(ValueError):
    """A malformed protocol buffer."""


# -- decoding ---------------------------------------------------------------------------------
def read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """(value, next position) of the varint at ``pos``; at most 10 bytes, value < 2**64."""
    result = shift = 0
    while True:
        if pos >= end:
            raise WireError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            if result >> 64:
                raise WireError("varint larger than 64 bits")
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireError("varint longer than 10 bytes")


def _int64(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


def _int32(v: int) -> int:
    # int32 fields hold negative values as 10-byte (sign-extended) varints; protobuf keeps the low 32 bits.
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


def fields(buf: bytes, pos: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """``(field number, wire type, value, end)`` per field of the message in ``buf[pos:end]``.

    For a length-delimited field ``value`` is where its bytes start and ``end`` where
    they stop; otherwise ``value`` is the number and ``end`` is unused.
    """
    while pos < end:
        key, pos = read_varint(buf, pos, end)
        number, wt = key >> 3, key & 7
        if number == 0 or number > 0x1FFFFFFF:
            raise WireError(f"field number {number}")
        if wt == _VARINT:
            v, pos = read_varint(buf, pos, end)
            yield number, wt, v, pos
        elif wt == _I64:
            if pos + 8 > end:
                raise WireError("truncated fixed64")
            yield number, wt, int.from_bytes(buf[pos:pos + 8], "little"), pos + 8
            pos += 8
        elif wt == _I32:
            if pos + 4 > end:
                raise WireError("truncated fixed32")
            yield number, wt, int.from_bytes(buf[pos:pos + 4], "little"), pos + 4
            pos += 4
        elif wt == _LEN:
            n, pos = read_varint(buf, pos, end)
            if n > end - pos:
                raise WireError(f"length {n} runs past the message's end")
            yield number, wt, pos, pos + n
            pos += n
        else:  # groups (3, 4) are not used by these messages, and 6, 7 do not exist
            raise WireError(f"wire type {wt} (field {number})")


def _expect(wt: int, want: int, name: str) -> None:
    if wt != want:
        raise WireError(f"field {name} has wire type {wt}, expected {want}")


def _ints(buf: bytes, wt: int, v: int, end: int, name: str) -> list[int]:
    """A repeated integer field: one varint, or a packed run of them."""
    if wt == _VARINT:
        return [v]
    _expect(wt, _LEN, name)
    out, pos = [], v
    while pos < end:
        x, pos = read_varint(buf, pos, end)
        out.append(x)
    return out


@dataclass
class Header:
    num_shards: int = 0
    endianness: int = 0  # 0 little, 1 big
    producer: int = 0
    min_consumer: int = 0
    bad_consumers: list[int] = field(default_factory=list)


@dataclass
class Entry:
    dtype: int = 0
    shape: tuple[int, ...] = ()
    unknown_rank: bool = False
    shard_id: int = 0
    offset: int = 0
    size: int = 0
    crc32c: int = 0
    # One (start, length) per dimension per slice; length -1: the whole dimension.
    slices: list[tuple[tuple[int, int], ...]] = field(default_factory=list)


def decode_header(buf: bytes) -> Header:
    h = Header()
    for number, wt, v, end in fields(buf, 0, len(buf)):
        if number == 1:
            _expect(wt, _VARINT, "num_shards")
            h.num_shards = _int32(v)
        elif number == 2:
            _expect(wt, _VARINT, "endianness")
            h.endianness = _int32(v)
        elif number == 3:
            _expect(wt, _LEN, "version")
            for n2, wt2, v2, end2 in fields(buf, v, end):
                if n2 == 1:
                    _expect(wt2, _VARINT, "version.producer")
                    h.producer = _int32(v2)
                elif n2 == 2:
                    _expect(wt2, _VARINT, "version.min_consumer")
                    h.min_consumer = _int32(v2)
                elif n2 == 3:
                    h.bad_consumers += [_int32(x) for x in _ints(buf, wt2, v2, end2, "bad_consumers")]
    return h


def _decode_shape(buf: bytes, pos: int, end: int, e: Entry) -> None:
    dims = list(e.shape)
    for number, wt, v, fend in fields(buf, pos, end):
        if number == 2:
            _expect(wt, _LEN, "shape.dim")
            size = 0
            for n2, wt2, v2, _ in fields(buf, v, fend):
                if n2 == 1:
                    _expect(wt2, _VARINT, "shape.dim.size")
                    size = _int64(v2)
            dims.append(size)
        elif number == 3:
            _expect(wt, _VARINT, "shape.unknown_rank")
            e.unknown_rank = bool(v)
    e.shape = tuple(dims)


def _decode_slice(buf: bytes, pos: int, end: int) -> tuple[tuple[int, int], ...]:
    extents = []
    for number, wt, v, fend in fields(buf, pos, end):
        if number == 1:
            _expect(wt, _LEN, "slices.extent")
            start, length = 0, -1
            for n2, wt2, v2, _ in fields(buf, v, fend):
                if n2 == 1:
                    _expect(wt2, _VARINT, "extent.start")
                    start = _int64(v2)
                elif n2 == 2:
                    _expect(wt2, _VARINT, "extent.length")
                    length = _int64(v2)
            extents.append((start, length))
    return tuple(extents)


def decode_entry(buf: bytes) -> Entry:
    """A BundleEntryProto. The layout TF writes (fields 1-6 in order, one-byte keys, a shape of
    plain dims) is decoded by one loop with the one-byte varints inline: opening a bundle of
    thousands of tensors costs ~1 us per entry instead of ~10. Anything else (slices, unknown
    fields, other orders) goes through :func:`decode_entry_general`, which gives the same
    result for every input (tests/test_tf_bundle.py checks both on random bytes)."""
    n = len(buf)
    pos = 0
    dtype = shard = offset = size = crc = 0
    dims: list[int] = []
    try:
        while pos < n:
            key = buf[pos]
            pos += 1
            if key == 0x12:  # shape
                ln = buf[pos]
                if ln & 0x80:
                    return decode_entry_general(buf)
                end = pos + 1 + ln
                pos += 1
                if end > n:
                    return decode_entry_general(buf)
                while pos < end:
                    if buf[pos] != 0x12:
                        return decode_entry_general(buf)
                    dl = buf[pos + 1]
                    if dl == 0:
                        dims.append(0)
                        pos += 2
                        continue
                    if buf[pos + 2] != 0x08 or dl & 0x80 or pos + 2 + dl > end:
                        return decode_entry_general(buf)
                    q = pos + 2 + dl
                    if dl == 2 and buf[pos + 3] < 0x80:  # a dim under 128: the common case
                        dims.append(buf[pos + 3])
                    else:
                        v, r = read_varint(buf, pos + 3, q)
                        if r != q:
                            return decode_entry_general(buf)
                        dims.append(_int64(v))
                    pos = q
                if pos != end:
                    return decode_entry_general(buf)
            elif key in (0x08, 0x18, 0x20, 0x28):
                b = buf[pos]
                pos += 1
                v = b & 0x7F
                shift = 7
                while b & 0x80:  # the varint inline: a call per field would cost as much as the rest
                    if shift >= 70:
                        raise WireError("varint longer than 10 bytes")
                    b = buf[pos]
                    pos += 1
                    v |= (b & 0x7F) << shift
                    shift += 7
                if v >> 64:
                    raise WireError("varint larger than 64 bits")
                if key == 0x08:
                    dtype = _int32(v)
                elif key == 0x18:
                    shard = _int32(v)
                elif key == 0x20:
                    offset = _int64(v)
                else:
                    size = _int64(v)
            elif key == 0x35:
                if pos + 4 > n:
                    raise WireError("truncated fixed32")
                crc = int.from_bytes(buf[pos:pos + 4], "little")
                pos += 4
            else:
                return decode_entry_general(buf)
    except IndexError:  # a length byte past the end: let the general decoder say what is wrong
        return decode_entry_general(buf)
    return Entry(dtype=dtype, shape=tuple(dims), shard_id=shard, offset=offset, size=size, crc32c=crc)


def decode_entry_general(buf: bytes) -> Entry:
    e = Entry()
    for number, wt, v, end in fields(buf, 0, len(buf)):
        if number == 1:
            _expect(wt, _VARINT, "dtype")
            e.dtype = _int32(v)
        elif number == 2:
            _expect(wt, _LEN, "shape")
            _decode_shape(buf, v, end, e)  # a repeated message field merges, as protobuf does
        elif number == 3:
            _expect(wt, _VARINT, "shard_id")
            e.shard_id = _int32(v)
        elif number == 4:
            _expect(wt, _VARINT, "offset")
            e.offset = _int64(v)
        elif number == 5:
            _expect(wt, _VARINT, "size")
            e.size = _int64(v)
        elif number == 6:
            _expect(wt, _I32, "crc32c")
            e.crc32c = v
        elif number == 7:
            _expect(wt, _LEN, "slices")
            e.slices.append(_decode_slice(buf, v, end))
    return e


# -- encoding ---------------------------------------------------------------------------------
def varint(v: int) -> bytes:
    """The varint of ``v`` (a negative int64 as its 10-byte two's complement)."""
    v &= (1 << 64) - 1
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _key(number: int, wt: int) -> bytes:
    return varint(number << 3 | wt)


def _vfield(number: int, v: int) -> bytes:
    # proto3: a field at its default value (0) is not written.
    return _key(number, _VARINT) + varint(v) if v else b""


def _lfield(number: int, payload: bytes) -> bytes:
    return _key(number, _LEN) + varint(len(payload)) + payload


def encode_header(h: Header) -> bytes:
    version = _vfield(1, h.producer) + _vfield(2, h.min_consumer)
    if h.bad_consumers:
        version += _lfield(3, b"".join(varint(x) for x in h.bad_consumers))
    return _vfield(1, h.num_shards) + _vfield(2, h.endianness) + _lfield(3, version)


def encode_slice(extents: tuple[tuple[int, int], ...]) -> bytes:
    out = b""
    for start, length in extents:
        ext = _vfield(1, start) + (b"" if length < 0 else _key(2, _VARINT) + varint(length))
        out += _lfield(1, ext)
    return out


def encode_entry(e: Entry) -> bytes:
    shape = b"".join(_lfield(2, _vfield(1, d)) for d in e.shape)
    if e.unknown_rank:
        shape += _vfield(3, 1)
    out = _vfield(1, e.dtype) + _lfield(2, shape) + _vfield(3, e.shard_id) + _vfield(4, e.offset)
    out += _vfield(5, e.size)
    if e.crc32c:
        out += _key(6, _I32) + (e.crc32c & 0xFFFFFFFF).to_bytes(4, "little")
    for s in e.slices:
        out += _lfield(7, encode_slice(s))
    return out


__all__ = ["WireError", "Header", "Entry", "decode_header", "decode_entry", "decode_entry_general", "encode_header", "encode_entry",
           "encode_slice", "read_varint", "varint", "fields"]
