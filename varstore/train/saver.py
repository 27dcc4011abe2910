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

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, Union

import numpy as np

from devices.dtypes import bfloat16, is_floating
from devices.errors import DataLossError, InvalidArgumentError, NotFoundError, OpError
from devices.spec import DeviceSpec

from ..checkpoint import CheckpointReader, remote, write_checkpoint
from ..checkpoint import shards as _shards
from ..checkpoint.format import temp_name, temp_target
from ..graph import GraphKeys, get_default_graph
from ..variables import Variable
from . import checkpoint_state as cs

log = logging.getLogger("varstore")

# Bytes of remote (ps task) variables fetched ahead of the writer while saving.
GATHER_AHEAD_BYTES = 256 << 20
# One save writes at a time in this process: an async save's snapshot is the only extra copy.
_IN_FLIGHT = threading.Lock()


class SaveHandle:
    """The handle ``save(..., async_save=True)`` returns. ``sess.run(handle)`` waits and gives the path."""

    def __init__(self, path: str):
        self.path = path
        self._done = threading.Event()
        self._error: BaseException | None = None

    def done(self) -> bool:
        """True once the checkpoint is durable (or the save failed)."""
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> str:
        """Wait (up to ``timeout`` seconds) and return the path; raise the save's error if it failed."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"save to {self.path} still running after {timeout} s")
        if self._error is not None:
            raise self._error
        return self.path

    def _fetch(self, session: Any) -> str:
        return self.result()

    def __repr__(self) -> str:
        state = "done" if self.done() else "running"
        return f"<SaveHandle {self.path} {state}{' FAILED' if self._error else ''}>"


def _counted(values: Iterator[tuple[str, Any]], bar: Any) -> Iterator[tuple[str, Any]]:
    """Pass (name, array) pairs through, counting each one's bytes once the writer is done with it."""
    for key, array in values:
        yield key, array
        bar.update(int(getattr(array, "nbytes", 0)))

VarList = Union[Iterable[Variable], dict, None]  # noqa: UP007 - a runtime alias


def exact_cast_allowed(src: np.dtype, dst: np.dtype) -> bool:
    """Restore casts allowed implicitly: those that keep every value exactly.

    Same dtype; a wider float (float16/bfloat16 -> float32 -> float64); an int or
    uint into a wider int, or into a float whose mantissa holds every value of it
    (int16 -> float32, int32 -> float64; never int64 -> float64).
    Never narrowing, never float -> int, never float16 <-> bfloat16.
    """
    src, dst = np.dtype(src), np.dtype(dst)
    if src == dst:
        return True
    if src == bfloat16 or dst == bfloat16:
        return src == bfloat16 and dst in (np.float32, np.float64)
    if src.kind in "iu" and dst.kind == "f":
        # numpy calls int64 -> float64 "safe", but 2**53 + 1 does not survive it.
        magnitude_bits = src.itemsize * 8 - (src.kind == "i")
        return magnitude_bits <= np.finfo(dst).nmant + 1
    return bool(np.can_cast(src, dst, "safe")) and not (is_floating(src) and not is_floating(dst))


def _var_map(var_list: VarList, allow_empty: bool, graph=None) -> dict:
    if var_list is None:
        var_list = (graph or get_default_graph()).get_collection(GraphKeys.GLOBAL_VARIABLES)
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
            if v.name in out and out[v.name] is not v:
                raise InvalidArgumentError(f"Saver: two variables are named {v.name!r}")
            out[v.name] = v
    if not out and not allow_empty:
        raise InvalidArgumentError("Saver: no variables to save (pass allow_empty=True to allow it)")
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Saver:
    """Saves and restores a set of variables (all global ones by default).

    ``var_list`` may be a list (keyed by the variables' names) or a dict
    ``{"my_v2": v2}`` choosing the names in the file. A variable may belong
    to several savers. Retention (``max_to_keep``, ``keep_checkpoint_every_n_hours``)
    holds across restarts: the first save into a directory adopts the history in
    its state file.
    """

    def __init__(self, var_list: VarList = None, reshape: bool = False, sharded: bool = False,
                 max_to_keep: int | None = 5, keep_checkpoint_every_n_hours: float = 10000.0,
                 name: str | None = None, allow_empty: bool = False, save_relative_paths: bool = True,
                 pad_step_number: bool = False, **unused_tf_options: Any):
        # var_list=None follows the graph: variables made later (optimizer slots created at the
        # first step) are saved too. An explicit list or dict is fixed here, as in TF.
        self._graph = get_default_graph()
        self._dynamic = var_list is None
        self._allow_empty = allow_empty
        self._fixed_map = None if self._dynamic else _var_map(var_list, allow_empty)
        if self._dynamic:
            _var_map(None, allow_empty)  # same error as TF when there is nothing to save
        self._max_to_keep = max_to_keep
        self._keep_hours = float(keep_checkpoint_every_n_hours)
        self._sharded = bool(sharded)
        self._save_relative_paths = save_relative_paths
        self._pad_step_number = pad_step_number
        self._last: list[tuple[str, float]] = []  # (path, timestamp), oldest first
        self._next_keep_time = time.time() + self._keep_hours * 3600
        self._prepared_dirs: set[str] = set()
        # State file -> {path: timestamp} it listed when this Saver last read or wrote it:
        # what is new there since then was recorded by another writer.
        self._seen: dict[str, dict[str, float | None]] = {}
        # Path -> (device, inode) of the checkpoint and of its meta file when recorded: another
        # writer may replace a file of the same name, and retention must not delete that one.
        self._ids: dict[str, tuple[tuple[int, int] | None, tuple[int, int] | None]] = {}
        self._pending: SaveHandle | None = None
        get_default_graph().add_to_collection(GraphKeys.SAVERS, self)

    # -- properties -------------------------------------------------------------
    @property
    def _var_map(self) -> dict:
        if not self._dynamic:
            return self._fixed_map
        return _var_map(None, self._allow_empty, self._graph)

    @property
    def var_map(self) -> dict:
        """Checkpoint name -> Variable."""
        return dict(self._var_map)

    @property
    def last_checkpoints(self) -> list[str]:
        """Retained checkpoint paths, oldest first."""
        return [p for p, _ in self._last]

    def set_last_checkpoints_with_time(self, last_checkpoints_with_time: list) -> None:
        self._last = [(str(p), float(t)) for p, t in last_checkpoints_with_time]

    def recover_last_checkpoints(self, checkpoint_paths: list) -> None:
        now = time.time()
        self._last = [(p, _mtime(p) or now) for p in checkpoint_paths if remote.present(p)]

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
        path = remote.local_path(os.fspath(save_path))
        if global_step is not None:
            step = _step_value(global_step)
            path = f"{path}-{step:08d}" if self._pad_step_number else f"{path}-{step}"
        directory = remote.parent(path)
        if remote.is_url(path):
            remote.filesystem(path, "saving checkpoint")  # an unknown protocol fails here, before any work
        elif not os.path.isdir(directory):
            raise NotFoundError(f"Parent directory of {path} doesn't exist, can't save.")
        extra = {"global_step": None if global_step is None else _step_value(global_step),
                 "saved_at": time.time()}
        meta = None
        if write_meta_graph:
            from .meta_graph import export_meta_graph
            meta = export_meta_graph(None, saver=self)  # the graph as it is now, even if saved later
        args = (path, directory, extra, meta, latest_filename, meta_graph_suffix, write_state, progress)
        if not async_save:
            with _IN_FLIGHT, _naming(path):
                self._prepare_dir(directory, latest_filename)
                self._write(None, *args)
            return path
        _IN_FLIGHT.acquire()  # released by the writer thread: one snapshot in memory at a time
        try:
            with _naming(path):
                self._prepare_dir(directory, latest_filename)
            snapshot = self._snapshot()
        except BaseException:
            _IN_FLIGHT.release()
            raise
        handle = SaveHandle(path)
        self._pending = handle

        def run() -> None:
            try:
                with _naming(path):
                    self._write(snapshot, *args)
            except BaseException as e:  # kept for .result() and the next save
                handle._error = e
            finally:
                snapshot.clear()
                _IN_FLIGHT.release()
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

    def _snapshot(self) -> list:
        """(key, copy) of every saved variable, each copied on its own device under its lock."""
        var_map = self._var_map
        out = []
        for key in sorted(var_map):
            var = var_map[key]
            with var.storage.lock:
                out.append((key, var.device_object.snapshot(var.storage.require())))
        return out

    def _write(self, snapshot: list | None, path: str, directory: str, extra: dict, meta: dict | None,
               latest_filename: str | None, suffix: str, write_state: bool, progress: bool | None) -> None:
        from ..progress import Progress
        keys, pending = (sorted(self._var_map), []) if snapshot is None else ([k for k, _ in snapshot], [])
        sharded = self._sharded and snapshot is None and not remote.is_url(path)
        if sharded:
            keys, pending = self._start_shards(path, keys, extra)
        values = self._locked_values(keys, pending) if snapshot is None else iter(snapshot)
        total = sum(int(getattr(a, "nbytes", 0)) for _, a in snapshot) if snapshot is not None else \
            sum(int(np.prod(self._var_map[k].shape)) * self._var_map[k].dtype.itemsize for k in keys)
        meta_path = f"{path}.{suffix}"
        before, meta_before = _file_id(path), _file_id(meta_path)
        # (device, inode) of the files this save wrote, from their own descriptors: another
        # process may rename a file to the same name at any moment after ours.
        ckpt_stat: list = []
        meta_stat: list = []
        committed = False
        try:
            with Progress(total, f"save {os.path.basename(path)}", enabled=progress) as bar:
                try:
                    write_checkpoint(path, _counted(values, bar), extra=extra, stat_out=ckpt_stat)
                    committed = True
                finally:
                    if hasattr(values, "close"):
                        values.close()  # a failed write: wait for the shards in flight and remove them now
            if sharded:
                _shards.remove_shards(path, keep=[s["file"] for s in extra.get(_shards.SHARDS_KEY, [])])
            if meta is not None:
                from .meta_graph import write_meta_graph
                write_meta_graph(meta_path, meta, stat_out=meta_stat)
            if write_state:
                self._record(path, directory, latest_filename, suffix, (_stat_id(ckpt_stat), _stat_id(meta_stat)))
        except BaseException:
            if remote.is_url(path):  # no inodes there: what this save committed, it removes
                if committed:
                    _discard_unrecorded(path, directory, latest_filename, suffix, None, None)
                raise
            now = _file_id(path)
            if now is not None and now != before:  # our checkpoint was renamed into place, then something failed
                meta_now = _file_id(meta_path) if meta is not None else None
                meta_id = _stat_id(meta_stat) or (meta_now if meta_now != meta_before else None)
                _discard_unrecorded(path, directory, latest_filename, suffix, _stat_id(ckpt_stat) or now, meta_id)
            raise
        log.info("saved %d tensors to %s", len(keys), path)

    def _start_shards(self, path: str, keys: list, extra: dict) -> tuple[list, list]:
        """Start each ps task writing its variables to its own shard beside ``path``, in
        parallel; list the shards in ``extra``. Returns the keys left for the main file and
        the (shard path, wait) pairs."""
        var_map = self._var_map
        groups: dict[Any, list] = {}
        for key in keys:
            dev = var_map[key].device_object
            if getattr(dev, "write_shard", None) is not None:
                groups.setdefault(dev, []).append(key)
        if not groups:
            extra[_shards.SHARDS_KEY] = []
            return keys, []
        devs = sorted(groups, key=lambda d: d.name)
        # Every value is checked before any task starts writing (an uninitialized one names itself).
        entries = {d: [(k, var_map[k].storage.require()) for k in groups[d]] for d in devs}
        save_id = os.urandom(4).hex()
        base, directory = os.path.basename(path), os.path.dirname(os.path.abspath(path))
        listing, pending = [], []
        try:
            for i, dev in enumerate(devs):
                name = _shards.shard_file_name(base, i, len(devs), save_id)
                shard_path = os.path.join(directory, name)
                shard_extra = {"shard_of": base, "save_id": save_id, "shard": i, "num_shards": len(devs),
                               "device": dev.name}
                pending.append((shard_path, dev.write_shard(shard_path, entries[dev], shard_extra,
                                                            write_checkpoint)))
                listing.append({"file": name, "device": dev.name, "tensors": len(entries[dev])})
        except BaseException:
            _finish_shards(pending, failed=True)
            raise
        extra.update({_shards.SHARDS_KEY: listing, "save_id": save_id})
        sharded = {k for d in devs for k in groups[d]}
        return [k for k in keys if k not in sharded], pending

    def _locked_values(self, keys: list | None = None, pending: list = ()) -> Iterator[tuple[str, Any]]:
        # Each variable's lock is held while the writer consumes its bytes, so a
        # concurrent assign cannot tear one tensor. Variables on ps tasks are fetched
        # ahead, from all tasks at once (a fetch is a snapshot taken by the task).
        # The shards being written in parallel are waited for last, before the main
        # file (which names them) is committed.
        var_map = self._var_map
        keys = sorted(var_map) if keys is None else keys
        ok = False
        try:
            fetches: dict[int, Any] = {}
            ahead, j = 0, 0
            for i, key in enumerate(keys):
                while j < len(keys) and (j <= i or ahead < GATHER_AHEAD_BYTES):
                    var = var_map[keys[j]]
                    start = getattr(var.device_object, "start_read", None)
                    if start is not None:
                        with var.storage.lock:
                            value = var.storage.require()
                        fetches[j] = (start(value), value.nbytes)
                        ahead += value.nbytes
                    j += 1
                if i in fetches:
                    wait, nbytes = fetches.pop(i)
                    ahead -= nbytes
                    yield key, wait()
                    continue
                var = var_map[key]
                with var.storage.lock:
                    yield key, var.value()
            _finish_shards(pending, failed=False)
            ok = True
        finally:
            if not ok:
                _finish_shards(pending, failed=True)

    def _prepare_dir(self, directory: str, latest_filename: str | None) -> None:
        """First save into a directory: adopt its history and remove stale temp files."""
        if directory in self._prepared_dirs:
            return
        self._prepared_dirs.add(directory)
        if remote.is_url(directory):
            _sweep_remote(directory)
        for name in [] if remote.is_url(directory) else os.listdir(directory):
            t = temp_target(name)
            if t is not None and not _pid_alive(t[1]):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(directory, name))
                    log.info("removed stale temporary file %s", name)
        try:
            st = cs.get_checkpoint_state(directory, latest_filename)
        except DataLossError as e:  # a corrupt state file is replaced by our next write
            log.warning("ignoring unreadable state file in %s: %s", directory, e)
            st = None
        except BaseException:
            self._prepared_dirs.discard(directory)  # a store that failed (no credentials): try again next time
            raise
        if st is None:
            return
        self._seen[remote.join(directory, latest_filename or cs.STATE_FILENAME)] = dict(_listed(st))
        known = {p for p, _ in self._last}
        ts = st.all_model_checkpoint_timestamps
        for i, p in enumerate(st.all_model_checkpoint_paths):
            if p not in known and remote.present(p):
                self._last.append((p, ts[i] if ts else (_mtime(p) or time.time())))
        self._last.sort(key=lambda pt: pt[1])
        if st.last_preserved_timestamp:
            self._next_keep_time = st.last_preserved_timestamp + self._keep_hours * 3600

    def _record(self, path: str, directory: str, latest_filename: str | None, suffix: str,
                ids: tuple = (None, None)) -> None:
        """Name ``path`` (durable by now) in the state file as the latest, apply retention.

        Under the directory's lock: read the state file and merge what another process
        recorded since this Saver last looked (two writers share one history and one
        ``max_to_keep``; neither drops the other's checkpoints from the file), write the
        new state, and only then delete what retention dropped, so that the state file
        never names a deleted checkpoint. This Saver's history changes only once the
        state file is written.

        ``ids`` are the (device, inode) of the checkpoint and meta file this save wrote:
        retention deletes a file only while it is still the one recorded (another writer
        may have saved the same path since).
        """
        state_key = remote.join(directory, latest_filename or cs.STATE_FILENAME)
        with cs.directory_lock(directory):
            if not remote.present(path):
                # Another process saved the same name over ours and its retention has deleted that
                # since: newer checkpoints are in the directory. Nothing to name; the state stays.
                log.warning("not recording %s: another process saving into %s replaced it with its own "
                            "save of that name, and deleted it since (retention)", path, directory)
                if ids[1] is not None:
                    _remove_if(f"{path}.{suffix}", ids[1])
                return
            stamps = {p: t for p, t in self._last if p != path and remote.present(p)}
            try:
                st = cs.get_checkpoint_state(directory, latest_filename)
            except DataLossError as e:  # a corrupt state file is replaced below (a store that failed is raised)
                log.warning("ignoring unreadable state file in %s: %s", directory, e)
                st = None
            if st is not None:
                seen = self._seen.get(state_key, {})
                for p, t in _listed(st):
                    if p == path or (p in seen and seen[p] == t):
                        continue  # ours, or listed when we last looked
                    if p in stamps:  # saved again by another writer: its newer record wins
                        if t is not None and t > stamps[p]:
                            stamps[p] = t
                            self._ids.pop(p, None)
                    elif remote.present(p):  # recorded by another writer
                        t = t if t is not None else _mtime(p)
                        if t is not None:
                            stamps[p] = t
            history = sorted(stamps.items(), key=lambda pt: pt[1])
            history.append((path, time.time()))
            self._ids[path] = ids if ids[0] is not None else (_file_id(path), _file_id(f"{path}.{suffix}"))
            for p, _ in history:  # which files these are: retention deletes only those
                if p not in self._ids:
                    self._ids[p] = (_file_id(p), _file_id(f"{p}.{suffix}"))
            next_keep = self._next_keep_time
            doomed = []
            if self._max_to_keep:
                while len(history) > self._max_to_keep:
                    p, t = history.pop(0)
                    if t > next_keep:
                        next_keep += self._keep_hours * 3600  # preserved forever
                    else:
                        doomed.append(p)
            state = cs.CheckpointState(
                model_checkpoint_path=path,
                all_model_checkpoint_paths=[p for p, _ in history],
                all_model_checkpoint_timestamps=[t for _, t in history],
                last_preserved_timestamp=next_keep - self._keep_hours * 3600)
            cs.update_checkpoint_state(directory, state, latest_filename)
            self._last, self._next_keep_time = history, next_keep
            self._seen[state_key] = dict(history)
            # Only now that the state file no longer names them may old checkpoints go.
            for p in doomed:
                ckpt_id, meta_id = self._ids.pop(p, (None, None))
                try:
                    _remove_checkpoint(p, ckpt_id)
                    _remove_if(f"{p}.{suffix}", meta_id)
                except OpError as e:  # a store that failed: this save is recorded; the next retires it
                    log.warning("saved %s, but deleting %s (retention) failed: %s", path, p, e)
            live = {p for p, _ in history}
            for p in [p for p in self._ids if p not in live]:
                del self._ids[p]

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
        if save_path is None:
            raise InvalidArgumentError("Can't load save_path when it is None.")
        path = remote.local_path(os.fspath(save_path))
        if not remote.is_url(path) and not os.path.isfile(path):  # a URL's reader says what is there
            hint = " (it is a directory: use tf.train.latest_checkpoint(dir))" if os.path.isdir(path) else ""
            raise NotFoundError(f"Failed to find a checkpoint at {path}{hint}")
        with _shards.CheckpointSet(path) as reader:
            plan = self._plan(reader)
            if device is not None:
                plan = [(k, v) for k, v in plan if _on_device(v, device)]
            # Variables created later in these graphs (optimizer slots) restore from here too.
            for g in {id(v.graph): v.graph for _, v in plan}.values():
                g._last_restore = path
            touched: list[Variable] = []
            try:
                by_task: dict[Any, list] = {}
                for key, var in plan:
                    if _task_loader(var.device_object, path) is not None:
                        by_task.setdefault(var.device_object, []).append((key, var))
                waits = []
                for dev, items in by_task.items():  # every task starts loading now
                    touched += [v for _, v in items]
                    waits.append((items, dev.load_tensors(
                        [(v.storage.array, reader.file_of(k), k, reader.shape(k), v.dtype) for k, v in items],
                        _shards.load_arrays)))
                for key, var in plan:
                    if _task_loader(var.device_object, path) is None:
                        touched.append(var)
                        _restore_one(reader, key, var)
                for items, wait in waits:
                    for (_, var), array in zip(items, wait()):
                        if array is not var.storage.array:
                            var.storage.adopt(array)
            except BaseException:
                for v in touched:
                    v.storage.forget()
                raise
        log.info("restored %d variables from %s", len(plan), path)

    def _plan(self, reader: CheckpointReader) -> list[tuple[str, Variable]]:
        plan = []
        var_map = self._var_map
        for key in sorted(var_map):
            var = var_map[key]
            if not reader.has_tensor(key):
                reader.shape(key)  # raises NotFoundError naming the key and the closest names
            shape, dtype = tuple(reader.shape(key)), reader.dtype(key)
            if shape != var.shape and var.validate_shape:
                raise InvalidArgumentError(
                    f"Restoring {var.name} from {reader.path}: tensor {key!r} has shape {shape}, "
                    f"the variable has shape {var.shape}")
            if not exact_cast_allowed(dtype, var.dtype):
                raise InvalidArgumentError(
                    f"Restoring {var.name} from {reader.path}: tensor {key!r} has dtype {dtype.name}, "
                    f"the variable has dtype {var.dtype.name} (only exact widening casts are implicit)")
            plan.append((key, var))
        return plan

    # -- meta graph --------------------------------------------------------------------
    def export_meta_graph(self, filename: str | None = None, clear_devices: bool = False, **kwargs: Any) -> dict:
        from .meta_graph import export_meta_graph
        return export_meta_graph(filename, clear_devices=clear_devices, saver=self)


@contextlib.contextmanager
def _naming(path: str) -> Iterator[None]:
    """Errors of a save to a URL name that URL, even when the state file beside it failed."""
    try:
        yield
    except OpError as e:
        if not remote.is_url(path) or path in e.message:
            raise
        raise type(e)(f"saving {path}: {e.message}") from None


def _task_loader(dev: Any, path: str) -> Any:
    """The device's own loader (a ps task reads the file itself), or None: this process reads."""
    return None if remote.is_url(path) else getattr(dev, "load_tensors", None)


def _restore_one(reader: Any, key: str, var: Variable) -> None:
    dev = var.device_object
    shape, dtype = tuple(reader.shape(key)), reader.dtype(key)
    load = _task_loader(dev, reader.path)
    if load is not None:  # a remote device reads the file itself
        file_of = getattr(reader, "file_of", None)
        with var.storage.lock:
            [array] = load([(var.storage.array, file_of(key) if file_of else reader.path, key, shape, var.dtype)],
                           _shards.load_arrays)()
            if array is not var.storage.array:
                var.storage.adopt(array)
        return
    with var.storage.lock:
        cur = var.storage.array
        if (dev.kind == "cpu" and cur is not None and cur.shape == shape and cur.dtype == dtype
                and cur.flags.c_contiguous and cur.flags.writeable):
            reader.read_into(key, cur)  # into the existing buffer: no allocation, no page faults
            return
        if dev.kind == "cpu":
            fresh = dev.empty(shape, dtype)
            reader.read_into(key, fresh)
            if dtype != var.dtype:
                fresh = dev.asarray(fresh, dtype=var.dtype, copy=True)
        else:
            fresh = dev.asarray(reader.get_tensor(key), dtype=var.dtype, copy=True)
        if cur is not None and cur.shape == shape and cur.dtype == var.dtype:
            dev.copy_into(cur, fresh)
        else:
            var.storage.adopt(fresh)


def _file_id(path: str) -> tuple[int, int] | None:
    """(device, inode) of ``path``, None when absent or at a URL: tells whether a rename replaced it."""
    if remote.is_url(path):
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _stat_id(stats: list) -> tuple[int, int] | None:
    """(device, inode) of the os.stat_result a writer put in ``stats``, None if none."""
    return (stats[0].st_dev, stats[0].st_ino) if stats else None


def _mtime(path: str) -> float | None:
    if remote.is_url(path):
        return remote.mtime(path)
    try:
        return os.path.getmtime(path)
    except OSError:
        return None


def _listed(st: cs.CheckpointState) -> list[tuple[str, float | None]]:
    """(path, timestamp or None) of every checkpoint a state file lists."""
    ts = st.all_model_checkpoint_timestamps
    return [(p, ts[i] if ts else None) for i, p in enumerate(st.all_model_checkpoint_paths)]


def _remove_if(path: str, file_id: tuple[int, int] | None) -> bool:
    """Delete ``path`` if it is still the file ``file_id`` (None: whatever is there).

    Another process may rename a new file of the same name into place at any moment,
    so the file is first moved aside (atomically) and checked there; a file that
    turns out not to be ours is linked back, unless an even newer one has landed.
    Returns True when something was deleted.
    """
    if remote.is_url(path):
        return remote.remove(path)
    if file_id is None:
        try:
            os.unlink(path)
            return True
        except FileNotFoundError:
            return False
    aside = os.path.join(os.path.dirname(path), temp_name(os.path.basename(path)))
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    try:
        if _file_id(aside) != file_id:
            try:
                os.link(aside, path)  # never replaces: a newer file at path stays
            except FileExistsError:
                pass
            except OSError:  # no hard links here: put it back the plain way
                os.rename(aside, path)
                return False
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(aside)


# A save's data object at a URL that no commit names and that nobody has written to for this
# long was left by a killed or failed save (remote directories have one writer at a time).
STALE_REMOTE_SECONDS = 3600.0


def _sweep_remote(directory: str) -> None:
    """Delete what killed or failed saves left in a remote directory (never a committed
    checkpoint's data, never anything written in the last hour)."""
    try:
        for url in remote.stale_data(directory, STALE_REMOTE_SECONDS):
            remote.remove(url)
            log.info("removed %s: data of a save that was never committed", url)
    except OpError as e:  # no permission to list, say: saving needs none
        log.warning("could not look for what interrupted saves left in %s: %s", directory, e)


def _remove_checkpoint(path: str, file_id: tuple[int, int] | None) -> None:
    """Delete a checkpoint retention or a failed save dropped: at a URL its commit marker
    first, then its data; locally the file (if still ``file_id``) and its shards."""
    if remote.is_url(path):
        remote.remove_checkpoint(path)
    elif _remove_if(path, file_id):
        _shards.remove_shards(path)


def _discard_unrecorded(path: str, directory: str, latest_filename: str | None, suffix: str,
                        ckpt_id: tuple[int, int] | None, meta_id: tuple[int, int] | None) -> None:
    """A save failed after its checkpoint was renamed into place (syncing the directory,
    writing the meta file or the state file failed): remove the checkpoint, and its meta
    file and shards if this save wrote them, so that a failed save leaves nothing behind
    (on a full disk above all), unless the state file names it (it was replaced, then
    syncing the directory failed; or another writer saved the same path)."""
    try:
        with cs.directory_lock(directory):
            st = cs.get_checkpoint_state(directory, latest_filename)
            if st is not None and path in [st.model_checkpoint_path] + st.all_model_checkpoint_paths:
                return
            _remove_checkpoint(path, ckpt_id)
            if meta_id is not None or remote.is_url(path):
                _remove_if(f"{path}.{suffix}", meta_id)
    except Exception as e:  # noqa: BLE001 - the save's own error is the one to raise
        log.warning("could not remove %s after a failed save: %s", path, e)


def _finish_shards(pending: list, failed: bool) -> None:
    """Wait for the shard writes in flight; on failure (ours or theirs) remove every shard."""
    first: BaseException | None = None
    for _, wait in pending:
        try:
            wait()
        except BaseException as e:  # noqa: BLE001 - every write must end before files are removed
            first = first or e
    if failed or first is not None:
        for shard_path, _ in pending:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(shard_path)
        if first is not None and not failed:
            raise first


def _on_device(var: Variable, device: Any) -> bool:
    """True when every field set in ``device`` matches where ``var`` lives."""
    want, have = DeviceSpec.from_string(device), DeviceSpec.from_string(var.device)
    return all(getattr(want, f) is None or getattr(want, f) == getattr(have, f)
               for f in ("job", "replica", "task", "device_type", "device_index"))


def _step_value(global_step: Any) -> int:
    if isinstance(global_step, Variable):
        global_step = global_step.numpy()
    try:
        return int(np.asarray(global_step).item())
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"global_step must be an integer or a Variable, received {global_step!r}") from None
