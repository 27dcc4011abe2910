"""Reading checkpoints without a graph: list_variables, load_variable.

>>> import os, tempfile, varstore as tf
>>> tf.reset_default_graph()
>>> v = tf.Variable(tf.fill([2], 3.0), name="layer/w")
>>> d = tempfile.mkdtemp()
>>> with tf.Session() as sess:
...     sess.run(tf.global_variables_initializer())
...     _ = tf.train.Saver().save(sess, os.path.join(d, "model.ckpt"), global_step=1)
>>> tf.train.list_variables(d)
[('layer/w', [2])]
>>> tf.train.load_variable(d, "layer/w").tolist()
[3.0, 3.0]
"""
from __future__ import annotations

from typing import Any

import numpy as np

from devices.errors import NotFoundError

from ..checkpoint import CheckpointReader
from ..checkpoint.store import normalize, store_for
from .checkpoint_state import latest_checkpoint


def _resolve(ckpt_dir_or_file: Any) -> str:
    path = normalize(ckpt_dir_or_file)
    if store_for(path).is_dir(path):
        latest = latest_checkpoint(path)
        if latest is None:
            raise NotFoundError(f"Couldn't find a checkpoint in directory {path}")
        return latest
    return path


def load_checkpoint(ckpt_dir_or_file: Any) -> CheckpointReader:
    """A CheckpointReader for a file, or for the latest checkpoint of a directory
    (a sharded checkpoint is read with its shards, as one)."""
    from ..checkpoint.shards import open_checkpoint
    return open_checkpoint(_resolve(ckpt_dir_or_file))


NewCheckpointReader = load_checkpoint


def list_variables(ckpt_dir_or_file: Any) -> list[tuple[str, list[int]]]:
    """``[(name, shape)]`` of every tensor in the checkpoint, sorted by name."""
    with load_checkpoint(ckpt_dir_or_file) as r:
        return [(n, list(r.shape(n))) for n in r.names()]


def load_variable(ckpt_dir_or_file: Any, name: str) -> np.ndarray:
    """One tensor's value (read-only, mapped from the file where possible). A variable's
    tensor name works too: ``"scope/v:0"`` reads ``"scope/v"``, as in TF."""
    if name.endswith(":0"):
        name = name[:-2]
    with load_checkpoint(ckpt_dir_or_file) as r:
        return r.get_tensor(name)
