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
import time
from collections.abc import Iterator
from typing import Any

from devices.errors import DataLossError

from ..checkpoint.store import store_for
from ..checkpoint.tf import is_bundle, remove_bundle, write_bundle
from . import checkpoint_state as cs
from . import retention
from .history import History

log = logging.getLogger("varstore")

FORMATS = ("varstore", "tf")


def _values(var_map: dict) -> Iterator[tuple[str, Any]]:
    # Each variable's lock is held while the writer consumes its bytes: a concurrent assign
    # cannot tear one tensor.
    for key in sorted(var_map):
        var = var_map[key]
        with var.storage.lock:
            yield key, var.value()


def save_tf(var_map: dict, path: str, history: History, latest_filename: str | None, write_state: bool) -> None:
    """Write ``var_map``'s values as the TF bundle ``path``, then name it in the state file and
    apply retention (only after the state file no longer names what goes)."""
    write_bundle(path, _values(var_map))
    if write_state:
        _record(path, history, latest_filename)
    log.info("saved %d tensors to the TF bundle %s", len(var_map), path)


def _exists(store: Any, p: str) -> bool:
    return is_bundle(p) or store.is_checkpoint(p)


def _record(path: str, history: History, latest_filename: str | None) -> None:
    store = store_for(path)
    directory = store.parent(path)
    with store.lock(directory):
        try:
            st = cs.get_checkpoint_state(directory, latest_filename)
        except DataLossError as e:  # replaced by this write
            log.warning("ignoring unreadable state file in %s: %s", directory, e)
            st = None
        stamps = {p: t for p, t in history.last if p != path}
        if st is not None:  # what the file lists (other writers, earlier runs) joins this Saver's history
            listed = st.all_model_checkpoint_timestamps
            for i, p in enumerate(st.all_model_checkpoint_paths):
                if p != path and p not in stamps:
                    stamps[p] = listed[i] if listed else (store.mtime(p) or time.time())
            if st.last_preserved_timestamp:
                history.next_keep_time = max(history.next_keep_time,
                                             st.last_preserved_timestamp + history.keep_hours * 3600)
        stamps = {p: t for p, t in stamps.items() if _exists(store, p)}
        kept = retention.plan(sorted(stamps.items(), key=lambda pt: pt[1]) + [(path, time.time())],
                              history.max_to_keep, history.keep_hours, history.next_keep_time)
        cs.update_checkpoint_state(directory, cs.CheckpointState(
            model_checkpoint_path=path, all_model_checkpoint_paths=kept.keep,
            all_model_checkpoint_timestamps=[t for _, t in kept.history],
            last_preserved_timestamp=kept.next_keep_time - history.keep_hours * 3600), latest_filename)
        history.last, history.next_keep_time = kept.history, kept.next_keep_time
        for p in kept.delete:
            if is_bundle(p):
                remove_bundle(p)
            else:  # a varstore checkpoint an earlier Saver wrote into this directory
                store.remove_checkpoint(p)
                store.remove(f"{p}.meta")
