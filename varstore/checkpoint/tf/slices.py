"""Partitioned variables in a bundle: slice keys and how slices tile a tensor.

TF 1.x saves a partitioned variable ``w`` (``partitioner=...``) as one entry
under ``w`` holding the full dtype and shape and a list of slices (no data),
and one entry per slice holding its data under a key made by
``checkpoint::EncodeTensorNameSlice``::

    OrderedCode: NumIncreasing(0) String(name) NumIncreasing(rank)
                 then per dimension SignedNumIncreasing(start) SignedNumIncreasing(length)

(length -1: the whole dimension). The leading ``\\x00`` sorts every slice key
before every name. A slice is ``((start, length), ...)``, one pair per dimension.

>>> slice_key("part", ((0, 4), (0, 4)))
b'\\x00part\\x00\\x01\\x01\\x02\\x80\\x84\\x80\\x84'
>>> region(((4, 3), (0, -1)), (10, 4))
((4, 7), (0, 4))
"""
from __future__ import annotations

import re

import numpy as np

Slice = tuple[tuple[int, int], ...]

# OrderedCode's header bits for a signed number of 1..10 bytes (tensorflow/core/lib/strings/ordered_code.cc).
_HEADER = [(0, 0), (0x80, 0), (0xC0, 0), (0xE0, 0), (0xF0, 0), (0xF8, 0), (0xFC, 0), (0xFE, 0), (0xFF, 0),
           (0xFF, 0x80), (0xFF, 0xC0)]
MAX_PAIRWISE = 4096  # slices per tensor checked pairwise for overlaps; more must split one axis


def _num_increasing(x: int) -> bytes:
    n = (x.bit_length() + 7) // 8
    return bytes([n]) + x.to_bytes(n, "big") if n else b"\x00"


def _string(s: bytes) -> bytes:
    # \x00 and \xff are escaped so that the terminator \x00\x01 sorts below any continuation.
    return re.sub(rb"[\x00\xff]", lambda m: b"\x00\xff" if m.group() == b"\x00" else b"\xff\x00", s) + b"\x00\x01"


def _signed_increasing(v: int) -> bytes:
    x = ~v if v < 0 else v
    if x < 64:
        return bytes([(0x80 ^ v) & 0xFF])
    n = x.bit_length() // 7 + 1
    buf = bytearray((v & ((1 << 80) - 1)).to_bytes(10, "big"))[10 - n:]
    buf[0] ^= _HEADER[n][0]
    buf[1] ^= _HEADER[n][1]
    return bytes(buf)


def slice_key(name: str | bytes, extents: Slice) -> bytes:
    """The table key of one slice of the tensor ``name`` (TF's EncodeTensorNameSlice)."""
    raw = name.encode("utf-8") if isinstance(name, str) else name
    out = b"\x00" + _string(raw) + _num_increasing(len(extents))
    for start, length in extents:
        out += _signed_increasing(start) + _signed_increasing(length)
    return out


def region(extents: Slice, shape: tuple[int, ...]) -> tuple[tuple[int, int], ...] | None:
    """``(begin, end)`` per dimension of ``extents`` in a tensor of ``shape``; None when the
    slice does not fit it (wrong rank, negative start, past the end)."""
    if len(extents) != len(shape):
        return None
    out = []
    for (start, length), dim in zip(extents, shape):
        if length == -1:
            if start != 0:
                return None
            length = dim
        if start < 0 or length < 0 or start + length > dim:
            return None
        out.append((start, start + length))
    return tuple(out)


def tiles(regions: list[tuple[tuple[int, int], ...]], shape: tuple[int, ...]) -> str | None:
    """None when ``regions`` cover ``shape`` exactly once; else what is wrong."""
    total = 1
    for d in shape:
        total *= d
    volumes = [_volume(r) for r in regions]
    if sum(volumes) != total:
        return f"its {len(regions)} slices hold {sum(volumes)} elements, the tensor has {total}"
    live = [r for r, v in zip(regions, volumes) if v]
    if len(live) <= 1:
        return None
    starts = np.array([[b for b, _ in r] for r in live], dtype=np.int64)
    ends = np.array([[e for _, e in r] for r in live], dtype=np.int64)
    if len(live) > MAX_PAIRWISE:
        return _tiles_one_axis(starts, ends, shape)
    for i in range(0, len(live), 256):
        s, e = starts[i:i + 256, None, :], ends[i:i + 256, None, :]
        both = np.all((s < ends[None]) & (starts[None] < e), axis=2)
        idx = np.arange(i, min(i + 256, len(live)))
        both[idx - i, idx] = False
        if both.any():
            a, b = np.argwhere(both)[0]
            return f"slices {live[a + i]} and {live[b]} overlap"
    return None


def _tiles_one_axis(starts: np.ndarray, ends: np.ndarray, shape: tuple[int, ...]) -> str | None:
    full = np.all((starts == 0) & (ends == np.array(shape)), axis=0)
    if int((~full).sum()) != 1:
        return f"{len(starts)} slices that do not split a single axis (too many to check pairwise)"
    ax = int(np.flatnonzero(~full)[0])
    order = np.argsort(starts[:, ax], kind="stable")
    s, e = starts[order, ax], ends[order, ax]
    if s[0] != 0 or e[-1] != shape[ax] or np.any(s[1:] != e[:-1]):
        return f"its slices along axis {ax} leave gaps or overlap"
    return None


def _volume(r: tuple[tuple[int, int], ...]) -> int:
    v = 1
    for b, e in r:
        v *= e - b
    return v


def index(r: tuple[tuple[int, int], ...]) -> tuple[slice, ...]:
    """numpy index of a region."""
    return tuple(slice(b, e) for b, e in r)


__all__ = ["slice_key", "region", "tiles", "index", "Slice"]
