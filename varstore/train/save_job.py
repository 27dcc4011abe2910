"""One save: the variables (or a snapshot of them) to a checkpoint, its meta file, the state file.

``Saver.save`` builds a :class:`SaveJob` and runs it, in the caller's thread or
(``async_save=True``) in a writer thread over a snapshot. A job writes the
checkpoint (durable before anything names it), then the meta file, then records
it in the directory's history; a failure after the checkpoint landed removes
what this save wrote, so a failed save leaves nothing behind.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate, groupby
from operator import attrgetter
from typing import Any

import numpy as np

from devices.errors import OpError

from ..checkpoint import shards as _shards
from ..checkpoint import write_checkpoint
from ..checkpoint.store import FileId, store_for
from ..checkpoint.writer import RUN_BYTES, RUN_TENSOR_BYTES, RUN_TENSORS, TensorRun
from ..storage import Storage, gc_paused, holding
from .history import History

log = logging.getLogger("varstore")

# Bytes of remote (ps task) variables fetched ahead of the writer while saving.
GATHER_AHEAD_BYTES = 256 << 20
# One save writes at a time in this process: an async save's snapshot is the only extra copy.
IN_FLIGHT = threading.Lock()


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




class SaveJob:
    """Everything one save needs, fixed when ``save`` is called."""

    def __init__(self, var_map: dict, path: str, extra: dict, meta: dict | None, history: History,
                 latest_filename: str | None, suffix: str, write_state: bool, progress: bool | None,
                 sharded: bool):
        self.var_map, self.path, self.extra, self.meta = var_map, path, extra, meta
        self.history, self.latest_filename, self.suffix = history, latest_filename, suffix
        self.write_state, self.progress, self.sharded = write_state, progress, sharded
        self.store = store_for(path)
        self.directory = self.store.parent(path)

    def snapshot(self) -> list:
        """(key, copy) of every saved variable, each copied on its own device under its lock."""
        out = []
        for key in sorted(self.var_map):
            var = self.var_map[key]
            with var.storage.lock:
                out.append((key, var.device_object.snapshot(var.storage.require())))
        return out

    def run(self, snapshot: list | None = None) -> None:
        """Write the checkpoint (from ``snapshot`` if given, else the live values under their
        locks), its meta file, and record it."""
        with gc_paused():  # the checkpoint's and the meta graph's columns: see storage.gc_paused
            self._run(snapshot)

    def _run(self, snapshot: list | None) -> None:
        from ..progress import Progress, progress_shown
        path, store, var_map, extra = self.path, self.store, self.var_map, self.extra
        keys, pending = (sorted(var_map), []) if snapshot is None else ([k for k, _ in snapshot], [])
        sharded = self.sharded and snapshot is None and store.local
        if sharded:
            keys, pending = _start_shards(var_map, path, keys, extra)
        values = _locked_values(var_map, keys, pending) if snapshot is None else snapshot
        total = 0
        if progress_shown(self.progress):  # the bar needs the total; nothing else does
            total = sum(int(getattr(a, "nbytes", 0)) for _, a in snapshot) if snapshot is not None else \
                sum(_nbytes(var_map[k]) for k in keys)
        meta_path = f"{path}.{self.suffix}"
        before, meta_before = store.file_id(path), store.file_id(meta_path)
        # (device, inode) of the files this save wrote, from their own descriptors: another
        # process may rename a file to the same name at any moment after ours.
        ckpt_stat: list = []
        meta_stat: list = []
        committed = False
        try:
            with Progress(total, f"save {os.path.basename(path)}", enabled=self.progress) as bar:
                try:
                    write_checkpoint(path, _counted(values, bar) if total else values, extra=extra,
                                     stat_out=ckpt_stat)
                    committed = True
                finally:
                    if hasattr(values, "close"):
                        values.close()  # a failed write: wait for the shards in flight and remove them now
            if sharded:
                _shards.remove_shards(path, keep=[s["file"] for s in extra.get(_shards.SHARDS_KEY, [])])
            if self.meta is not None:
                from .meta_graph import write_meta_graph
                write_meta_graph(meta_path, self.meta, stat_out=meta_stat)
            if self.write_state:
                self.history.record(path, self.directory, self.latest_filename, self.suffix,
                                    (_stat_id(ckpt_stat), _stat_id(meta_stat)))
        except BaseException:
            if not store.local:  # no inodes there: what this save committed, it removes
                if committed:
                    self.history.discard_unrecorded(path, self.directory, self.latest_filename, self.suffix,
                                                    None, None)
                raise
            now = store.file_id(path)
            if now is not None and now != before:  # our checkpoint was renamed into place, then something failed
                meta_now = store.file_id(meta_path) if self.meta is not None else None
                meta_id = _stat_id(meta_stat) or (meta_now if meta_now != meta_before else None)
                self.history.discard_unrecorded(path, self.directory, self.latest_filename, self.suffix,
                                                _stat_id(ckpt_stat) or now, meta_id)
            raise
        log.info("saved %d tensors to %s", len(keys), path)


def _nbytes(var: Any) -> int:
    n = var.dtype.itemsize
    for d in var.shape:
        n *= int(d)
    return n


def _counted(values: Iterator[Any], bar: Any) -> Iterator[Any]:
    """Pass the writer's items through, counting their bytes once the writer is done with each."""
    for item in values:
        yield item
        arrays = item.arrays if type(item) is TensorRun else (item[1],)
        bar.update(sum(int(getattr(a, "nbytes", 0)) for a in arrays))


def _stat_id(stats: list) -> FileId | None:
    """(device, inode) of the os.stat_result a writer put in ``stats``, None if none."""
    return (stats[0].st_dev, stats[0].st_ino) if stats else None


def _start_shards(var_map: dict, path: str, keys: list, extra: dict) -> tuple[list, list]:
    """Start each ps task writing its variables to its own shard beside ``path``, in
    parallel; list the shards in ``extra``. Returns the keys left for the main file and
    the (shard path, wait) pairs."""
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


RUN, LOCAL, REMOTE = 0, 1, 2  # what _segments yields
_device_of, _storage_of, _array_of = attrgetter("device_object"), attrgetter("storage"), attrgetter("array")
_nbytes_of, _lock_of = attrgetter("nbytes"), attrgetter("lock")


def _segments(arrays: list, remote: list | None) -> Iterator[tuple[int, int, int]]:
    """(kind, start, end) over ``arrays`` in order: RUN (consecutive small host arrays or
    uninitialized ones, cut at RUN_TENSORS and RUN_BYTES), LOCAL (one other local array),
    REMOTE (one variable on a ps task)."""
    if remote is None and set(map(type, arrays)) == {np.ndarray}:
        sizes = list(map(_nbytes_of, arrays))
        kinds = [RUN] * len(arrays) if max(sizes) < RUN_TENSOR_BYTES else \
            [RUN if n < RUN_TENSOR_BYTES else LOCAL for n in sizes]
    else:
        sizes = [getattr(a, "nbytes", 0) if type(a) is np.ndarray else 0 for a in arrays]
        kinds = [REMOTE if remote is not None and remote[i] else
                 RUN if a is None or (type(a) is np.ndarray and a.nbytes < RUN_TENSOR_BYTES) else LOCAL
                 for i, a in enumerate(arrays)]
    cum = list(accumulate(sizes, initial=0))
    i = 0
    for kind, group in groupby(kinds):
        end = i + sum(1 for _ in group)
        if kind != RUN:
            for j in range(i, end):
                yield kind, j, j + 1
        else:
            while i < end:  # cut at RUN_TENSORS tensors or once RUN_BYTES are reached
                cut = min(end, i + RUN_TENSORS, bisect_left(cum, cum[i] + RUN_BYTES, i + 1))
                yield RUN, i, cut
                i = cut
        i = end


def _locked_values(var_map: dict, keys: list, pending: list = ()) -> Iterator[Any]:
    # Each variable's lock is held while the writer consumes its bytes, so a concurrent
    # assign cannot tear one tensor. Consecutive small host variables go as one TensorRun,
    # their locks held together (storage.holding) while the writer copies the run.
    # Variables on ps tasks are fetched ahead, from all tasks at once (a fetch is a
    # snapshot taken by the task). The shards being written in parallel are waited for
    # last, before the main file (which names them) is committed.
    ok = False
    try:
        variables = list(map(var_map.__getitem__, keys))
        devices = list(map(_device_of, variables))
        starts = {d: getattr(d, "start_read", None) for d in set(devices)}
        remote = list(map(starts.__getitem__, devices)) if any(starts.values()) else None
        storages = list(map(_storage_of, variables))
        arrays = list(map(_array_of, storages))  # a glance without the locks, to plan the runs
        todo = [i for i in range(len(keys)) if remote[i] is not None] if remote is not None else []
        fetches: dict[int, Any] = {}
        ahead, t = 0, 0

        def fetch_ahead(i: int) -> None:  # start the ps fetches due by position i
            nonlocal ahead, t
            while t < len(todo) and (todo[t] <= i or ahead < GATHER_AHEAD_BYTES):
                j = todo[t]
                with storages[j].lock:
                    value = storages[j].require()
                fetches[j] = (remote[j](value), value.nbytes)
                ahead += value.nbytes
                t += 1

        for kind, i, end in _segments(arrays, remote):
            fetch_ahead(i)
            if kind == RUN:
                run = storages[i:end]
                with holding(list(map(_lock_of, run))):
                    yield TensorRun(keys[i:end], list(map(Storage.require, run)))  # names an uninitialized one
            elif kind == REMOTE:
                wait, nbytes = fetches.pop(i)
                ahead -= nbytes
                yield keys[i], wait()
            else:
                with storages[i].lock:
                    yield keys[i], storages[i].require()  # a local device's value is its array (Device.read)
        _finish_shards(pending, failed=False)
        ok = True
    finally:
        if not ok:
            _finish_shards(pending, failed=True)


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


@contextlib.contextmanager
def _naming(path: str) -> Iterator[None]:
    """Errors of a save to a URL name that URL, even when the state file beside it failed."""
    try:
        yield
    except OpError as e:
        if store_for(path).local or path in e.message:
            raise
        raise type(e)(f"saving {path}: {e.message}") from None
