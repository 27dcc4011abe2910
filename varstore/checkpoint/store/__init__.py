"""Where checkpoints live: one interface, a local and an object-store implementation.

Everything the Saver, the state file, meta graphs, conversion and retention do
to storage goes through a :class:`Store`: write a file so that it appears whole
or not at all, read a small file, check what is there, list a directory, and
delete a file only while it is still the one we wrote. ``store_for(path)``
picks the implementation, so callers never branch on "is this a URL".

- :class:`LocalStore`: a temporary file beside the target (``.{name}.tmp-{pid}-{hex}``),
  fsynced and renamed over it, then the directory fsynced; every system call goes
  through ``fileio.syscall``, the seam the fault-injection tests replace. A file's
  identity is its (device, inode), so "remove if still ours" survives another
  process renaming a new file to the same name.
- :class:`ObjectStore`: an fsspec URL. A small file is one PUT (old or new, never
  torn); a checkpoint streams to a data object of its own and is committed by one
  PUT of a marker at its name (``remote.py``, docs/FORMAT.md). Objects have no
  inodes and no locks: one writer per remote directory.

>>> import os, tempfile
>>> d = tempfile.mkdtemp()
>>> s = store_for(d)
>>> with s.atomic_file(s.join(d, "a.txt")) as f:
...     f.write(b"hello")
>>> s.read_small(s.join(d, "a.txt"), 100), s.listdir(d)
(b'hello', ['a.txt'])
"""
from __future__ import annotations

import os

from .. import remote
from .base import CheckpointSink, FileId, Store
from .local import AtomicFile, LocalSource, LocalStore
from .objects import ObjectStore

_LOCAL, _OBJECTS = LocalStore(), ObjectStore()


def store_for(path: str | os.PathLike) -> Store:
    """The store that holds ``path``: an fsspec URL's, or the local filesystem's
    (``file://`` URLs are local paths; see ``normalize``)."""
    return _OBJECTS if remote.is_url(os.fspath(path)) else _LOCAL


def normalize(path: str | os.PathLike | bytes) -> str:
    """A path or URL as the stores take it: ``str``, ``file://`` URLs as local paths."""
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    return remote.local_path(path)


def exists(path: str | os.PathLike) -> bool:
    """Something is at ``path`` (a local path, ``file://`` or any fsspec URL)."""
    path = normalize(path)
    return store_for(path).exists(path)


def is_dir(path: str | os.PathLike) -> bool:
    """``path`` is a directory (at a URL: a prefix that names no object)."""
    path = normalize(path)
    return store_for(path).is_dir(path)


__all__ = ["Store", "LocalStore", "ObjectStore", "AtomicFile", "LocalSource", "CheckpointSink", "store_for",
           "normalize", "exists", "is_dir", "FileId"]
