"""TensorFlow's own checkpoints (V2 tensor bundles), read and written without TensorFlow.

A bundle saved under the prefix ``P`` (``model.ckpt-1000``, ``ckpt-3``) is ``P.index``,
a LevelDB-style table of one BundleEntryProto per tensor, and ``P.data-0000k-of-0000n``,
the tensors' bytes; docs/FORMAT.md ("TensorFlow bundles") describes both as read here.

- :class:`TFBundleReader` offers what varstore's checkpoint readers offer, so that
  ``Saver.restore``, ``tf.train.list_variables`` / ``load_variable`` /
  ``NewCheckpointReader`` and ``varstore inspect`` / ``verify`` / ``summary`` /
  ``convert`` take a bundle prefix wherever they take a checkpoint;
- :func:`write_bundle` writes one that TensorFlow reads back;
- :func:`object_names` maps TF 2 object-based keys (``model/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE``)
  to plain variable names.

Submodules have one job each: ``crc32c`` (masked CRC32C), ``wire`` (protobuf wire
decoding), ``sstable`` (the table), ``dtypes``, ``slices`` (partitioned variables),
``strings`` (DT_STRING data), ``index`` (validation), ``files`` (names, opening),
``reader``, ``writer``, ``objects``.

>>> import numpy as np, os, tempfile
>>> p = os.path.join(tempfile.mkdtemp(), "model.ckpt-1")
>>> _ = write_bundle(p, [("dense/kernel", np.eye(2, dtype="float32"))], fsync=False)
>>> is_bundle(p), TFBundleReader(p).get_tensor("dense/kernel").tolist()
(True, [[1.0, 0.0], [0.0, 1.0]])
"""
from .crc32c import IMPLEMENTATION as CRC32C_IMPLEMENTATION
from .files import data_file, index_file, is_bundle, prefix_of, remove_bundle
from .objects import OBJECT_GRAPH_KEY, object_names, plain_name
from .reader import TFBundleReader
from .writer import write_bundle

__all__ = ["TFBundleReader", "write_bundle", "is_bundle", "prefix_of", "index_file", "data_file",
           "object_names", "plain_name", "remove_bundle", "OBJECT_GRAPH_KEY", "CRC32C_IMPLEMENTATION"]
