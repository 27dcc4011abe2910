"""Print what a checkpoint holds, as TF's ``inspect_checkpoint`` does.

>>> import os, tempfile, numpy as np
>>> from varstore.checkpoint import write_checkpoint
>>> p = os.path.join(tempfile.mkdtemp(), "m.ckpt")
>>> _ = write_checkpoint(p, [("v1", np.arange(3, dtype="float32"))], fsync=False)
>>> print_tensors_in_checkpoint_file(p, tensor_name="", all_tensors=False)
v1 (DT_FLOAT) [3]
"""
from __future__ import annotations

import sys

import numpy as np

from devices.errors import OpError

from ..checkpoint.shards import open_checkpoint as CheckpointReader  # shards followed; TF bundles too

_TF_NAMES = {"float16": "DT_HALF", "bfloat16": "DT_BFLOAT16", "float32": "DT_FLOAT", "float64": "DT_DOUBLE",
             "bool": "DT_BOOL", "complex64": "DT_COMPLEX64", "complex128": "DT_COMPLEX128"}


def tf_dtype_name(dtype: np.dtype) -> str:
    """TF's enum name of a dtype (``DT_FLOAT`` for float32)."""
    return _TF_NAMES.get(dtype.name, f"DT_{dtype.name.upper()}")


def print_tensors_in_checkpoint_file(file_name: str, tensor_name: str, all_tensors: bool,
                                     all_tensor_names: bool = False) -> None:
    """Print one tensor, all tensors, all names, or (by default) each name with dtype and shape.

    ``print_tensors_in_checkpoint_file("/tmp/model.ckpt", tensor_name="v1", all_tensors=False)``
    """
    out = sys.stdout
    try:
        with CheckpointReader(file_name) as reader:
            if all_tensors or all_tensor_names:
                for name in reader.names():
                    out.write(f"tensor_name:  {name}\n")
                    if all_tensors:
                        out.write(f"{reader.get_tensor(name)}\n")
            elif not tensor_name:
                for name in reader.names():
                    dt = reader.tf_dtype(name) if hasattr(reader, "tf_dtype") else tf_dtype_name(reader.dtype(name))
                    out.write(f"{name} ({dt}) {list(reader.shape(name))}\n")
            else:
                out.write(f"tensor_name:  {tensor_name}\n")
                out.write(f"{reader.get_tensor(tensor_name)}\n")
    except OpError as e:
        out.write(f"{e}\n")
