"""``DT_STRING`` tensors in a bundle's data file (``tensor_bundle.cc``, WriteStringTensor)::

    varint64 length of each element, in order
    uint32   masked CRC32C of the lengths (each taken as a uint64 little-endian)
    bytes    the elements, concatenated

The CRC32C covers each length as a uint32 little-endian (a uint64 for one of
4 GiB or more: older TF wrote uint32s only), not as the varint stored; the
entry's CRC32C continues over the 4 stored checksum bytes, then the elements. Elements come back as
a numpy array of ``bytes`` objects (dtype object), as TF's reader returns them.

>>> import numpy as np
>>> a = np.array([b"ab", b""], dtype=object)
>>> raw, crc = encode(a)
>>> decode(raw, 2, crc).tolist()
[b'ab', b'']
"""
from __future__ import annotations

import struct

import numpy as np

from .crc32c import crc32c, mask
from .wire import WireError, read_varint, varint


class StringError(ValueError):
    """Stored string data that does not decode or fails its checksum."""


def _lengths(lengths: list[int]) -> bytes:
    """The bytes the lengths' checksum covers."""
    if all(x <= 0xFFFFFFFF for x in lengths):
        return struct.pack(f"<{len(lengths)}I", *lengths)
    return b"".join(struct.pack("<I" if x <= 0xFFFFFFFF else "<Q", x) for x in lengths)


def min_size(n: int) -> int:
    """The fewest bytes ``n`` elements take (a 1-byte length each, the 4-byte checksum)."""
    return n + 4


def decode(raw: bytes, n: int, masked_crc: int) -> np.ndarray:
    """The ``n`` elements stored in ``raw`` (a flat object array), CRC checked."""
    end = len(raw)
    lengths = []
    pos = 0
    try:
        for _ in range(n):
            length, pos = read_varint(raw, pos, end)
            lengths.append(length)
    except WireError as e:
        raise StringError(f"element lengths: {e}") from None
    if pos + 4 > end:
        raise StringError("truncated before the lengths' checksum")
    crc = crc32c(_lengths(lengths))
    (stored,) = struct.unpack_from("<I", raw, pos)
    if mask(crc) != stored:
        raise StringError("the element lengths fail their checksum")
    crc = crc32c(raw[pos:pos + 4], crc)
    pos += 4
    if sum(lengths) != end - pos:
        raise StringError(f"the elements' lengths add up to {sum(lengths)} bytes, {end - pos} are stored")
    crc = crc32c(raw[pos:], crc)
    if mask(crc) != masked_crc:
        raise StringError(f"CRC32C mismatch (computed {mask(crc):#010x} masked, the index says {masked_crc:#010x})")
    out = np.empty(n, dtype=object)
    for i, length in enumerate(lengths):
        out[i] = raw[pos:pos + length]
        pos += length
    return out


def encode(a: np.ndarray) -> tuple[bytes, int]:
    """(stored bytes, masked CRC32C) of an array of ``bytes`` (or ``str``, stored as UTF-8)."""
    items = [x.encode("utf-8") if isinstance(x, str) else bytes(x) for x in np.asarray(a, dtype=object).reshape(-1)]
    lengths = [len(x) for x in items]
    crc = crc32c(_lengths(lengths))
    check = struct.pack("<I", mask(crc))
    crc = crc32c(check, crc)
    data = b"".join(items)
    crc = crc32c(data, crc)
    return b"".join(varint(x) for x in lengths) + check + data, mask(crc)


__all__ = ["decode", "encode", "StringError", "min_size"]
