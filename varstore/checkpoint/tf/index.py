"""A bundle's ``.index``, decoded and validated: every entry checked before any is trusted.

:func:`parse_index` turns the table (``sstable.py``) into :class:`Tensor` records:

- the header (key ``""``, first) is a BundleHeaderProto this reader understands:
  little-endian, ``1 <= num_shards <= MAX_SHARDS``, a version whose ``min_consumer``
  accepts consumer 1 and whose ``bad_consumers`` do not name it;
- every key is UTF-8; every entry's dtype is a known DataType; its shape is known,
  at most 254 dimensions, none negative;
- an entry with data lies in a shard that exists, at ``offset >= 0``, with
  ``size = elements * itemsize`` exactly (Python integers: no overflow) or, for
  strings, at least the size its elements need; whether it lies inside its shard
  file is checked by the reader, which knows the files' sizes;
- an entry with slices (a partitioned variable) has slices of its rank inside its
  shape, each stored under its slice key with its dtype and the slice's shape, and
  together they cover the tensor exactly once.

Any failure raises :class:`IndexError_` with the key it concerns; the reader turns
it into DataLossError naming the ``.index`` file and that key.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import dtypes, slices, strings
from .wire import Entry, WireError, decode_entry, decode_header

MAX_SHARDS = 1024
MAX_RANK = 254           # TensorShape::MaxDimensions()
CONSUMER_VERSION = 1     # kTensorBundleVersion: the version this reader is, as a consumer
MIN_PRODUCER = 0         # kTensorBundleMinProducer


class IndexError_(ValueError):  # noqa: N801 - not the builtin IndexError
    def __init__(self, msg: str, key: str | None = None):
        super().__init__(msg)
        self.key = key


@dataclass
class Stored:
    """Where one stored piece (a whole tensor, or one slice of one) lies."""

    shard: int
    offset: int
    size: int
    crc32c: int
    shape: tuple[int, ...]
    region: tuple[tuple[int, int], ...] | None = None  # in the full tensor, for a slice


@dataclass
class Tensor:
    name: str
    enum: int                      # TF DataType
    dtype: np.dtype | None         # None: a dtype varstore does not read (named in errors)
    shape: tuple[int, ...]
    nbytes: int                    # in memory (strings: the stored size)
    pieces: list[Stored] = field(default_factory=list)
    partitioned: bool = False


@dataclass
class Index:
    num_shards: int
    producer: int
    tensors: dict[str, Tensor]


def _elements(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _check_shape(e: Entry, key: str) -> None:
    if e.unknown_rank:
        raise IndexError_("its shape has unknown rank", key)
    if len(e.shape) > MAX_RANK:
        raise IndexError_(f"its shape has {len(e.shape)} dimensions, more than TF's {MAX_RANK}", key)
    if any(d < 0 for d in e.shape):
        raise IndexError_(f"its shape {list(e.shape)} has a negative (unknown) dimension", key)


def _stored(e: Entry, key: str, num_shards: int) -> Stored:
    """The data an entry points at, its size checked against its dtype and shape."""
    if not 0 <= e.shard_id < num_shards:
        raise IndexError_(f"shard_id {e.shard_id} is not one of the bundle's {num_shards} shards", key)
    if e.offset < 0 or e.size < 0:
        raise IndexError_(f"negative offset {e.offset} or size {e.size}", key)
    n = _elements(e.shape)
    dt = dtypes.NUMPY.get(e.dtype)
    if dt is not None:
        if e.size != n * dt.itemsize:
            raise IndexError_(f"{e.size} bytes stored for shape {list(e.shape)} of {dtypes.name(e.dtype)}, "
                              f"which takes {n * dt.itemsize}", key)
    elif e.dtype == dtypes.DT_STRING and e.size < strings.min_size(n):
        raise IndexError_(f"{e.size} bytes cannot hold {n} strings (at least {strings.min_size(n)})", key)
    return Stored(e.shard_id, e.offset, e.size, e.crc32c, e.shape)


def _decode(key: str, raw: bytes) -> Entry:
    try:
        e = decode_entry(raw)
    except WireError as err:
        raise IndexError_(f"its BundleEntryProto is malformed: {err}", key) from None
    if e.dtype not in dtypes.KNOWN:
        raise IndexError_(f"unknown dtype {dtypes.name(e.dtype)}", key)
    _check_shape(e, key)
    return e


def parse_index(items: list[tuple[bytes, bytes]]) -> Index:
    """Validate a bundle's table (``sstable.read_table``'s items) and describe its tensors."""
    if not items or items[0][0] != b"":
        raise IndexError_("no BundleHeaderProto under the empty key (not a TF V2 bundle index)")
    try:
        h = decode_header(items[0][1])
    except WireError as err:
        raise IndexError_(f"its BundleHeaderProto is malformed: {err}") from None
    if h.endianness != 0:
        raise IndexError_(f"the bundle is big-endian (endianness {h.endianness}); this reader reads "
                          f"little-endian bundles only")
    if h.producer < MIN_PRODUCER or h.min_consumer > CONSUMER_VERSION or CONSUMER_VERSION in h.bad_consumers:
        raise IndexError_(f"bundle version (producer {h.producer}, min_consumer {h.min_consumer}, bad_consumers "
                          f"{h.bad_consumers}) is not one this reader (consumer {CONSUMER_VERSION}) understands")
    if not 1 <= h.num_shards <= MAX_SHARDS:
        raise IndexError_(f"num_shards {h.num_shards} is not in [1, {MAX_SHARDS}]")
    raw_by_key: dict[bytes, bytes] = {}
    for k, v in items[1:]:
        raw_by_key[k] = v
    tensors: dict[str, Tensor] = {}
    claimed: set[bytes] = set()
    for k, v in items[1:]:
        if k.startswith(b"\x00"):
            continue  # a slice: read with the tensor that lists it
        try:
            key = k.decode("utf-8")
        except UnicodeDecodeError:
            raise IndexError_(f"key {k[:64]!r} is not UTF-8") from None
        e = _decode(key, v)
        n = _elements(e.shape)
        dt = dtypes.NUMPY.get(e.dtype)
        if e.slices:
            t = Tensor(key, e.dtype, dt, e.shape, n * (dt.itemsize if dt is not None else 0), partitioned=True)
            regions = []
            for ext in e.slices:
                r = slices.region(ext, e.shape)
                if r is None:
                    raise IndexError_(f"slice {list(ext)} does not fit its shape {list(e.shape)}", key)
                skey = slices.slice_key(k, ext)
                if skey in claimed:
                    raise IndexError_(f"slice {list(ext)} is listed twice", key)
                raw = raw_by_key.get(skey)
                if raw is None:
                    raise IndexError_(f"slice {list(ext)} is listed, but no entry holds it", key)
                claimed.add(skey)
                se = _decode(key, raw)
                if se.slices:
                    raise IndexError_(f"slice {list(ext)}'s entry has slices of its own", key)
                want = tuple(b - a for a, b in r)
                if se.dtype != e.dtype or se.shape != want:
                    raise IndexError_(f"slice {list(ext)} is stored as {dtypes.name(se.dtype)} {list(se.shape)}, "
                                      f"expected {dtypes.name(e.dtype)} {list(want)}", key)
                piece = _stored(se, key, h.num_shards)
                piece.region = r
                t.pieces.append(piece)
                regions.append(r)
            problem = slices.tiles(regions, e.shape)
            if problem:
                raise IndexError_(f"partitioned tensor of shape {list(e.shape)}: {problem}", key)
            if dt is None:
                t.nbytes = sum(p.size for p in t.pieces)
        else:
            piece = _stored(e, key, h.num_shards)
            t = Tensor(key, e.dtype, dt, e.shape, n * dt.itemsize if dt is not None else e.size, [piece])
        tensors[key] = t
    return Index(h.num_shards, h.producer, tensors)


__all__ = ["parse_index", "Index", "Tensor", "Stored", "IndexError_", "MAX_SHARDS"]
