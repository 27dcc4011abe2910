"""Checkpoints at fsspec URLs (``s3://``, ``gs://``, ``memory://``...): the commit-marker protocol.

Object stores have no atomic rename, and some fsspec filesystems show an object
while it is still being written (``memory://`` does). So a checkpoint at a URL
counts only once its commit marker exists and matches it: ``{url}.commit``, a
small msgpack map written after the data (docs/FORMAT.md, "Checkpoints at URLs").
The marker holds the data object's size and its index checksum (the footer's),
so a marker left over from an older save of the same name does not vouch for a
newer, unfinished one.

Every call into fsspec goes through this module, and every failure comes out as
one ``varstore.errors`` error naming the URL: an unknown protocol or a missing
package, missing credentials, an unreachable endpoint, a missing bucket.

Where the store lives and how to log in is fsspec's business, not a varstore
argument: ``fsspec.config.conf["s3"] = {"endpoint_url": ...}``, or the store's
own environment variables (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``...).

>>> is_url("s3://bucket/run/model.ckpt"), is_url("runs/model.ckpt")
(True, False)
>>> join(parent("memory://run/model.ckpt-3"), "checkpoint")
'memory://run/checkpoint'
"""
from __future__ import annotations

import os
import posixpath
import re
import threading
import time
from typing import Any, Optional

import msgpack

from devices.errors import (FailedPreconditionError, InvalidArgumentError, NotFoundError, OpError,
                            PermissionDeniedError, UnavailableError)

from . import format as fmt

COMMIT_SUFFIX = ".commit"
COMMIT_FORMAT = "varstore.commit"
MAX_COMMIT_BYTES = 4096
# Reads of a remote checkpoint are served from one window fetched with a single ranged
# GET: thousands of small tensors cost a few requests, not one each.
READ_WINDOW = 16 << 20

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")

# Exception class names (anywhere in the cause chain) by what they mean. Names, not
# imports: botocore, aiohttp, google-auth and azure are optional and never imported here.
_CREDENTIALS = {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError",
                "NoAuthTokenError", "DefaultCredentialsError", "RefreshError", "ClientAuthenticationError",
                "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}
_UNREACHABLE = {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
                "ClientConnectorError", "ServerDisconnectedError", "ServerTimeoutError", "gaierror"}


def is_url(path: Any) -> bool:
    """True for ``scheme://...`` strings: those go through fsspec, anything else is a local path."""
    return isinstance(path, str) and _URL.match(path) is not None


def parent(path: str) -> str:
    """The directory of a local path (absolute) or of a URL (everything before the last ``/``)."""
    if is_url(path):
        head = posixpath.dirname(path.rstrip("/"))
        return head if "://" in head else path.rstrip("/")  # "s3://bucket" is its own parent
    return os.path.dirname(os.path.abspath(path))


def join(directory: str, name: str) -> str:
    """``directory/name`` for a local directory or a URL."""
    return f"{directory.rstrip('/')}/{name}" if is_url(directory) else os.path.join(directory, name)


def present(path: str) -> bool:
    """True when a local file or directory, or an object at a URL, is at ``path``."""
    return exists(path) if is_url(path) else os.path.exists(path)


def is_directory(path: str) -> bool:
    """A local directory, or a URL that names no object (object stores keep no directories)."""
    return not exists(path) if is_url(path) else os.path.isdir(path)


def _chain(e: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: Optional[BaseException] = e
    while cur is not None and len(out) < 16:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def translate(e: BaseException, url: str, doing: str) -> OpError:
    """The varstore error for a failure of fsspec (or of the store behind it) on ``url``.

    >>> translate(FileNotFoundError("no such key"), "s3://b/x", "reading").message
    'reading s3://b/x: not found (no such key)'
    """
    if isinstance(e, OpError):
        return e
    chain = _chain(e)
    names = {type(c).__name__ for c in chain}
    why = f"{type(e).__name__}: {e}"
    if names & _CREDENTIALS or any(isinstance(c, PermissionError) for c in chain):
        return PermissionDeniedError(f"{doing} {url}: access denied or no credentials for this store ({why}); "
                                     f"set its credentials (for s3: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or "
                                     f"fsspec.config.conf['s3'])")
    if names & _UNREACHABLE or any(isinstance(c, (ConnectionError, TimeoutError)) for c in chain):
        return UnavailableError(f"{doing} {url}: the store cannot be reached ({why})")
    if isinstance(e, FileNotFoundError):
        return NotFoundError(f"{doing} {url}: not found ({e})")
    return UnavailableError(f"{doing} {url}: the store failed ({why})")


def filesystem(url: str, doing: str = "opening") -> tuple[Any, str]:
    """(fsspec filesystem, path within it) for ``url``; errors name the URL.

    An unknown protocol is InvalidArgumentError; a known one whose package is not
    installed (``gs://`` without gcsfs), or fsspec itself missing, FailedPreconditionError.
    """
    try:
        import fsspec.core
    except ImportError:
        raise FailedPreconditionError(f"{doing} {url}: URLs need fsspec: pip install 'varstore[remote]' "
                                      f"(and the store's package, e.g. s3fs for s3://)") from None
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as e:
        raise FailedPreconditionError(f"{doing} {url}: the package for this protocol is missing ({e})") from None
    except ValueError as e:
        if "protocol" in str(e).lower():
            scheme = url.split("://", 1)[0]
            raise InvalidArgumentError(f"{doing} {url}: unknown storage protocol {scheme!r} (fsspec knows no "
                                       f"filesystem for it)") from None
        raise InvalidArgumentError(f"{doing} {url}: not a usable URL ({e})") from None
    except Exception as e:  # noqa: BLE001 - a filesystem's constructor may fail in any way
        raise translate(e, url, doing) from None


def _call(url: str, doing: str, fn: str, *args: Any, **kwargs: Any) -> Any:
    fs, path = filesystem(url, doing)
    try:
        return getattr(fs, fn)(path, *args, **kwargs)
    except Exception as e:  # noqa: BLE001 - translated to one error naming the URL
        raise translate(e, url, doing) from None


def info(url: str, doing: str = "reading") -> Optional[dict]:
    """The object's fsspec info (``size``...), None when there is none. Never served from
    a listing cache: another process may have written or deleted it since."""
    fs, path = filesystem(url, doing)
    try:
        fs.invalidate_cache(path)
        return fs.info(path)
    except FileNotFoundError:
        return None
    except Exception as e:  # noqa: BLE001
        raise translate(e, url, doing) from None


def exists(url: str) -> bool:
    """True when an object (committed or not) is at ``url``."""
    found = info(url, "looking for")
    return found is not None and found.get("type", "file") == "file"


def mtime(url: str) -> Optional[float]:
    """The object's modification time (seconds since the epoch), None when unknown."""
    fs, path = filesystem(url, "reading")
    try:
        return fs.modified(path).timestamp()
    except Exception:  # noqa: BLE001 - not every filesystem keeps one
        return None


def read_small(url: str, limit: int) -> bytes:
    """The bytes of a small object, at most ``limit + 1`` of them (more: it is too large).
    FileNotFoundError (the builtin) when there is none; other failures are translated."""
    found = info(url)
    if found is None or found.get("type", "file") != "file":
        raise FileNotFoundError(url)
    if int(found.get("size") or 0) > limit:
        return _call(url, "reading", "cat_file", start=0, end=limit + 1)  # too large: no need for it all
    # One whole GET: one version of the object, even if a writer replaces it meanwhile
    # (a range sized from the info above could cut a newer, longer one).
    return _call(url, "reading", "cat_file")


def write_small(url: str, data: bytes) -> None:
    """Replace the object at ``url`` with ``data`` in one request (one PUT: atomic on object stores)."""
    _call(url, "writing", "pipe_file", bytes(data))


def remove(url: str) -> bool:
    """Delete the object at ``url``; True when there was one."""
    fs, path = filesystem(url, "deleting")
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        return False
    except Exception as e:  # noqa: BLE001
        raise translate(e, url, "deleting") from None
    finally:
        try:
            fs.invalidate_cache(path)
        except Exception:  # noqa: BLE001 - a cache that cannot be cleared holds nothing for us
            pass
    return True


# -- commit markers -------------------------------------------------------------------
def commit_url(url: str) -> str:
    return url + COMMIT_SUFFIX


def write_commit(url: str, size: int, index_checksum: int) -> None:
    """Commit the checkpoint at ``url``: from now on readers take it."""
    write_small(commit_url(url), msgpack.packb({
        "format": COMMIT_FORMAT, "version": 1, "object": posixpath.basename(url), "size": size,
        "index_checksum": index_checksum, "committed_at": time.time()}, use_bin_type=True))


def read_commit(url: str) -> Optional[dict]:
    """The commit marker of ``url`` as a dict, None when there is none or it is not one."""
    try:
        raw = read_small(commit_url(url), MAX_COMMIT_BYTES)
    except FileNotFoundError:
        return None
    if len(raw) > MAX_COMMIT_BYTES:
        return None
    try:
        marker = msgpack.unpackb(raw, raw=False, strict_map_key=True, max_bin_len=0, max_ext_len=0)
    except Exception:  # noqa: BLE001 - a torn or foreign marker commits nothing
        return None
    if not isinstance(marker, dict) or marker.get("format") != COMMIT_FORMAT:
        return None
    if not isinstance(marker.get("size"), int) or not isinstance(marker.get("index_checksum"), int):
        return None
    return marker


def marker_matches(marker: Optional[dict], size: int, footer: bytes) -> bool:
    """True when ``marker`` commits an object of ``size`` bytes ending in ``footer``."""
    parsed = fmt.parse_footer(footer)
    return (marker is not None and parsed is not None and marker["size"] == size
            and marker["index_checksum"] == parsed[3])


def is_committed(url: str) -> bool:
    """True when the checkpoint at ``url`` is complete: its marker exists and matches it."""
    marker = read_commit(url)
    if marker is None:
        return False
    found = info(url)
    if found is None or int(found.get("size") or 0) != marker["size"] or marker["size"] < fmt.FOOTER_SIZE:
        return False
    footer = _call(url, "reading", "cat_file", start=marker["size"] - fmt.FOOTER_SIZE, end=marker["size"])
    return marker_matches(marker, marker["size"], footer)


def remove_checkpoint(url: str) -> bool:
    """Delete a checkpoint: its marker first (readers stop taking it), then its data."""
    remove(commit_url(url))
    return remove(url)


# -- streaming ------------------------------------------------------------------------
class Sink:
    """A new object at ``url``, written in order (``writev``), then ``close``d or ``abort``ed."""

    def __init__(self, url: str):
        self.url = url
        self._fs, path = filesystem(url, "saving checkpoint")
        try:
            self._f = self._fs.open(path, "wb")
        except Exception as e:  # noqa: BLE001
            raise translate(e, url, "saving checkpoint") from None

    def writev(self, views: list) -> int:
        n = 0
        try:
            for v in views:
                self._f.write(v)
                n += v.nbytes
        except Exception as e:  # noqa: BLE001
            raise translate(e, self.url, "saving checkpoint") from None
        return n

    def close(self) -> None:
        """Finish the upload (the object is whole from here, but not yet committed)."""
        try:
            self._f.close()
        except Exception as e:  # noqa: BLE001
            raise translate(e, self.url, "saving checkpoint") from None

    def abort(self) -> None:
        """Give the upload up and delete what it left, unless what is at the URL is still a
        committed checkpoint (an aborted multipart upload leaves the previous object)."""
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
            if not is_committed(self.url):
                remove_checkpoint(self.url)
        except OpError:
            pass  # the store is gone: nothing to clean, and nothing committed names it


class Source:
    """Ranged reads of the object at ``url``, through one cached window."""

    def __init__(self, url: str):
        self.url = url
        self._fs, self._path = filesystem(url, "opening checkpoint")
        found = info(url, "opening checkpoint")
        if found is None or found.get("type", "file") != "file":
            raise NotFoundError(f"Checkpoint {url!r} not found")
        self.size = int(found.get("size") or 0)
        self._lock = threading.Lock()
        self._window = (0, b"")

    def pread(self, n: int, offset: int) -> bytes:
        """Exactly these bytes, in one request (the header, footer and index: no window)."""
        return self._fetch(offset, min(self.size, offset + n))

    def _fetch(self, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        try:
            return self._fs.cat_file(self._path, start=start, end=end)
        except Exception as e:  # noqa: BLE001
            raise translate(e, self.url, "reading checkpoint") from None

    def preadv(self, views: list, offset: int) -> int:
        """Fill ``views`` in order from ``offset``; returns the bytes filled. Tensor data:
        small reads come from the window (one GET serves the tensors that follow)."""
        total = sum(v.nbytes for v in views)
        if total >= READ_WINDOW:  # a large read goes straight through
            start, data = offset, self._fetch(offset, min(self.size, offset + total))
        else:
            with self._lock:
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


__all__ = ["is_url", "parent", "join", "present", "is_directory", "filesystem", "translate", "info", "exists", "mtime", "read_small",
           "write_small", "remove", "commit_url", "write_commit", "read_commit", "marker_matches",
           "is_committed", "remove_checkpoint", "Sink", "Source", "COMMIT_SUFFIX"]
