"""Saver: save and restore variables as msgpack checkpoints, with TF 1.x's API.

>>> import os, tempfile, varstore as tf
>>> tf.reset_default_graph()
>>> v1 = tf.Variable(tf.ones([3]), name="v1")
>>> saver = tf.train.Saver()
>>> with tf.Session() as sess:
...     sess.run(tf.global_variables_initializer())
...     path = saver.save(sess, os.path.join(tempfile.mkdtemp(), "model.ckpt"), global_step=10)
>>> os.path.basename(path)
'model.ckpt-10'
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from typing import Any, Union

import numpy as np

from devices.errors import InvalidArgumentError, NotFoundError

from ..checkpoint.store import normalize, store_for
from ..graph import GraphKeys, get_default_graph
from ..partitioned import any_parts
from ..storage import gc_paused
from ..variables import Variable
from . import partitioned_save as _psave
from . import restore as _restore
from . import tf_save as _tf_save
from .history import History
from .save_job import IN_FLIGHT, SaveHandle, SaveJob, _naming

VarList = Union[Iterable[Variable], dict, None]  # noqa: UP007 - a runtime alias


def _var_map(var_list: VarList, allow_empty: bool, graph=None) -> dict:
    if var_list is None:
        var_list = (graph or get_default_graph()).get_collection(GraphKeys.GLOBAL_VARIABLES)
    joined = None
    if any_parts():  # each partitioned variable: one entry, its full value under its full name
        var_list, joined = _psave.split_off(var_list)
    if isinstance(var_list, dict):
        out = {}
        for key, v in var_list.items():
            if not isinstance(key, str) or not isinstance(v, Variable):
                raise InvalidArgumentError(
                    f"Saver: var_list dict maps names (str) to Variables, received {key!r}: {type(v).__name__}")
            out[key] = v
    else:
        out = {}
        for v in var_list:
            if not isinstance(v, Variable):
                raise InvalidArgumentError(f"Saver: var_list holds Variables, received {type(v).__name__}")
            key = v._name  # TF's checkpoint key: the op name ("scope/v", v.op.name)
            if key in out:
                raise ValueError(f"At least two variables have the same name: {key}")
            out[key] = v
    if joined:
        _psave.merge(out, joined)
    if not out and not allow_empty:
        raise InvalidArgumentError("Saver: no variables to save (pass allow_empty=True to allow it)")
    return out


class Saver:
    """Saves and restores a set of variables (all global ones by default).

    ``var_list`` may be a list (keyed by the variables' names) or a dict
    ``{"my_v2": v2}`` choosing the names in the file. A partitioned variable (in the list, as
    a dict value, or as its parts) is saved as one tensor under its full name, and restores
    into any partitioning of its full shape or into a plain variable (``partitioned_save``). A variable may belong
    to several savers. Retention (``max_to_keep``, ``keep_checkpoint_every_n_hours``)
    holds across restarts: the first save into a directory adopts the history in
    its state file, and sweeps what interrupted saves of that prefix left there.

    ``format="tf"`` makes each save a TensorFlow V2 bundle (``P.index`` + ``P.data-*``) that
    TF's own ``Saver.restore`` and ``NewCheckpointReader`` read; no meta file, no async or
    sharded save (``varstore.train.tf_save``). ``restore`` reads either format, whatever
    ``format`` says.
    """

    def __init__(self, var_list: VarList = None, reshape: bool = False, sharded: bool = False,
                 max_to_keep: int | None = 5, keep_checkpoint_every_n_hours: float = 10000.0,
                 name: str | None = None, allow_empty: bool = False, save_relative_paths: bool = True,
                 pad_step_number: bool = False, *, format: str = "varstore", **unused_tf_options: Any):
        # var_list=None follows the graph: variables made later (optimizer slots created at the
        # first step) are saved too. An explicit list or dict is fixed here, as in TF.
        self._graph = get_default_graph()
        self._dynamic = var_list is None
        self._allow_empty = allow_empty
        self._fixed_map = None if self._dynamic else _var_map(var_list, allow_empty)
        if self._dynamic:
            _var_map(None, allow_empty)  # same error as TF when there is nothing to save
        self._sharded = bool(sharded)
        self._pad_step_number = pad_step_number
        if format not in _tf_save.FORMATS:
            raise InvalidArgumentError(f"Saver: format must be one of {_tf_save.FORMATS}, received {format!r}")
        self._format = format  # "tf": each save writes a TensorFlow bundle (train/tf_save.py)
        self._history = History(max_to_keep, keep_checkpoint_every_n_hours)
        self._pending: SaveHandle | None = None
        get_default_graph().add_to_collection(GraphKeys.SAVERS, self)

    # -- properties -------------------------------------------------------------
    @property
    def var_map(self) -> dict:
        """Checkpoint name -> Variable."""
        if not self._dynamic:
            return dict(self._fixed_map)
        return _var_map(None, self._allow_empty, self._graph)

    def describe(self) -> dict:
        """What a meta graph records of this Saver: its name map and retention settings.

        >>> import varstore as tf
        >>> tf.reset_default_graph(); v = tf.Variable(tf.zeros([2]), name="v")
        >>> tf.train.Saver(max_to_keep=3).describe()
        {'var_map': {'v': 'v'}, 'max_to_keep': 3, 'keep_checkpoint_every_n_hours': 10000.0}
        """
        return {"var_map": {k: v.op.name for k, v in self.var_map.items()},
                "max_to_keep": self._history.max_to_keep,
                "keep_checkpoint_every_n_hours": self._history.keep_hours}

    @property
    def last_checkpoints(self) -> list[str]:
        """Retained checkpoint paths, oldest first."""
        return [p for p, _ in self._history.last]

    def set_last_checkpoints_with_time(self, last_checkpoints_with_time: list) -> None:
        self._history.last = [(str(p), float(t)) for p, t in last_checkpoints_with_time]

    def recover_last_checkpoints(self, checkpoint_paths: list) -> None:
        now = time.time()
        self._history.last = [(p, store_for(p).mtime(p) or now) for p in checkpoint_paths
                              if store_for(p).exists(p)]

    # -- save ---------------------------------------------------------------------
    def save(self, sess: Any, save_path: str, global_step: Any = None, latest_filename: str | None = None,
             meta_graph_suffix: str = "meta", write_meta_graph: bool = True, write_state: bool = True,
             *, async_save: bool = False, progress: bool | None = None, **unused_tf_options: Any) -> Any:
        """Write the variables to ``save_path`` (``-<global_step>`` appended) and return the path.

        The checkpoint is durable (fsynced and renamed into place) before the state file
        names it, and old checkpoints are deleted only after that.

        ``async_save=True`` returns at once with a :class:`SaveHandle` (``.done()``,
        ``.result(timeout)``, ``.path``); the file holds the values the variables had at
        the call, whatever steps run meanwhile. That costs one snapshot of every saved
        variable, taken on its own device (a device-side copy on a GPU, a host copy on
        the CPU), held until the write ends. Only one save is in flight per process, so
        at most one snapshot exists: a save called while another runs waits for it. A
        failure in the background is raised by ``.result()`` and again by this Saver's
        next ``save``. Interpreter exit waits for a pending save.

        ``progress``: a progress bar on a terminal for saves over ~2 s (None: automatic).

        ``save_path`` may be an fsspec URL (``s3://bucket/run/model.ckpt``): the checkpoint is
        committed with a marker object before the state file names it (docs/FORMAT.md).
        There, ``sharded=True`` writes one object, and one process should save into a
        directory at a time (an object store has no lock).
        """
        self._raise_pending()
        if not isinstance(save_path, (str, os.PathLike)):
            raise InvalidArgumentError(f"Saver.save: save_path must be a path, received {save_path!r}")
        prefix_path = normalize(save_path)
        path = prefix_path
        if global_step is not None:
            step = _step_value(global_step)
            path = f"{path}-{step:08d}" if self._pad_step_number else f"{path}-{step}"
        store = store_for(path)
        directory = store.parent(path)
        if store.local and not store.is_dir(directory):
            raise NotFoundError(f"Parent directory of {path} doesn't exist, can't save.")
        store.require_directory(path, "saving checkpoint")  # an unknown protocol fails here, before any work
        if self._format == "tf":
            with IN_FLIGHT, _naming(path):
                _tf_save.save_tf(_psave.for_save(self.var_map), path, self._history, latest_filename, write_state)
            return path
        extra = {"global_step": None if global_step is None else _step_value(global_step),
                 "saved_at": time.time()}
        meta = None
        if write_meta_graph:
            from .meta_graph import export_meta_graph
            with gc_paused():  # it builds a dict per variable: no collections walking them all meanwhile
                meta = export_meta_graph(None, saver=self)  # the graph as it is now, even if saved later
        job = SaveJob(_psave.for_save(self.var_map), path, extra, meta, self._history, latest_filename, meta_graph_suffix,
                      write_state, progress, self._sharded)
        prefix = os.path.basename(prefix_path.rstrip("/"))

        def prepare() -> None:
            self._history.prepare(directory, latest_filename, prefix, meta_graph_suffix)

        if not async_save:
            with IN_FLIGHT, _naming(path):
                prepare()
                job.run()
            return path
        IN_FLIGHT.acquire()  # released by the writer thread: one snapshot in memory at a time
        try:
            with _naming(path):
                prepare()
            snapshot = job.snapshot()
        except BaseException:
            IN_FLIGHT.release()
            raise
        handle = SaveHandle(path)
        self._pending = handle

        def run() -> None:
            try:
                with _naming(path):
                    job.run(snapshot)
            except BaseException as e:  # kept for .result() and the next save
                handle._error = e
            finally:
                snapshot.clear()
                IN_FLIGHT.release()
                handle._done.set()

        threading.Thread(target=run, name=f"varstore-save {os.path.basename(path)}", daemon=False).start()
        return handle

    def _raise_pending(self) -> None:
        """Wait for this Saver's background save; raise its failure (once) if it failed."""
        handle, self._pending = self._pending, None
        if handle is not None:
            handle._done.wait()
            if handle._error is not None:
                raise handle._error

    def wait(self) -> None:
        """Block until this Saver's background save (if any) is done; raise its failure."""
        self._raise_pending()

    # -- restore ----------------------------------------------------------------------
    def restore(self, sess: Any, save_path: str | None, *, device: Any = None) -> None:
        """Load the variables from ``save_path``; they need no initializer first.

        Every name, shape and dtype is checked before any variable changes. If
        loading still fails part-way (a corrupt tensor), every variable touched is
        left uninitialized, never half-written and usable.

        A sharded checkpoint's shards are followed. Variables on ps tasks are loaded by
        their tasks, all tasks in parallel, whatever task count saved the checkpoint
        (from a URL this process reads them and sends them: only it needs the store's
        credentials, and ``memory://`` lives in this process only).
        ``device`` (e.g. ``"/job:ps/task:1"``) restores only the variables placed on
        devices matching it: after a ps task restarted, that brings back what it lost.
        """
        with _psave.restoring(self.var_map) as var_map:  # partitioned variables: split after reading
            _restore.restore(var_map, save_path, device)

    # -- meta graph --------------------------------------------------------------------
    def export_meta_graph(self, filename: str | None = None, clear_devices: bool = False, **kwargs: Any) -> dict:
        from .meta_graph import export_meta_graph
        return export_meta_graph(filename, clear_devices=clear_devices, saver=self)


def _step_value(global_step: Any) -> int:
    if isinstance(global_step, Variable):
        global_step = global_step.numpy()
    try:
        return int(np.asarray(global_step).item())
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"global_step must be an integer or a Variable, received {global_step!r}") from None
