"""``Saver(format="tf")``: each save writes a TensorFlow V2 bundle instead of a varstore checkpoint.

``model.ckpt-1000.index`` and ``model.ckpt-1000.data-00000-of-00001`` beside the state file
``checkpoint``, which names ``model.ckpt-1000`` as TF's own Saver does: TF 1.x's
``Saver.restore``, ``tf.train.latest_checkpoint`` and ``NewCheckpointReader`` take the
directory as if TF had written it (varstore reads it back too). Retention
(``max_to_keep``, ``keep_checkpoint_every_n_hours``) applies as to varstore saves, over
the checkpoints the state file lists; a dropped bundle loses its index first.

What a TF-format save does not do: write a ``.meta`` file (TF's is a protobuf
MetaGraphDef; varstore's would mislead ``tf.train.import_meta_graph``), run in the
background (``async_save``), or write one file per ps task (``sharded``): the values
are gathered and written by this process.

>>> import os, tempfile, varstore as tf
>>> from varstore.checkpoint.tf import is_bundle
>>> tf.reset_default_graph()
>>> v = tf.Variable(tf.ones([2]), name="v")
>>> d = tempfile.mkdtemp()
>>> with tf.Session() as sess:
...     sess.run(tf.global_variables_initializer())
...     path = tf.train.Saver(format="tf").save(sess, os.path.join(d, "model.ckpt"), global_step=5)
>>> sorted(n for n in os.listdir(d) if not n.startswith("."))  # .checkpoint.lock: the Saver's lock file
['checkpoint', 'model.ckpt-5.data-00000-of-00001', 'model.ckpt-5.index']
>>> is_bundle(path), tf.train.latest_checkpoint(d) == path
(True, True)
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from ..checkpoint.store import store_for
from ..checkpoint.tf import write_bundle
from .history import History

log = logging.getLogger("varstore")

FORMATS = ("varstore", "tf")


def _values(var_map: dict) -> Iterator[tuple[str, Any]]:
    # Each variable's lock is held while the writer consumes its bytes: a concurrent assign
    # cannot tear one tensor.
    for key in sorted(var_map):
        var = var_map[key]
        with var.storage.lock:
            yield key, var._live()


def save_tf(var_map: dict, path: str, history: History, latest_filename: str | None, write_state: bool) -> None:
    """Write ``var_map``'s values as the TF bundle ``path``, then name it in the state file and
    apply retention, as a varstore save does (``History.record``: merged with other writers'
    records, and only after the state file no longer names what goes)."""
    write_bundle(path, _values(var_map))
    if write_state:
        history.record(path, store_for(path).parent(path), latest_filename, "meta")
    log.info("saved %d tensors to the TF bundle %s", len(var_map), path)
