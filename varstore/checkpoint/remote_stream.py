"""Streaming to and from objects at fsspec URLs: a save's data object (``Sink``), its
commit (``CommitSink``), and ranged reads of a committed checkpoint (``Source``).

The protocol itself (names, markers, what counts as committed) is in ``remote.py``.
"""
from __future__ import annotations

import contextlib
import logging

from devices.errors import FailedPreconditionError, NotFoundError, OpError

from . import remote
from .remote import Target

log = logging.getLogger("varstore")

# Reads of a remote checkpoint are served from one window fetched with a single ranged
# GET: thousands of small tensors cost a few requests, not one each.
READ_WINDOW = 16 << 20


class Sink:
    """A new object at ``url`` (a save's own data object), written in order (``writev``),
    then ``close``d or ``abort``ed."""

    def __init__(self, url: str):
        self.url = url
        self._fs, path = remote.filesystem(url, "saving checkpoint")
        try:
            self._f = self._fs.open(path, "wb")
        except Exception as e:  # noqa: BLE001
            raise remote.translate(e, url, "saving checkpoint") from None

    def writev(self, views: list) -> int:
        n = 0
        try:
            for v in views:
                self._f.write(v)
                n += v.nbytes
        except Exception as e:  # noqa: BLE001
            raise remote.translate(e, self.url, "saving checkpoint") from None
        return n

    def close(self) -> None:
        """Finish the upload (the object is whole from here, but not yet committed)."""
        try:
            self._f.close()
        except Exception as e:  # noqa: BLE001
            raise remote.translate(e, self.url, "saving checkpoint") from None

    def abort(self) -> None:
        """Give the upload up and delete what it left (the object is this save's own)."""
        try:
            discard = getattr(self._f, "discard", None)
            if discard is not None:
                discard()  # an upload in parts is aborted: the store never shows it
                self._f.closed = True  # discarded: closing would upload what is buffered
            else:
                self._f.close()
        except Exception:  # noqa: BLE001 - the save's own error is the one to raise
            pass
        try:
            remote.remove(self.url)
        except OpError:
            pass  # the store is gone: the next save of this name removes it


class CommitSink:
    """One save of the checkpoint ``url``: the data streams to a new object of its own
    (``{url}.data-{16 hex}``); ``commit`` PUTs the marker at ``url`` naming it, then
    deletes the version it replaced; ``abort`` removes what was uploaded."""

    def __init__(self, url: str):
        self.url = url
        self.data = remote.data_url(url, remote.new_save_id())
        self._previous = remote.committed_object(url)  # the version this save replaces: deleted once it is
        self._sink = Sink(self.data)
        self.writev = self._sink.writev

    def abort(self) -> None:
        self._sink.abort()

    def commit(self, size: int, index_checksum: int, stat_out: list | None = None) -> None:
        try:
            self._sink.close()
        except BaseException:
            self._sink.abort()
            raise
        try:
            remote.write_commit(self.url, self.data, size, index_checksum)
        except Exception:
            # The store may have taken the PUT and lost only the answer: ask it which data the name
            # commits now. Ours: the save is done. Not ours: remove ours. No answer: keep it (it may
            # be committed); a later Saver's sweep removes it once it is old and uncommitted.
            try:
                landed: bool | None = remote.committed_object(self.url) == self.data
            except OpError:
                landed = None
            if landed is False:
                with contextlib.suppress(OpError):
                    remote.remove(self.data)
            if not landed:
                raise
        # The replaced version's data goes, unless a save of this name by someone else has committed
        # since (then the name is theirs, and so is the cleanup).
        previous = self._previous
        if previous is not None and previous != self.data:
            try:
                if remote.committed_object(self.url) == self.data:
                    remote.remove(previous)
            except OpError as e:  # committed already: a failed cleanup does not fail the save
                log.warning("checkpoint %s is saved; removing the version it replaced failed: %s", self.url, e)


def committed_source(url: str) -> Source:
    """The data object the commit at ``url`` names, open for ranged reads (a save of the
    same name may commit and delete the version just located: then follow the new commit)."""
    for attempt in range(2):
        target = remote.locate(url)
        try:
            src = Source(target.object)
        except NotFoundError:
            if attempt or target.object == url or remote.committed_object(url) in (None, target.object):
                raise  # not replaced meanwhile: what the error says is so
            continue
        src.commit, src.name = target, url
        return src
    raise AssertionError("unreachable")


class Source:
    """Ranged reads of the object at ``url``, through one cached window (no lock: threads
    reading at once each fetch what they need and never wait on one another)."""

    def __init__(self, url: str):
        self.url = url
        self._fs, self._path = remote.filesystem(url, "opening checkpoint")
        found = remote.info(url, "opening checkpoint")
        if found is None or found.get("type", "file") != "file":
            raise NotFoundError(f"Checkpoint data {url!r} not found")
        self.size = int(found.get("size") or 0)
        self._window = (0, b"")  # (offset, bytes): replaced whole, so threads share it safely
        self.closed = False
        self.commit: Target | None = None  # what the commit marker that led here promises
        self.name = url  # the checkpoint's name (the URL of its commit)

    def map(self) -> None:
        return None  # an object is read in ranges, never mapped

    def replaced(self) -> bool:
        """A save of the same name committed other data since this one was located."""
        return self.name != self.url and remote.committed_object(self.name) not in (None, self.url)

    def pread(self, n: int, offset: int) -> bytes:
        """Exactly these bytes, in one request (the header, footer and index: no window)."""
        return self._fetch(offset, min(self.size, offset + n))

    def close(self) -> None:
        self.closed = True
        self._window = (0, b"")

    def _fetch(self, start: int, end: int) -> bytes:
        if self.closed:
            raise FailedPreconditionError(f"the reader of {self.url} is closed")
        if end <= start:
            return b""
        try:
            return self._fs.cat_file(self._path, start=start, end=end)
        except FileNotFoundError:
            raise NotFoundError(f"reading checkpoint {self.url}: the object was deleted while being read (a "
                                f"newer save of that name, or retention, replaced it)") from None
        except Exception as e:  # noqa: BLE001
            raise remote.translate(e, self.url, "reading checkpoint") from None

    def preadv(self, views: list, offset: int) -> int:
        """Fill ``views`` in order from ``offset``; returns the bytes filled. Tensor data:
        small reads come from the window (one GET serves the tensors that follow)."""
        total = sum(v.nbytes for v in views)
        if total >= READ_WINDOW:  # a large read goes straight through
            start, data = offset, self._fetch(offset, min(self.size, offset + total))
        else:
            start, data = self._window
            if not (start <= offset and offset + total <= start + len(data)):
                start, data = offset, self._fetch(offset, min(self.size, offset + READ_WINDOW))
                self._window = (start, data)
        src = memoryview(data)[offset - start:]
        pos = 0
        for v in views:
            take = min(v.nbytes, len(src) - pos)
            v[:take] = src[pos:pos + take]
            pos += take
        return pos


__all__ = ["Sink", "CommitSink", "Source", "committed_source", "READ_WINDOW"]
