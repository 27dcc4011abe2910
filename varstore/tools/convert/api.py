"""``convert(src, dst)`` and ``open_tensors(path)``: a format's reader and writer, picked
by ``sniff``, joined by a name map (``names``). See the package docstring."""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from devices.errors import InvalidArgumentError, NotFoundError

from ...progress import Progress, format_bytes
from .base import Plan, Source
from .names import Renamer
from .native import VarstoreSource, write_varstore
from .npz import NpzSource, write_npz
from .pytorch import TorchSource, write_torch
from .safetensors import SafetensorsSource, write_safetensors
from .sniff import check_format, detect_format
from .tfbundle import TFBundleSource, refuse_strings, write_tf

log = logging.getLogger("varstore")

_SOURCES: dict[str, Callable[[str], Source]] = {
    "varstore": VarstoreSource, "safetensors": SafetensorsSource, "npz": NpzSource, "torch": TorchSource,
    "tf": TFBundleSource,
}


def open_tensors(path: str | os.PathLike, fmt: str | None = None) -> Source:
    """Open a tensor file of any supported format for reading (a context manager).

    ``src.infos`` lists each tensor's name, dtype, shape and bytes; ``src.array(name)``
    returns it (mapped from the file where the format allows: varstore,
    safetensors, torch zip files).
    """
    path = os.fsdecode(os.fspath(path))
    fmt = check_format(fmt, "open_tensors") if fmt else detect_format(path)
    if not os.path.isfile(path) and not (fmt == "tf" and _is_bundle(path)):
        raise NotFoundError(f"{path}: no such file")
    try:
        return _SOURCES[fmt](path)
    except OSError as e:
        raise NotFoundError(f"{path}: cannot be read: {e.strerror or e}") from None



_WRITERS = {"varstore": write_varstore, "safetensors": write_safetensors, "npz": write_npz,
            "torch": write_torch, "tf": write_tf}


def _is_bundle(path: str) -> bool:
    from ...checkpoint.tf import is_bundle
    return is_bundle(path)


# -- the entry point ----------------------------------------------------------------------------------------
@dataclass
class ConvertResult:
    """What ``convert`` did."""

    src: str
    dst: str
    src_format: str
    dst_format: str
    tensors: int
    nbytes: int
    seconds: float
    dropped: list[str] = field(default_factory=list)


def convert(src: str | os.PathLike, dst: str | os.PathLike, name_map: Mapping[str, str] | None = None, *,
            src_format: str | None = None, dst_format: str | None = None, progress: bool | None = None,
            overwrite: bool = False, fsync: bool = True) -> ConvertResult:
    """Copy every tensor of ``src`` into a new file ``dst``, renamed by ``name_map``, byte-identical.

    ``src`` may also be a Saver's directory (its latest checkpoint is converted).

    Formats come from the files (see ``varstore.tools.convert``) unless ``src_format``
    / ``dst_format`` name them (``"varstore"``, ``"safetensors"``, ``"npz"``,
    ``"torch"``). ``dst`` is written atomically (a temporary file renamed into
    place, fsynced unless ``fsync=False``); an existing ``dst`` is replaced only
    with ``overwrite=True``. ``progress``: None shows a bar on a terminal for a
    conversion that takes over 2 seconds, False never, True always.

    Errors (all ``varstore.errors``): NotFoundError for a missing source or
    destination directory; InvalidArgumentError for an unknown format, a pickle
    payload (refused, never loaded), a dtype the destination cannot hold, or a
    bad name map; DataLossError for a corrupt source.
    """
    t0 = time.perf_counter()
    src_s, dst_s = os.fsdecode(os.fspath(src)), os.fsdecode(os.fspath(dst))
    if not os.path.exists(src_s) and not _is_bundle(src_s):
        raise NotFoundError(f"convert: {src_s}: no such file")
    if os.path.isdir(src_s):  # a Saver's directory: its latest checkpoint
        from ...train.checkpoint_state import latest_checkpoint
        latest = latest_checkpoint(src_s)
        if latest is None:
            raise NotFoundError(f"convert: {src_s} is a directory without a checkpoint state file; "
                                f"name a file")
        src_s = latest
    sfmt = check_format(src_format, "convert") if src_format else detect_format(src_s)
    dfmt = check_format(dst_format, "convert") if dst_format else detect_format(dst_s, for_writing=True)
    if dfmt == "tf":  # a bundle prefix: the files are P.index and P.data-*
        if _is_bundle(dst_s) and not overwrite:
            raise InvalidArgumentError(f"convert: {dst_s} already exists (a TF bundle; pass overwrite=True, or "
                                       f"--force, to replace it)")
        if sfmt == "tf" and _is_bundle(src_s) and _same_prefix(src_s, dst_s):
            raise InvalidArgumentError(f"convert: source and destination are the same bundle ({dst_s})")
    elif os.path.exists(dst_s):
        if os.path.isdir(dst_s):
            raise InvalidArgumentError(f"convert: destination {dst_s} is a directory; name a file")
        if os.path.samefile(src_s, dst_s):
            raise InvalidArgumentError(f"convert: source and destination are the same file ({dst_s})")
        if not overwrite:
            raise InvalidArgumentError(f"convert: {dst_s} already exists (pass overwrite=True, or --force, "
                                       f"to replace it)")
    directory = os.path.dirname(os.path.abspath(dst_s))
    if not os.path.isdir(directory):
        raise NotFoundError(f"convert: cannot write {dst_s}: directory {directory} does not exist")
    with open_tensors(src_s, sfmt) as source:
        rename = Renamer(name_map, [i.name for i in source.infos])
        plan: Plan = []
        dropped: list[str] = []
        seen: dict[str, str] = {}
        for info in source.infos:
            new = rename(info.name)
            if new is None:
                dropped.append(info.name)
                continue
            if new in seen:
                raise InvalidArgumentError(f"convert: tensors {seen[new]!r} and {info.name!r} would both be "
                                           f"named {new!r}")
            seen[new] = info.name
            plan.append((new, info))
        refuse_strings(plan, dfmt)
        total = sum(i.nbytes for _, i in plan)
        extra = _carried_extra(source, sfmt, src_s)
        with Progress(total, f"convert {os.path.basename(src_s)}", enabled=progress) as bar:
            try:
                _WRITERS[dfmt](dst_s, source, plan, bar, fsync, extra)
            except OSError as e:
                if isinstance(e, FileNotFoundError):
                    raise NotFoundError(f"convert: cannot write {dst_s}: {e.strerror or e}") from None
                raise
    seconds = time.perf_counter() - t0
    log.info("converted %d tensors (%s) from %s (%s) to %s (%s) in %.2f s%s", len(plan), format_bytes(total),
             src_s, sfmt, dst_s, dfmt, seconds, f"; dropped {len(dropped)}" if dropped else "")
    return ConvertResult(src_s, dst_s, sfmt, dfmt, len(plan), total, seconds, dropped)


def _same_prefix(a: str, b: str) -> bool:
    from ...checkpoint.tf import prefix_of
    return os.path.abspath(prefix_of(a)) == os.path.abspath(prefix_of(b))


def _carried_extra(source: Source, fmt: str, path: str) -> dict:
    """What a varstore destination keeps of the source's metadata (msgpack-native values only)."""
    extra: dict[str, Any] = {}
    if fmt == "varstore":
        extra.update({k: v for k, v in source.metadata.items() if k != "converted_from"})
    elif "safetensors_metadata" in source.metadata:
        extra["safetensors_metadata"] = source.metadata["safetensors_metadata"]
    extra["converted_from"] = {"format": fmt, "file": os.path.basename(path)}
    return extra

