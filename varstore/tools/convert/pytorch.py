"""PyTorch ``state_dict`` files: read only with ``torch.load(weights_only=True)`` (a payload
holding anything but tensors and plain containers is refused, never executed; nested
dicts are flattened with ``/``); written with ``torch.save``."""
from __future__ import annotations

import logging
import struct
import warnings
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from devices.dtypes import bfloat16
from devices.errors import DataLossError, InvalidArgumentError

from ...checkpoint.store import AtomicFile
from ...progress import Progress
from .base import OutWriter, Plan, Source, c_order, tensor_info

log = logging.getLogger("varstore")


def import_torch() -> Any:
    try:
        import torch
    except ImportError:
        raise InvalidArgumentError("reading or writing PyTorch files needs torch (pip install torch)") from None
    return torch


class TorchSource(Source):
    """A ``state_dict`` loaded with ``torch.load(weights_only=True)`` (memory-mapped where torch can)."""

    format = "torch"

    def __init__(self, path: str):
        super().__init__(path)
        torch = import_torch()
        is_zip = zipfile.is_zipfile(path)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
        except Exception as e:  # noqa: BLE001 - sorted below; no pickle module is imported here
            if type(e).__name__ != "UnpicklingError":  # torch's refusal (pickle.UnpicklingError)
                if isinstance(e, (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, struct.error,
                                  MemoryError)):
                    raise DataLossError(f"{path}: not a readable PyTorch file: {type(e).__name__}: "
                                        f"{str(e).splitlines()[0] if str(e) else ''}") from None
                raise
            msg = str(e)
            if "weights only" in msg.lower() or "weights_only" in msg.lower():
                # torch's message suggests weights_only=False; keep only what it found.
                found = [ln.strip() for ln in msg.splitlines()
                         if "GLOBAL" in ln or "Unsupported" in ln or "unsupported" in ln]
                raise InvalidArgumentError(
                    f"{path}: refused: the file holds Python objects other than tensors and plain containers, "
                    f"which could run code when unpickled; varstore loads PyTorch files only with "
                    f"torch.load(weights_only=True), and nothing in it was executed"
                    + (f" ({found[0]})" if found else "")) from None
            raise DataLossError(f"{path}: not a readable PyTorch file: {msg.splitlines()[0] if msg else e}") from None
        self._tensors: dict[str, Any] = {}
        skipped: list[str] = []
        self._flatten(obj, "", skipped, torch)
        if skipped:
            log.warning("%s: skipped %d entries that are not tensors: %s%s", path, len(skipped),
                        ", ".join(skipped[:5]), " ..." if len(skipped) > 5 else "")
        if not self._tensors:
            raise InvalidArgumentError(f"{path}: holds no tensors (expected a state_dict: a dict of names to tensors)")
        for name, t in self._tensors.items():
            self.infos.append(tensor_info(path, name, _torch_dtype_name(path, name, t), tuple(t.shape)))

    def _flatten(self, obj: Any, prefix: str, skipped: list, torch: Any) -> None:
        if isinstance(obj, torch.Tensor):
            name = prefix or "tensor"
            if obj.layout != torch.strided:
                raise InvalidArgumentError(f"{self.path}: tensor {name!r} is {obj.layout}; only dense tensors "
                                           f"convert")
            self._tensors[name] = obj
        elif isinstance(obj, Mapping):
            for k, v in obj.items():
                self._flatten(v, f"{prefix}/{k}" if prefix else str(k), skipped, torch)
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                self._flatten(v, f"{prefix}/{i}" if prefix else str(i), skipped, torch)
        else:
            skipped.append(prefix or repr(type(obj).__name__))

    def array(self, name: str) -> Any:
        from devices.backends.arrays import host_array
        t = self._tensors[name].detach()
        return host_array(t)  # a view of torch's (mapped) storage; bfloat16 through DLPack


def _torch_dtype_name(path: str, name: str, t: Any) -> str:
    s = str(t.dtype).replace("torch.", "")
    names = {"float": "float32", "double": "float64", "half": "float16", "long": "int64", "int": "int32",
             "short": "int16", "cfloat": "complex64", "cdouble": "complex128"}
    s = names.get(s, s)
    if s not in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
                 "bfloat16", "float32", "float64", "complex64", "complex128"):
        raise InvalidArgumentError(f"{path}: tensor {name!r} has dtype {t.dtype}, which varstore does not support")
    return s



def write_torch(dst: str, src: Source, plan: Plan, bar: Progress, fsync: bool, extra: dict) -> None:
    torch = import_torch()
    state: dict[str, Any] = {}
    with warnings.catch_warnings():
        # Arrays mapped read-only from the source: torch warns that it could write them; it only reads.
        warnings.simplefilter("ignore", UserWarning)
        for new, info in plan:
            a = np.asarray(src.array(info.name))
            if a.size == 0:
                # An empty view may start where the next tensor starts (safetensors packs them):
                # torch.save refuses two storages at one address with different dtypes.
                a = np.empty(a.shape, a.dtype)
            if a.dtype == bfloat16:
                state[new] = torch.from_numpy(c_order(a).view(np.uint16)).view(torch.bfloat16)
            else:
                state[new] = torch.from_numpy(a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("=")))
    with AtomicFile(dst, fsync, what="PyTorch file") as out:
        torch.save(state, OutWriter(out, bar))
