"""The storage interface: what the checkpoint code needs of a place that holds files."""
from __future__ import annotations

import contextlib
from typing import Any

# (device, inode) of a local file: tells it from a file another process renamed to the same name.
FileId = tuple[int, int]


class CheckpointSink:
    """Where ``write_checkpoint`` streams one checkpoint: ``writev`` in order, then
    ``commit(size, index_checksum)`` or ``abort()``."""

    def writev(self, views: list) -> int:
        raise NotImplementedError

    def commit(self, size: int, index_checksum: int, stat_out: list | None = None) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


class Store:
    """What the checkpoint code needs of a place that holds files. See the module doc."""

    local = True

    # -- names ---------------------------------------------------------------------
    def parent(self, path: str) -> str:
        raise NotImplementedError

    def join(self, directory: str, name: str) -> str:
        raise NotImplementedError

    # -- reading ---------------------------------------------------------------------
    def exists(self, path: str) -> bool:
        """Something (a file, a directory, an object) is at ``path``."""
        raise NotImplementedError

    def is_checkpoint(self, path: str) -> bool:
        """A whole checkpoint is at ``path`` (a file; a committed object at a URL)."""
        raise NotImplementedError

    def is_dir(self, path: str) -> bool:
        raise NotImplementedError

    def mtime(self, path: str) -> float | None:
        raise NotImplementedError

    def file_id(self, path: str) -> FileId | None:
        """Identity of the file now at ``path`` (None: absent, or a store without one)."""
        return None

    def read_small(self, path: str, limit: int) -> bytes:
        """At most ``limit + 1`` bytes of a small file (more than ``limit``: too large for
        what the caller expects); FileNotFoundError (the builtin) when absent."""
        raise NotImplementedError

    def listdir(self, directory: str) -> list[str]:
        """Names in ``directory`` (sorted)."""
        raise NotImplementedError

    def open_source(self, path: str) -> Any:
        """The checkpoint ``path`` open for random reads (``size``, ``pread``, ``preadv``,
        ``map``, ``close``; ``commit``: what its commit marker promises, if any)."""
        raise NotImplementedError

    # -- writing ---------------------------------------------------------------------
    def require_directory(self, path: str, doing: str) -> None:
        """Raise when a file cannot be written at ``path``: its directory is missing (local),
        the protocol is unknown or its package missing (URL). Writes nothing."""
        raise NotImplementedError

    def replace(self, path: str, data: bytes, stat_out: list | None = None) -> None:
        """Replace ``path`` with ``data`` atomically (durably, locally)."""
        raise NotImplementedError

    def checkpoint_sink(self, path: str, fsync: bool = True) -> CheckpointSink:
        raise NotImplementedError

    def lock(self, directory: str) -> contextlib.AbstractContextManager:
        """Exclusive among the processes saving into ``directory`` (where the store can)."""
        return contextlib.nullcontext()

    # -- deleting ---------------------------------------------------------------------
    def remove(self, path: str) -> bool:
        """Delete whatever is at ``path``; True when something was."""
        raise NotImplementedError

    def remove_if(self, path: str, file_id: FileId | None) -> bool:
        """Delete ``path`` if it is still the file ``file_id`` (None: whatever is there)."""
        return self.remove(path)

    def remove_checkpoint(self, path: str, file_id: FileId | None = None) -> bool:
        """Delete a checkpoint (if still ``file_id``) with what belongs to it."""
        raise NotImplementedError

    def sweep(self, directory: str) -> list[str]:
        """Delete what dead or failed writers left in ``directory``; returns what went."""
        return []
