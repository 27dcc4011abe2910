"""Checkpoints at fsspec URLs (``s3://``, ``gs://``, ``memory://``...): the commit-marker protocol.

Object stores have no atomic rename, and some fsspec filesystems show an object
while it is still being written (``memory://`` does). So a save streams the data
to a new object of its own, ``{url}.data-{16 hex}``, and then commits it with one
PUT at the checkpoint's name: ``{url}`` becomes a small msgpack commit marker
naming that data object, its size and its index checksum (docs/FORMAT.md,
"Checkpoints at URLs"). A checkpoint counts only once its marker exists; an
interrupted save leaves the previous version of the name, if any, untouched,
since the marker switches from one whole data object to another in one request.

Every call into fsspec goes through this module (streaming: ``remote_stream.py``), and every failure comes out as
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
import time
from typing import Any

import msgpack

from devices.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    OpError,
    PermissionDeniedError,
    UnavailableError,
)

from . import format as fmt

DATA_INFIX = ".data-"
COMMIT_FORMAT = "varstore.commit"
MAX_COMMIT_BYTES = 4096

# A protocol, or a chain of them (``simplecache::s3://``); ``file://`` is a local path.
_URL = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.\-]*::)*(?![Ff][Ii][Ll][Ee]://)[A-Za-z][A-Za-z0-9+.\-]*://")
_FILE_URL = re.compile(r"file://(?:localhost(?=/))?", re.IGNORECASE)
_SAVE_ID = re.compile(r"[0-9a-f]{16}")

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


def local_path(path: str) -> str:
    """``file:///a/b`` (or ``file://localhost/a/b``) as the local path ``/a/b``: local files
    keep their atomic rename and fsync. Anything else unchanged.

    >>> local_path("file:///tmp/run"), local_path("FILE://localhost/tmp/run"), local_path("s3://b/x")
    ('/tmp/run', '/tmp/run', 's3://b/x')
    """
    m = _FILE_URL.match(path) if isinstance(path, str) else None
    return path[m.end():] if m else path


def parent(path: str) -> str:
    """The directory of a local path (absolute) or of a URL (everything before the last ``/``)."""
    if is_url(path):
        head = posixpath.dirname(path.rstrip("/"))
        return head if "://" in head else path.rstrip("/")  # "s3://bucket" is its own parent
    return os.path.dirname(os.path.abspath(path))


def join(directory: str, name: str) -> str:
    """``directory/name`` for a local directory or a URL."""
    return f"{directory.rstrip('/')}/{name}" if is_url(directory) else os.path.join(directory, name)


def is_directory(path: str) -> bool:
    """A local directory, or a URL that names no object and no save's data (object stores
    keep no directories)."""
    path = local_path(path)
    if not is_url(path):
        return os.path.isdir(path)
    if exists(path):
        return False
    try:
        return not data_objects(path)
    except OpError:  # no permission to list: nothing at that name, so a directory
        return True


def _chain(e: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = e
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


def info(url: str, doing: str = "reading") -> dict | None:
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


def mtime(url: str) -> float | None:
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
    return _first_bytes(url, int(found.get("size") or 0), limit + 1, "reading")


def _first_bytes(url: str, size: int, n: int, doing: str) -> bytes:
    """At most ``n`` bytes from the start of the object: one ranged GET, so one version of it
    and never more than ``n`` bytes, even if a writer replaces it meanwhile."""
    if size == 0:
        return b""  # a range of an empty object is "not satisfiable" on S3
    return _call(url, doing, "cat_file", start=0, end=n)


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
def data_url(url: str, save_id: str) -> str:
    """Where one save streams the data of the checkpoint named ``url``: a new object per save."""
    return f"{url}{DATA_INFIX}{save_id}"


def new_save_id() -> str:
    return os.urandom(8).hex()


def write_commit(url: str, data: str, size: int, index_checksum: int) -> None:
    """Commit the checkpoint ``url``: one PUT at that name, pointing at the data object ``data``.
    Readers switch from the previous version (if any) to this one at once."""
    write_small(url, msgpack.packb({
        "format": COMMIT_FORMAT, "version": 1, "object": posixpath.basename(data), "size": size,
        "index_checksum": index_checksum, "committed_at": time.time()}, use_bin_type=True))


class Target:
    """What a reader of the checkpoint ``url`` reads: ``object`` (a URL), and the ``size`` and
    ``index_checksum`` its commit marker promises (None for a checkpoint stored whole at
    ``url``, e.g. a local file copied there)."""

    def __init__(self, obj: str, size: int | None = None, index_checksum: int | None = None):
        self.object, self.size, self.index_checksum = obj, size, index_checksum


def _parse_marker(url: str, raw: bytes) -> Target | None:
    try:
        m = msgpack.unpackb(raw, raw=False, strict_map_key=True, max_bin_len=0, max_ext_len=0)
    except Exception:  # noqa: BLE001 - a torn or foreign object commits nothing
        return None
    if not isinstance(m, dict) or m.get("format") != COMMIT_FORMAT:
        return None
    obj, size, checksum = m.get("object"), m.get("size"), m.get("index_checksum")
    if not isinstance(size, int) or not isinstance(checksum, int) or size < 0 or not isinstance(obj, str):
        return None
    # The data object must be one of this name's own: never a path elsewhere in the store.
    if "/" in obj or _data_name(obj) != posixpath.basename(url):
        return None
    return Target(join(parent(url), obj), size, checksum)


def locate(url: str) -> Target:
    """The object to read for the checkpoint ``url``. NotFoundError names the URL when there is
    nothing there, or nothing committed (an interrupted save leaves only its data object)."""
    if _data_name(posixpath.basename(url)) is not None:
        raise NotFoundError(f"{url} is one save's data object, not a checkpoint: open the checkpoint by its "
                            f"name, {url[:url.rindex(DATA_INFIX)]} (its commit says which data object counts)")
    found = info(url, "opening checkpoint")
    if found is None or found.get("type", "file") != "file":
        try:
            left = uncommitted(url)
        except OpError:  # a store that allows no listing: say what is certain
            left = []
        if left:
            raise NotFoundError(f"Checkpoint {url!r} is not committed: {len(left)} data object(s) of a save "
                                f"that was interrupted or is still running, and no commit at that name")
        raise NotFoundError(f"Checkpoint {url!r} not found")
    head = _first_bytes(url, int(found.get("size") or 0), MAX_COMMIT_BYTES + 1, "opening checkpoint")
    if head.startswith(fmt.HEADER_PREFIX):
        return Target(url)  # a checkpoint stored whole (an upload of a file): read it as a file
    target = _parse_marker(url, head) if len(head) <= MAX_COMMIT_BYTES else None
    if target is None:
        raise NotFoundError(f"Checkpoint {url!r} is not committed: the object there is neither a checkpoint "
                            f"nor a valid commit marker")
    return target


def is_committed(url: str) -> bool:
    """True when the checkpoint ``url`` can be read: a commit marker whose data object has the
    size and index checksum it promises, or a whole checkpoint stored at that name."""
    try:
        target = locate(url)
    except NotFoundError:
        return False
    found = info(target.object)
    size = int(found.get("size") or 0) if found is not None else -1
    if size < fmt.HEADER_SIZE + fmt.FOOTER_SIZE or (target.size is not None and size != target.size):
        return False
    footer = fmt.parse_footer(_call(target.object, "reading", "cat_file", start=size - fmt.FOOTER_SIZE, end=size))
    return footer is not None and (target.index_checksum is None or footer[3] == target.index_checksum)


def _data_name(base: str) -> str | None:
    """The checkpoint name a data object's base name belongs to (``m.data-{16 hex}`` -> ``m``)."""
    i = base.rfind(DATA_INFIX)
    return base[:i] if i > 0 and _SAVE_ID.fullmatch(base[i + len(DATA_INFIX):]) else None


def listing(directory: str) -> list[tuple[str, float | None]]:
    """(base name, last written or None) of every object in the directory ``directory``, read afresh."""
    fs, path = filesystem(directory, "listing")
    try:
        fs.invalidate_cache(path)
        entries = fs.ls(path, detail=True)
    except FileNotFoundError:
        return []
    except Exception as e:  # noqa: BLE001
        raise translate(e, directory, "listing") from None
    return [(posixpath.basename(str(e.get("name", "")).rstrip("/")), _stamp(e)) for e in entries]


def data_objects(url: str) -> list[str]:
    """Every data object of the name ``url`` (committed or left by interrupted saves)."""
    directory, name = parent(url), posixpath.basename(url)
    return sorted(join(directory, base) for base, _ in listing(directory) if _data_name(base) == name)


def committed_object(url: str) -> str | None:
    """The data object the commit at ``url`` names, None when there is no commit there (or
    a whole checkpoint is stored at the name itself)."""
    if not exists(url):  # the usual case for a new name: no listing for locate's message
        return None
    try:
        target = locate(url)
    except NotFoundError:
        return None
    return target.object if target.size is not None else None


def _stamp(entry: dict) -> float | None:
    """Seconds since the epoch when a listed object was last written, None when unknown."""
    for key in ("LastModified", "mtime", "modified", "created"):
        v = entry.get(key)
        if isinstance(v, (int, float)):
            return float(v)
        if v is not None and hasattr(v, "timestamp"):  # a datetime
            return float(v.timestamp())
    return None


def stale_data(directory: str, older_than: float) -> list[str]:
    """Data objects in ``directory`` that no commit names and that were last written more
    than ``older_than`` seconds ago: what killed or failed saves left there."""
    now = time.time()
    by_name: dict[str, list[str]] = {}
    for base, stamp in listing(directory):
        name = _data_name(base)
        if name is not None and stamp is not None and now - stamp > older_than:
            by_name.setdefault(name, []).append(base)
    stale = []
    for name, objects in by_name.items():
        committed = committed_object(join(directory, name))
        stale += [join(directory, o) for o in objects if committed is None or posixpath.basename(committed) != o]
    return sorted(stale)


def uncommitted(url: str) -> list[str]:
    """Data objects of the name ``url`` that its commit (if any) does not point at."""
    committed = committed_object(url)
    return [d for d in data_objects(url) if d != committed]


def remove_checkpoint(url: str) -> bool:
    """Delete a checkpoint: its commit first (readers stop taking it), then its data objects."""
    gone = remove(url)
    for d in data_objects(url):
        gone = remove(d) or gone
    return gone


__all__ = ["is_url", "local_path", "parent", "join", "is_directory", "filesystem", "translate", "info", "exists",
           "mtime", "read_small", "write_small", "remove", "listing", "data_url", "new_save_id", "write_commit",
           "Target", "locate", "is_committed", "data_objects", "committed_object", "stale_data", "uncommitted",
           "remove_checkpoint"]
