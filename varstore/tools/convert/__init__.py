"""Convert tensors between varstore checkpoints, safetensors, numpy ``.npz`` and PyTorch files.

``convert(src, dst)`` reads every tensor of ``src`` and writes them, renamed
by ``name_map``, to ``dst``; the command line is ``varstore convert SRC DST``.
Every tensor arrives byte-identical (bfloat16 included); a dtype the
destination cannot hold is refused with an error naming the tensor.

Formats, told apart by the first bytes of an existing file, else by the
extension (a destination: ``.safetensors``, ``.npz``, ``.pt``/``.pth``/``.bin``;
anything else is a varstore checkpoint):

- ``varstore``: our checkpoint (tensors mapped from the file, checksums verified).
- ``safetensors``: read by parsing its header and mapping the file (no copy,
  no dependency); written by streaming, with ``__metadata__`` carried over.
- ``npz``: read with ``allow_pickle=False``, after every member's header has
  been checked: an archive holding object (pickled) arrays is refused before
  anything is loaded. numpy has no bfloat16, so a bfloat16 tensor is stored
  as its uint16 bit pattern, and a member ``__varstore_dtypes__`` (a JSON
  string, no pickle) records which; reading such an archive restores the
  dtype, and plain numpy users get the bits (``a.view(ml_dtypes.bfloat16)``).
- ``torch``: a ``state_dict`` (nested dicts are flattened with ``/``), read
  only with ``torch.load(weights_only=True)``: a payload that holds
  anything but tensors and plain containers is refused, never executed.

Names: ``name_map`` maps old names to new ones (TF 1.x's assignment-map
style). An entry whose key ends with ``/`` renames a whole scope
(``{"old_scope/": "new_scope/"}``); an empty new name drops the tensor; a
TF-style ``:0`` suffix on either side is ignored. An entry that matches no
tensor is an error, as are two tensors mapped to one name.

>>> import os, tempfile, numpy as np
>>> from varstore.checkpoint import CheckpointReader, write_checkpoint
>>> d = tempfile.mkdtemp()
>>> _ = write_checkpoint(os.path.join(d, "model.ckpt"), [("dense/kernel", np.eye(2, dtype="float32"))],
...                      fsync=False)
>>> r = convert(os.path.join(d, "model.ckpt"), os.path.join(d, "model.safetensors"),
...             name_map={"dense/": "layer1/"}, progress=False)
>>> r.tensors, r.dst_format
(1, 'safetensors')
>>> _ = convert(os.path.join(d, "model.safetensors"), os.path.join(d, "back.ckpt"), progress=False)
>>> CheckpointReader(os.path.join(d, "back.ckpt")).get_tensor("layer1/kernel").tolist()
[[1.0, 0.0], [0.0, 1.0]]
"""
from __future__ import annotations

from .api import ConvertResult, convert, open_tensors
from .base import Source, TensorInfo
from .cli import main_convert
from .names import Renamer, parse_name_map, read_name_map_file
from .native import VarstoreSource
from .npz import NpzSource
from .pytorch import TorchSource
from .safetensors import SafetensorsSource
from .sniff import FORMATS, detect_format

__all__ = ["convert", "ConvertResult", "detect_format", "parse_name_map", "read_name_map_file",
           "open_tensors", "FORMATS"]
