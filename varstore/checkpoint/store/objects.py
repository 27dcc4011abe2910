"""Objects at fsspec URLs: one PUT for a small file, a data object plus a commit marker
for a checkpoint (``remote.py``, docs/FORMAT.md). No inodes and no locks: one writer
per remote directory."""
from __future__ import annotations

from .. import remote, remote_stream
from .base import CheckpointSink, FileId, Store

# A save's data object at a URL that no commit names and that nobody has written to for this
# long was left by a killed or failed save (remote directories have one writer at a time).
STALE_REMOTE_SECONDS = 3600.0


class ObjectStore(Store):
    local = False

    def parent(self, path: str) -> str:
        return remote.parent(path)

    def join(self, directory: str, name: str) -> str:
        return remote.join(directory, name)

    def exists(self, path: str) -> bool:
        return remote.exists(path)

    def is_checkpoint(self, path: str) -> bool:
        return remote.is_committed(path)

    def is_dir(self, path: str) -> bool:
        return remote.is_directory(path)

    def mtime(self, path: str) -> float | None:
        return remote.mtime(path)

    def read_small(self, path: str, limit: int) -> bytes:
        return remote.read_small(path, limit)

    def listdir(self, directory: str) -> list[str]:
        return sorted(name for name, _ in remote.listing(directory))

    def open_source(self, path: str) -> remote_stream.Source:
        return remote_stream.committed_source(path)

    def require_directory(self, path: str, doing: str) -> None:
        remote.filesystem(path, doing)  # an unknown protocol or a missing package fails here

    def replace(self, path: str, data: bytes, stat_out: list | None = None) -> None:
        remote.write_small(path, data)  # one PUT: the object is old or new, never torn

    def checkpoint_sink(self, path: str, fsync: bool = True) -> CheckpointSink:
        return remote_stream.CommitSink(path)

    def remove(self, path: str) -> bool:
        return remote.remove(path)

    def remove_checkpoint(self, path: str, file_id: FileId | None = None) -> bool:
        return remote.remove_checkpoint(path)

    def sweep(self, directory: str) -> list[str]:
        """Data objects no commit names, untouched for an hour: left by killed saves."""
        gone = []
        for url in remote.stale_data(directory, STALE_REMOTE_SECONDS):
            remote.remove(url)
            gone.append(url)
        return gone

