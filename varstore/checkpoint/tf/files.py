"""Which files a TF V2 bundle is, and opening them (local paths or fsspec URLs) for reads.

A bundle saved under the prefix ``P`` is ``P.index`` (the table of entries) and
``P.data-00000-of-0000N`` ... (the tensor bytes); ``P`` itself is not a file. TF's
state file names ``P``.

>>> data_file("m/model.ckpt-3", 1, 2)
'm/model.ckpt-3.data-00001-of-00002'
>>> prefix_of("m/model.ckpt-3.index"), prefix_of("m/model.ckpt-3.data-00000-of-00001"), prefix_of("m/x")
('m/model.ckpt-3', 'm/model.ckpt-3', 'm/x')
"""
from __future__ import annotations

import os
import re
from typing import Any

from devices.errors import OpError

from .. import remote
from ..store import normalize, store_for
from ..store.local import LocalSource

INDEX_SUFFIX = ".index"
_DATA_RE = re.compile(r"\.data-([0-9]{5,})-of-([0-9]{5,})\Z")


def index_file(prefix: str) -> str:
    return prefix + INDEX_SUFFIX


def data_file(prefix: str, shard: int, num_shards: int) -> str:
    """TF's name for data file ``shard`` of ``num_shards`` (``%05d``, wider when needed)."""
    return f"{prefix}.data-{shard:05d}-of-{num_shards:05d}"


def prefix_of(path: str) -> str:
    """The bundle prefix for a path a user may type: the prefix, its ``.index`` or a data file."""
    if path.endswith(INDEX_SUFFIX):
        return path[:-len(INDEX_SUFFIX)]
    m = _DATA_RE.search(path)
    return path[:m.start()] if m else path


def is_bundle(path: str | os.PathLike) -> bool:
    """True when ``path`` (a prefix, or its ``.index``) names a TF bundle: its ``.index`` exists
    and ``path`` itself is not a file. Cheap (one existence check); never raises.

    >>> is_bundle("/nonexistent/model.ckpt")
    False
    """
    try:
        path = normalize(path)
        prefix = prefix_of(path)
        store = store_for(prefix)
        if prefix == path and store.local and os.path.isfile(path):
            return False  # a file at the prefix itself: a varstore checkpoint
        return store.exists(index_file(prefix))
    except (OpError, OSError, TypeError, ValueError):
        return False


def remove_bundle(prefix: str) -> bool:
    """Delete the bundle ``prefix``: its index first (from then on it is no checkpoint), then its
    data files. True when an index was there."""
    prefix = prefix_of(normalize(prefix))
    store = store_for(prefix)
    had = store.remove(index_file(prefix))
    directory, base = store.parent(prefix), prefix.rsplit("/", 1)[-1] if remote.is_url(prefix) else \
        os.path.basename(prefix)
    for name in store.listdir(directory):
        if name.startswith(base) and _DATA_RE.fullmatch(name[len(base):]):
            store.remove(store.join(directory, name))
    return had


def open_file(path: str) -> Any:
    """A source for random reads of one file (``size``, ``pread``, ``preadv``, ``map``, ``close``).
    Local files are mapped where possible; objects at URLs are read in ranges, as they are
    (TF's files carry no commit marker). Missing: NotFoundError."""
    if remote.is_url(path):
        from ..remote_stream import Source
        return Source(path)
    return LocalSource(path)


__all__ = ["index_file", "data_file", "prefix_of", "is_bundle", "open_file", "remove_bundle", "INDEX_SUFFIX"]
