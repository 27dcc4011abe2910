"""Which format a file is: by its first bytes when it exists, else by its extension."""
from __future__ import annotations

import os
import struct
import zipfile

from devices.errors import InvalidArgumentError, NotFoundError

from .safetensors import MAX_HEADER

FORMATS = ("varstore", "safetensors", "npz", "torch", "tf")
_EXTENSIONS = {".safetensors": "safetensors", ".npz": "npz", ".pt": "torch", ".pth": "torch", ".bin": "torch"}


def _sniff(path: str) -> str | None:
    """The format from a file's first bytes, or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            size = os.fstat(f.fileno()).st_size
    except IsADirectoryError:
        raise InvalidArgumentError(f"{path} is a directory, not a tensor file "
                                   f"(for a Saver directory, pass tf.train.latest_checkpoint(dir))") from None
    except FileNotFoundError:
        return None
    from ...checkpoint.format import HEADER_PREFIX
    if head.startswith(HEADER_PREFIX):
        return "varstore"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return None
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return "torch"
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        return None
    if len(head) >= 9:
        n = struct.unpack("<Q", head[:8])[0]
        # A plausible header size, then a JSON object (or, for a .safetensors file, anything:
        # the reader then says what is wrong with its header).
        if 2 <= n <= min(MAX_HEADER, size - 8) and (
                head[8:9] == b"{" or os.path.splitext(path)[1].lower() == ".safetensors"):
            return "safetensors"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "torch"  # a legacy (non-zip) torch.save pickle; torch.load(weights_only=True) judges it
    return None


def detect_format(path: str | os.PathLike, *, for_writing: bool = False) -> str:
    """``"varstore"``, ``"safetensors"``, ``"npz"``, ``"torch"`` or ``"tf"`` for ``path``.

    An existing file is recognized by its first bytes (its extension when they
    are ambiguous); a destination by its extension, a varstore checkpoint when
    it has none of the known ones. An existing file of no known format raises
    InvalidArgumentError naming it.

    >>> detect_format("model.safetensors", for_writing=True), detect_format("model.ckpt-1000", for_writing=True)
    ('safetensors', 'varstore')
    """
    path = os.fsdecode(os.fspath(path))
    ext = os.path.splitext(path)[1].lower()
    if for_writing:
        return _EXTENSIONS.get(ext, "varstore")
    from ...checkpoint.tf import is_bundle
    if is_bundle(path):  # a prefix (not a file) or its .index
        return "tf"
    if not os.path.exists(path):
        raise NotFoundError(f"{path}: no such file")
    found = _sniff(path)
    if found is not None:
        return found
    raise InvalidArgumentError(
        f"cannot tell the format of {path}: its first bytes match none of varstore checkpoint, safetensors, "
        f"numpy .npz or PyTorch (zip or pickle) files (extension {ext or 'none'!r}); pass the format explicitly "
        f"if it is one of {list(FORMATS)}")


def check_format(fmt: str, what: str) -> str:
    if fmt not in FORMATS:
        raise InvalidArgumentError(f"{what}: unknown format {fmt!r}; expected one of {list(FORMATS)}")
    return fmt

