"""The varstore checkpoint file: a stream of msgpack objects with raw, aligned,
checksummed tensor data and a columnar index found through a fixed-size footer.

The format is specified in docs/FORMAT.md. This package imports nothing else
from varstore (only ``devices``), so tools can read checkpoints without the
rest of the library.

>>> import numpy as np, tempfile, os
>>> p = os.path.join(tempfile.mkdtemp(), "model.ckpt-1")
>>> _ = write_checkpoint(p, [("v", np.zeros(4, "float32"))], extra={"global_step": 1}, fsync=False)
>>> is_checkpoint(p), CheckpointReader(p).get_variable_to_shape_map()
(True, {'v': [4]})
"""
from .format import FORMAT_VERSION, MAX_INDEX_BYTES, SUPPORTED_VERSIONS, TMP_PATTERN, is_temp_file, temp_target
from .reader import CheckpointReader, is_checkpoint
from .writer import write_checkpoint

__all__ = [
    "write_checkpoint", "CheckpointReader", "is_checkpoint", "FORMAT_VERSION", "SUPPORTED_VERSIONS",
    "TMP_PATTERN", "is_temp_file", "temp_target", "MAX_INDEX_BYTES",
]
