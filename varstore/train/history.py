"""A Saver's checkpoint history: adopted from the state file, recorded after each save.

The state file ``checkpoint`` is shared: a new Saver (after a restart) adopts
the history it lists, so retention holds across restarts, and two processes
saving into one directory merge their records under the directory's lock
instead of dropping each other's checkpoints. Which checkpoints go is decided
by ``retention.plan``; this module reads and writes the state and deletes files,
only after the state file no longer names them, and only while each file is
still the one recorded (another writer may have saved the same name since).
"""
from __future__ import annotations

import logging
import time

from devices.errors import DataLossError, OpError

from ..checkpoint import tf as _tf
from ..checkpoint.store import FileId, Store, store_for
from . import checkpoint_state as cs
from . import retention

log = logging.getLogger("varstore")

# (device, inode) of a checkpoint and of its meta file when recorded.
Ids = tuple[FileId | None, FileId | None]


def _exists(store: Store, p: str) -> bool:
    """A checkpoint is at ``p``: a varstore file (or committed object), or a TF bundle prefix
    (``Saver(format="tf")`` records those; its directory may hold both kinds)."""
    return store.exists(p) or _tf.is_bundle(p)


def _mtime(store: Store, p: str) -> float | None:
    t = store.mtime(p)
    return t if t is not None else store.mtime(_tf.index_file(p))  # a bundle: its index's


def _remove(store: Store, p: str, suffix: str, ids: Ids) -> None:
    """Delete checkpoint ``p`` (if still the recorded files) and its meta file."""
    ckpt_id, meta_id = ids
    if _tf.is_bundle(p):
        _tf.remove_bundle(p)  # its index first: from then on it is no checkpoint
    else:
        store.remove_checkpoint(p, ckpt_id)
    store.remove_if(f"{p}.{suffix}", meta_id)


def listed(st: cs.CheckpointState) -> list[tuple[str, float | None]]:
    """(path, timestamp or None) of every checkpoint a state file lists."""
    ts = st.all_model_checkpoint_timestamps
    return [(p, ts[i] if ts else None) for i, p in enumerate(st.all_model_checkpoint_paths)]


class History:
    """Retained checkpoints (path, timestamp), oldest first, and the retention settings."""

    def __init__(self, max_to_keep: int | None, keep_hours: float):
        self.max_to_keep = max_to_keep
        self.keep_hours = float(keep_hours)
        self.last: list[tuple[str, float]] = []
        self.next_keep_time = time.time() + self.keep_hours * 3600
        self._prepared: set[str] = set()
        # State file -> {path: timestamp} it listed when this Saver last read or wrote it:
        # what is new there since then was recorded by another writer.
        self._seen: dict[str, dict[str, float | None]] = {}
        # Path -> ids of its files when recorded: retention deletes only those files.
        self._ids: dict[str, Ids] = {}

    # -- first save into a directory ---------------------------------------------------
    def prepare(self, directory: str, latest_filename: str | None, prefix: str, suffix: str) -> None:
        """First save into ``directory``: sweep what dead writers left (temporary files,
        uncommitted data, meta files of ``prefix``'s checkpoints that are gone) and adopt
        the history in the state file."""
        if directory in self._prepared:
            return
        self._prepared.add(directory)
        store = store_for(directory)
        try:
            gone = store.sweep(directory)
            names = store.listdir(directory)
            for name in retention.orphan_metas(names, prefix, suffix):
                if store.remove(store.join(directory, name)):
                    gone.append(name)
            for name in gone:
                log.info("removed %s in %s: left by a save that did not finish", name, directory)
        except OpError as e:  # no permission to list, say: saving needs none
            log.warning("could not look for what interrupted saves left in %s: %s", directory, e)
        try:
            st = cs.get_checkpoint_state(directory, latest_filename)
        except DataLossError as e:  # a corrupt state file is replaced by our next write
            log.warning("ignoring unreadable state file in %s: %s", directory, e)
            st = None
        except BaseException:
            self._prepared.discard(directory)  # a store that failed (no credentials): try again next time
            raise
        if st is None:
            return
        self._seen[store.join(directory, latest_filename or cs.STATE_FILENAME)] = dict(listed(st))
        known = {p for p, _ in self.last}
        ts = st.all_model_checkpoint_timestamps
        for i, p in enumerate(st.all_model_checkpoint_paths):
            if p not in known and _exists(store, p):
                self.last.append((p, ts[i] if ts else (_mtime(store, p) or time.time())))
        self.last.sort(key=lambda pt: pt[1])
        if st.last_preserved_timestamp:
            self.next_keep_time = st.last_preserved_timestamp + self.keep_hours * 3600

    # -- after a save ------------------------------------------------------------------
    def record(self, path: str, directory: str, latest_filename: str | None, suffix: str,
               ids: Ids = (None, None)) -> None:
        """Name ``path`` (durable by now) in the state file as the latest, apply retention.

        Under the directory's lock: read the state file and merge what another process
        recorded since this Saver last looked (two writers share one history and one
        ``max_to_keep``; neither drops the other's checkpoints from the file), write the
        new state, and only then delete what retention dropped, so that the state file
        never names a deleted checkpoint. This history changes only once the state file
        is written.
        """
        store = store_for(directory)
        state_key = store.join(directory, latest_filename or cs.STATE_FILENAME)
        with store.lock(directory):
            if not _exists(store, path):
                # Another process saved the same name over ours and its retention has deleted that
                # since: newer checkpoints are in the directory. Nothing to name; the state stays.
                log.warning("not recording %s: another process saving into %s replaced it with its own "
                            "save of that name, and deleted it since (retention)", path, directory)
                if ids[1] is not None:
                    store.remove_if(f"{path}.{suffix}", ids[1])
                return
            stamps = self._merged(store, path, directory, latest_filename, state_key)
            history = sorted(stamps.items(), key=lambda pt: pt[1])
            history.append((path, time.time()))
            self._ids[path] = ids if ids[0] is not None else (store.file_id(path), store.file_id(f"{path}.{suffix}"))
            for p, _ in history:  # which files these are: retention deletes only those
                if p not in self._ids:
                    self._ids[p] = (store.file_id(p), store.file_id(f"{p}.{suffix}"))
            kept = retention.plan(history, self.max_to_keep, self.keep_hours, self.next_keep_time)
            state = cs.CheckpointState(
                model_checkpoint_path=path,
                all_model_checkpoint_paths=kept.keep,
                all_model_checkpoint_timestamps=[t for _, t in kept.history],
                last_preserved_timestamp=kept.next_keep_time - self.keep_hours * 3600)
            cs.update_checkpoint_state(directory, state, latest_filename)
            self.last, self.next_keep_time = kept.history, kept.next_keep_time
            self._seen[state_key] = dict(kept.history)
            # Only now that the state file no longer names them may old checkpoints go.
            for p in kept.delete:
                try:
                    _remove(store, p, suffix, self._ids.pop(p, (None, None)))
                except OpError as e:  # a store that failed: this save is recorded; the next retires it
                    log.warning("saved %s, but deleting %s (retention) failed: %s", path, p, e)
            live = set(kept.keep)
            for p in [p for p in self._ids if p not in live]:
                del self._ids[p]

    def _merged(self, store: Store, path: str, directory: str, latest_filename: str | None,
                state_key: str) -> dict[str, float]:
        """This history (without ``path``) merged with what other writers recorded since."""
        stamps = {p: t for p, t in self.last if p != path and _exists(store, p)}
        try:
            st = cs.get_checkpoint_state(directory, latest_filename)
        except DataLossError as e:  # a corrupt state file is replaced (a store that failed is raised)
            log.warning("ignoring unreadable state file in %s: %s", directory, e)
            st = None
        if st is None:
            return stamps
        if state_key not in self._seen and st.last_preserved_timestamp:
            # A state file this history has not read (no prepare: a TF-format save) carries on
            # its keep_checkpoint_every_n_hours clock.
            self.next_keep_time = max(self.next_keep_time, st.last_preserved_timestamp + self.keep_hours * 3600)
        seen = self._seen.get(state_key, {})
        for p, t in listed(st):
            if p == path or (p in seen and seen[p] == t):
                continue  # ours, or listed when we last looked
            if p in stamps:  # saved again by another writer: its newer record wins
                if t is not None and t > stamps[p]:
                    stamps[p] = t
                    self._ids.pop(p, None)
            elif _exists(store, p):  # recorded by another writer
                t = t if t is not None else _mtime(store, p)
                if t is not None:
                    stamps[p] = t
        return stamps

    def discard_unrecorded(self, path: str, directory: str, latest_filename: str | None, suffix: str,
                           ckpt_id: FileId | None, meta_id: FileId | None) -> None:
        """A save failed after its checkpoint was put in place (syncing the directory, writing
        the meta file or the state file failed): remove the checkpoint, and its meta file and
        shards if this save wrote them, so that a failed save leaves nothing behind (on a full
        disk above all), unless the state file names it (it was replaced, then syncing the
        directory failed; or another writer saved the same path)."""
        store = store_for(directory)
        try:
            with store.lock(directory):
                st = cs.get_checkpoint_state(directory, latest_filename)
                if st is not None and path in [st.model_checkpoint_path] + st.all_model_checkpoint_paths:
                    return
                store.remove_checkpoint(path, ckpt_id)
                if meta_id is not None or not store.local:
                    store.remove_if(f"{path}.{suffix}", meta_id)
        except Exception as e:  # noqa: BLE001 - the save's own error is the one to raise
            log.warning("could not remove %s after a failed save: %s", path, e)
