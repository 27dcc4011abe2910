"""Layout of a varstore checkpoint file: constants and the few fixed byte structures.

A checkpoint is a stream of msgpack objects (see docs/FORMAT.md)::

    header   [MAGIC, version]                       fixarray(2)
    per tensor, per piece:
             nil * k                                padding, 0 <= k < 64
             bin32                                  raw little-endian C-order bytes,
                                                    data starts at a multiple of 64
    index    {"names": [...], "dtypes": [...], ...}  map of columns
    footer   [FOOTER_MAGIC, version, index_offset, index_nbytes, index_xxh3]
                                                    fixarray(5), always FOOTER_SIZE bytes

Everything here is pure layout arithmetic; reading and writing live in
``reader.py`` and ``writer.py``.

>>> len(pack_footer(64, 10, 0)) == FOOTER_SIZE, parse_footer(pack_footer(64, 10, 7))
(True, (1, 64, 10, 7))
>>> (HEADER_SIZE + padding_size(HEADER_SIZE) + BIN_HEADER_SIZE) % ALIGNMENT
0
"""
from __future__ import annotations

import os
import re
import secrets
import struct

# -- identity -----------------------------------------------------------------
MAGIC = "varstore.checkpoint"
FOOTER_MAGIC = "varstore.index"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})

# fixarray(2), fixstr(len(MAGIC)), then the version as a positive fixint.
HEADER_PREFIX = bytes([0x92, 0xA0 | len(MAGIC)]) + MAGIC.encode("ascii")
HEADER = HEADER_PREFIX + bytes([FORMAT_VERSION])
HEADER_SIZE = len(HEADER)

# fixarray(5), fixstr FOOTER_MAGIC, fixint version, then three uint64 (0xcf + 8 bytes big-endian).
# The uint64s are always written in their 9-byte form, never msgpack's shortest form,
# so the footer has one fixed size and a reader finds it at file_size - FOOTER_SIZE.
_FOOTER_PREFIX = bytes([0x95, 0xA0 | len(FOOTER_MAGIC)]) + FOOTER_MAGIC.encode("ascii")
_FOOTER = struct.Struct(f">{len(_FOOTER_PREFIX)}sB BQ BQ BQ")
FOOTER_SIZE = _FOOTER.size
_U64 = 0xCF

# -- data layout ----------------------------------------------------------------
ALIGNMENT = 64          # every bin's data starts at a multiple of this file offset
PAD_BYTE = 0xC0         # msgpack nil: padding is a run of nils, each a whole object
BIN_HEADER_SIZE = 5     # bin32: 0xc6 + 4-byte big-endian length
# Largest piece of one tensor in one bin: msgpack bins hold at most 2**32 - 1 bytes; a
# multiple of ALIGNMENT keeps every piece of a multi-bin tensor aligned with a fixed
# 59-nil gap, so a reader computes piece k's offset instead of storing it.
# Tests lower this (monkeypatch the module attribute) to exercise multi-bin tensors.
MAX_BIN_BYTES = (2**32 - 1) // ALIGNMENT * ALIGNMENT
PIECE_GAP = ALIGNMENT   # data end of piece k to data start of piece k+1: 59 nils + bin32 header

# -- reader bounds --------------------------------------------------------------
MAX_INDEX_BYTES = 256 << 20   # an index larger than this is refused before it is read
MAX_RANK = 64                 # numpy's own limit (NPY_MAXDIMS)
CHECKSUM = "xxh3_64"          # per tensor, seed 0, over the bytes as stored
MAX_EXTRA_BYTES = 16 << 20    # the writer's bound on the packed ``extra`` map


def padding_size(pos: int) -> int:
    """Nils to write at file offset ``pos`` so that a bin32 header written after them
    puts its data on an ALIGNMENT boundary (0..63)."""
    return (-(pos + BIN_HEADER_SIZE)) % ALIGNMENT


def bin_header(nbytes: int) -> bytes:
    """The 5-byte bin32 header for ``nbytes`` bytes of data."""
    return b"\xc6" + nbytes.to_bytes(4, "big")


def piece_count(nbytes: int, bin_bytes: int) -> int:
    """How many bins a tensor of ``nbytes`` occupies (a zero-size tensor still has one, empty)."""
    return max(1, -(-nbytes // bin_bytes))


def tensor_span(offset: int, nbytes: int, bin_bytes: int) -> tuple[int, int]:
    """[start, end) of a tensor in the file: its first bin header to the end of its last data."""
    return offset - BIN_HEADER_SIZE, offset + nbytes + (piece_count(nbytes, bin_bytes) - 1) * PIECE_GAP


def pieces(offset: int, nbytes: int, bin_bytes: int) -> list[tuple[int, int, int]]:
    """(file offset of data, offset in the tensor, length) of each bin of one tensor.

    >>> pieces(64, 300, 128)
    [(64, 0, 128), (256, 128, 128), (448, 256, 44)]
    """
    out = []
    for k in range(piece_count(nbytes, bin_bytes)):
        start = k * bin_bytes
        out.append((offset + k * (bin_bytes + PIECE_GAP), start, min(bin_bytes, nbytes - start)))
    return out


def pack_footer(index_offset: int, index_nbytes: int, index_checksum: int,
                version: int = FORMAT_VERSION) -> bytes:
    """The fixed-size footer object that points at the index."""
    return _FOOTER.pack(_FOOTER_PREFIX, version, _U64, index_offset, _U64, index_nbytes,
                        _U64, index_checksum)


def parse_footer(raw: bytes) -> tuple[int, int, int, int] | None:
    """(version, index_offset, index_nbytes, index_checksum), or None if ``raw`` is not
    a footer in exactly the fixed layout."""
    if len(raw) != FOOTER_SIZE:
        return None
    prefix, version, t1, off, t2, size, t3, check = _FOOTER.unpack(raw)
    if prefix != _FOOTER_PREFIX or version > 0x7F or (t1, t2, t3) != (_U64, _U64, _U64):
        return None
    return version, off, size, check


# -- temporary files --------------------------------------------------------------
# A save writes ".{basename}.tmp-{pid}-{16 hex}" in the target's directory and renames it.
TMP_PATTERN = re.compile(r"\A\.(?P<target>.+)\.tmp-(?P<pid>[0-9]+)-(?P<token>[0-9a-f]{16})\Z", re.S)


def temp_name(basename: str) -> str:
    """A fresh temporary file name for a save to ``basename`` (in the same directory).

    >>> is_temp_file(temp_name("model.ckpt-1000"))
    True
    """
    return f".{basename}.tmp-{os.getpid()}-{secrets.token_hex(8)}"


def is_temp_file(name: str | os.PathLike) -> bool:
    """True when ``name`` (a file name or path) looks like a write_checkpoint temp file.

    The Saver uses this (and ``TMP_PATTERN``'s ``target`` and ``pid`` groups) to remove
    stale temporary files left by a crashed save.

    >>> is_temp_file(".model.ckpt-7.tmp-4242-0123456789abcdef"), is_temp_file("model.ckpt-7")
    (True, False)
    """
    return TMP_PATTERN.match(os.path.basename(os.fspath(name))) is not None


def temp_target(name: str | os.PathLike) -> tuple[str, int] | None:
    """(target basename, writer pid) of a temp file name, or None if it is not one.

    >>> temp_target(".model.ckpt-7.tmp-4242-0123456789abcdef")
    ('model.ckpt-7', 4242)
    """
    m = TMP_PATTERN.match(os.path.basename(os.fspath(name)))
    return (m.group("target"), int(m.group("pid"))) if m else None
