"""The table TF's ``.index`` file is: LevelDB's sorted-string table, uncompressed.

Layout (``tensorflow/core/lib/io/format.h``, LevelDB's ``table_format.md``)::

    data block*   entries sorted by key, then restart offsets (uint32 LE each) and their count
                  entry: varint shared, varint non_shared, varint value_len, key[shared:], value
                  (a key is stored as the part it does not share with the key before it)
    trailer       after every block: 1 byte compression type (0: none), 4 bytes masked CRC32C
                  of the block and that byte
    metaindex     an empty block (TF writes no filters)
    index block   one entry per data block: a key >= its last key and < the next block's
                  first key, and the block's handle (varint offset, varint size)
    footer        48 bytes: metaindex handle, index handle, zero padding to 40 bytes,
                  magic 0xdb4775248b80fb57 (uint64 LE)

:func:`read_table` checks everything before it returns a key: the footer's magic,
every handle inside the file, every block's CRC and compression byte, every
entry inside its block, restart offsets, keys strictly increasing across the
table and inside the bounds the index gives each block. :func:`build_table`
writes the same bytes TF's ``TableBuilder`` does (block size 256 KiB, a restart
every 16 keys), so that an index varstore writes is the one TF would.

>>> t = build_table([(b"", b"h"), (b"a", b"1"), (b"b", b"2")])
>>> read_table(t, "x.index")
[(b'', b'h'), (b'a', b'1'), (b'b', b'2')]
"""
from __future__ import annotations

import struct

from .crc32c import crc32c, mask
from .wire import WireError, read_varint, varint

MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
TRAILER_SIZE = 5
BLOCK_SIZE = 256 << 10  # TF's table::Options default
RESTART_INTERVAL = 16
_U32 = struct.Struct("<I")


class TableError(ValueError):
    """A malformed table; ``key`` is the last key read before the fault, if any."""

    def __init__(self, msg: str, key: bytes | None = None):
        super().__init__(msg)
        self.key = key


# -- reading ------------------------------------------------------------------------------------
def _handle(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    off, pos = read_varint(buf, pos, end)
    size, pos = read_varint(buf, pos, end)
    return off, size, pos


def _block(data: bytes, off: int, size: int, limit: int, what: str) -> memoryview:
    """The block at ``off`` (``size`` bytes and its trailer inside ``[0, limit)``), CRC checked."""
    if off > limit or size > limit - off or limit - off - size < TRAILER_SIZE:
        raise TableError(f"{what} block [{off}, {off}+{size}) runs past the table's data ({limit} bytes)")
    ctype = data[off + size]
    (stored,) = _U32.unpack_from(data, off + size + 1)
    view = memoryview(data)[off:off + size + 1]
    if mask(crc32c(view)) != stored:
        raise TableError(f"{what} block at {off} fails its CRC32C")
    if ctype != 0:
        raise TableError(f"{what} block at {off} is compressed (type {ctype}); TF writes bundle indexes "
                         f"uncompressed and this reader reads only those")
    return view[:size]


def _entries(block: memoryview, what: str, last: bytes | None) -> list[tuple[bytes, bytes]]:
    """The (key, value) pairs of one block, keys strictly increasing after ``last``."""
    size = len(block)
    if size < 4:
        raise TableError(f"{what} block of {size} bytes has no restart count")
    (n_restarts,) = _U32.unpack_from(block, size - 4)
    if n_restarts > (size - 4) // 4:
        raise TableError(f"{what} block claims {n_restarts} restarts in {size} bytes", last)
    limit = size - 4 - 4 * n_restarts
    restarts = [_U32.unpack_from(block, limit + 4 * i)[0] for i in range(n_restarts)]
    buf = bytes(block[:limit])
    out: list[tuple[bytes, bytes]] = []
    starts: set[int] = set()
    key = b""
    pos = 0
    try:
        while pos < limit:
            start = pos
            shared, pos = read_varint(buf, pos, limit)
            non_shared, pos = read_varint(buf, pos, limit)
            vlen, pos = read_varint(buf, pos, limit)
            if shared > len(key) or non_shared > limit - pos or vlen > limit - pos - non_shared:
                raise TableError(f"{what} block: entry at {start} runs past the block "
                                 f"(shared {shared}, key {non_shared}, value {vlen} bytes)", last)
            if shared == 0:
                starts.add(start)
            key = key[:shared] + buf[pos:pos + non_shared]
            pos += non_shared
            value = buf[pos:pos + vlen]
            pos += vlen
            if last is not None and key <= last:
                raise TableError(f"{what} block: key {key!r} is not after {last!r} (keys must be sorted and "
                                 f"unique)", last)
            out.append((key, value))
            last = key
    except WireError as e:
        raise TableError(f"{what} block: {e}", last) from None
    if out and (not restarts or restarts[0] != 0 or any(r not in starts for r in restarts)):
        raise TableError(f"{what} block: restart offsets {restarts[:8]} do not all start an unshared entry",
                         last)
    return out


def read_table(data: bytes, name: str = "table") -> list[tuple[bytes, bytes]]:
    """Every (key, value) of the table ``data`` (a whole ``.index`` file), in order.

    Raises TableError for anything malformed.
    """
    n = len(data)
    if n < FOOTER_SIZE:
        raise TableError(f"{n} bytes, shorter than a table's {FOOTER_SIZE}-byte footer")
    fpos = n - FOOTER_SIZE
    if int.from_bytes(data[n - 8:], "little") != MAGIC:
        raise TableError("no table magic number in the last 8 bytes (not a TF index, or truncated)")
    try:
        meta_off, meta_size, p = _handle(data, fpos, n - 8)
        index_off, index_size, p = _handle(data, p, n - 8)
    except WireError as e:
        raise TableError(f"footer: {e}") from None
    if p > fpos + 40:
        raise TableError("footer handles are longer than their 40 bytes")
    _block(data, meta_off, meta_size, fpos, "metaindex")  # checked, then unused (TF writes no filters)
    index = _entries(_block(data, index_off, index_size, fpos, "index"), "index", None)
    out: list[tuple[bytes, bytes]] = []
    prev_end = 0
    last: bytes | None = None
    for sep, handle in index:
        try:
            off, size, used = _handle(handle, 0, len(handle))
        except WireError as e:
            raise TableError(f"index entry {sep!r}: {e}", last) from None
        if used != len(handle):
            raise TableError(f"index entry {sep!r}: {len(handle) - used} bytes after its block handle", last)
        if off < prev_end:
            raise TableError(f"data block at {off} overlaps the one before it (ends at {prev_end})", last)
        entries = _entries(_block(data, off, size, min(fpos, meta_off, index_off), "data"), "data", last)
        if entries and entries[-1][0] > sep:
            raise TableError(f"data block at {off}: key {entries[-1][0]!r} is past its index bound {sep!r}",
                             entries[-1][0])
        out += entries
        if entries:
            last = entries[-1][0]
        prev_end = off + size + TRAILER_SIZE
    return out


# -- writing ------------------------------------------------------------------------------------
def _shortest_separator(start: bytes, limit: bytes) -> bytes:
    """LevelDB's BytewiseComparator::FindShortestSeparator: a short key in [start, limit)."""
    n = min(len(start), len(limit))
    i = 0
    while i < n and start[i] == limit[i]:
        i += 1
    if i < n and start[i] < 0xFF and start[i] + 1 < limit[i]:
        return start[:i] + bytes([start[i] + 1])
    return start


def _short_successor(key: bytes) -> bytes:
    """LevelDB's FindShortSuccessor: a short key >= ``key``."""
    for i, b in enumerate(key):
        if b != 0xFF:
            return key[:i] + bytes([b + 1])
    return key


class _BlockBuilder:
    def __init__(self, restart_interval: int):
        self.interval = restart_interval
        self.buf = bytearray()
        self.restarts = [0]
        self.counter = 0
        self.last = b""

    def add(self, key: bytes, value: bytes) -> None:
        shared = 0
        if self.counter < self.interval:
            n = min(len(self.last), len(key))
            while shared < n and self.last[shared] == key[shared]:
                shared += 1
        else:
            self.restarts.append(len(self.buf))
            self.counter = 0
        self.buf += varint(shared) + varint(len(key) - shared) + varint(len(value)) + key[shared:] + value
        self.last = key
        self.counter += 1

    def size_estimate(self) -> int:
        return len(self.buf) + 4 * len(self.restarts) + 4

    def finish(self) -> bytes:
        return bytes(self.buf) + b"".join(_U32.pack(r) for r in self.restarts) + _U32.pack(len(self.restarts))


def build_table(items: list[tuple[bytes, bytes]], block_size: int = BLOCK_SIZE,
                restart_interval: int = RESTART_INTERVAL) -> bytes:
    """The table of ``items`` (sorted, unique keys), as TF's TableBuilder writes it."""
    out = bytearray()

    def write_block(contents: bytes) -> bytes:
        handle = varint(len(out)) + varint(len(contents))
        out.extend(contents)
        out.append(0)
        out.extend(_U32.pack(mask(crc32c(contents + b"\x00"))))
        return handle

    data = _BlockBuilder(restart_interval)
    index = _BlockBuilder(1)
    pending: bytes | None = None  # the handle of the last block written, waiting for its index key
    last = b""
    for i, (key, value) in enumerate(items):
        if i and key <= last:
            raise ValueError(f"build_table: keys must be sorted and unique ({last!r} then {key!r})")
        if pending is not None:
            index.add(_shortest_separator(last, key), pending)
            pending = None
        last = key
        data.add(key, value)
        if data.size_estimate() >= block_size:
            pending = write_block(data.finish())
            data = _BlockBuilder(restart_interval)
    if data.counter or data.buf:
        pending = write_block(data.finish())
    meta_handle = write_block(_BlockBuilder(restart_interval).finish())
    if pending is not None:
        index.add(_short_successor(last), pending)
    index_handle = write_block(index.finish())
    footer = (meta_handle + index_handle).ljust(40, b"\x00") + MAGIC.to_bytes(8, "little")
    out += footer
    return bytes(out)


__all__ = ["read_table", "build_table", "TableError", "MAGIC", "FOOTER_SIZE"]
