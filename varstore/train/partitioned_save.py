"""Saving and restoring partitioned variables under their full names, as TF does.

A partitioned variable's parts are saved as ONE tensor, the full variable, under its full
name (``tf.train.list_variables`` shows ``"emb"`` with the full shape). So a checkpoint
restores into any number of parts, or into a plain variable of the full shape, and a
plain variable's checkpoint restores into parts.

In the Saver's name -> variable map a partitioned variable is one :class:`JoinedParts`
entry. Saving and restoring never see it: ``Saver.save`` hands them a host copy of the
full value (the parts joined, each read under its own lock, at the call), and
``Saver.restore`` an empty host stand-in that the restore fills like any CPU variable;
once the restore succeeded, that value is split into the parts (each loaded on its own
device). A failed restore leaves the parts as they were. The checkpoint format and the
save and restore code are unchanged, and with no partitioned variable in the process
nothing here runs.

>>> import os, tempfile, varstore as tf
>>> tf.reset_default_graph()
>>> emb = tf.get_variable("emb", [6, 2], partitioner=tf.fixed_size_partitioner(3))
>>> with tf.Session() as sess:
...     sess.run(tf.global_variables_initializer())
...     path = tf.train.Saver().save(sess, os.path.join(tempfile.mkdtemp(), "m"))
>>> tf.train.list_variables(path)
[('emb', [6, 2])]
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

import devices
from devices.errors import FailedPreconditionError, InvalidArgumentError

from ..partitioned import PartitionedVariable, any_parts
from ..storage import Storage


class _OpName:
    """``entry.op.name``: the key a Saver describes an entry by (a Variable's is its op name)."""

    def __init__(self, name: str):
        self.name = name


class JoinedParts:
    """A partitioned variable in a Saver's var map: its full name, shape and dtype, and its parts
    in order along ``axis``. Save and restore see a host stand-in instead (``for_save``,
    ``restoring``).

    ``device`` is the host CPU, where the full value is assembled: ``Saver.restore(...,
    device="/job:ps/task:1")`` does not select it, even when some of its parts live there.
    """

    validate_shape = True

    def __init__(self, name: str, parts: list, axis: int, shape: tuple[int, ...], dtype: Any):
        self.name, self.parts, self.axis, self.shape, self.dtype = name, parts, axis, shape, dtype
        self.graph = parts[0].graph

    @property
    def op(self) -> _OpName:
        return _OpName(self.name)

    @property
    def device(self) -> str:
        return _host().name

    def gather(self) -> np.ndarray:
        """The full value on the host: each part read under its own lock, then joined."""
        pieces = []
        for part in self.parts:
            storage = part.storage
            with storage.lock:
                if storage.array is None:
                    raise FailedPreconditionError(
                        f"Attempting to use uninitialized value {part.op.name} (part of {self.name})")
                pieces.append(np.asarray(part.numpy()))
        return np.concatenate(pieces, axis=self.axis)

    def scatter(self, full: Any) -> None:
        """Load a full value into the parts, each on its own device."""
        host = full if isinstance(full, np.ndarray) else devices.to_host(full)
        if tuple(host.shape) != tuple(self.shape):
            raise InvalidArgumentError(f"Restoring {self.name}: value of shape {tuple(host.shape)}, "
                                       f"expected the full shape {tuple(self.shape)}")
        start = 0
        for part in self.parts:
            n = part.shape[self.axis]
            index = (slice(None),) * self.axis + (slice(start, start + n),)
            part.load(np.ascontiguousarray(host[index]))
            start += n

    def __repr__(self) -> str:
        return f"<JoinedParts '{self.name}' shape={tuple(self.shape)} parts={len(self.parts)}>"


def _host() -> Any:
    return devices.get_device("/cpu:0")


class _HostValue:
    """What save and restore see for a JoinedParts: a variable on the host CPU with a real
    Storage (holding the joined value for a save, empty for a restore to fill)."""

    validate_shape = True

    def __init__(self, entry: JoinedParts, array: Any = None):
        self.entry = entry
        self.name, self.shape, self.dtype, self.graph = entry.name, tuple(entry.shape), entry.dtype, entry.graph
        self.storage = Storage(entry.name, self.shape)
        self.storage.array = array
        self.device_object = _host()

    @property
    def op(self) -> _OpName:
        return _OpName(self.name)

    @property
    def device(self) -> str:
        return self.device_object.name

    def _live(self) -> Any:  # what the writers read from a variable: its array (a host array here)
        return self.storage.require()

    value = numpy = _live


def _entries(var_map: dict) -> list[tuple[str, JoinedParts]]:
    if not any_parts():  # no partitioned variable in this process: not even a scan
        return []
    return [(k, v) for k, v in var_map.items() if type(v) is JoinedParts]


def for_save(var_map: dict) -> dict:
    """``var_map`` with each partitioned variable's full value gathered to the host now (so an
    async save writes the values of the call)."""
    entries = _entries(var_map)
    if not entries:
        return var_map
    out = dict(var_map)
    for key, entry in entries:
        out[key] = _HostValue(entry, entry.gather())
    return out


@contextlib.contextmanager
def restoring(var_map: dict) -> Iterator[dict]:
    """``var_map`` with an empty host stand-in for each partitioned variable; after the block
    (the restore) succeeded, each value it received is split into the parts."""
    entries = _entries(var_map)
    if not entries:
        yield var_map
        return
    out = dict(var_map)
    stand_ins = []
    for key, entry in entries:
        out[key] = stand_in = _HostValue(entry)
        stand_ins.append(stand_in)
    yield out
    for stand_in in stand_ins:
        if stand_in.storage.array is None:  # not selected (restore's device filter)
            continue
        try:
            stand_in.entry.scatter(stand_in.storage.array)
        except BaseException:
            for part in stand_in.entry.parts:  # never half-written and usable
                part.storage.forget()
            raise


def joined(pv: PartitionedVariable) -> JoinedParts:
    """The var-map entry of a PartitionedVariable."""
    return JoinedParts(pv.name, pv.get_variable_list(), pv.axis, pv.shape, pv.dtype)


def join_parts(name: str, parts: list) -> JoinedParts:
    """The var-map entry for parts found one by one (in a var list or the collection): they must
    be every part of ``name``, each once."""
    full_shape = tuple(parts[0]._save_slice_info.full_shape)
    by_offset = sorted(parts, key=lambda p: tuple(p._save_slice_info.var_offset))
    axis = next((i for i, (s, f) in enumerate(zip(by_offset[0].shape, full_shape)) if s != f), 0)
    covered = 0
    for p in by_offset:
        si = p._save_slice_info
        if tuple(si.full_shape) != full_shape or si.var_offset[axis] != covered:
            break
        covered += si.var_shape[axis]
    if covered != (full_shape[axis] if full_shape else 1):
        have = sorted(p.op.name for p in parts)
        raise InvalidArgumentError(
            f"Saver: the var list holds parts {have} of partitioned variable {name!r} (shape {full_shape}), "
            f"which do not cover it once; pass every part, or the PartitionedVariable itself")
    return JoinedParts(name, by_offset, axis, full_shape, by_offset[0].dtype)


def split_off(var_list: Any) -> tuple[Any, dict[str, JoinedParts]]:
    """``var_list`` (a list or a dict) without its partitioned variables and parts, and those as
    var-map entries: {full name (or the dict's key): JoinedParts}. A part listed twice (itself
    and in its PartitionedVariable) counts once."""
    if isinstance(var_list, dict):
        rest: Any = {}
        joined_map: dict[str, JoinedParts] = {}
        for key, v in var_list.items():
            if isinstance(v, PartitionedVariable) and isinstance(key, str):
                joined_map[key] = joined(v)
            else:
                rest[key] = v  # a part as a dict value is an ordinary variable, as in TF
        return rest, joined_map
    rest, groups = [], {}
    for v in var_list:
        if isinstance(v, PartitionedVariable):
            for p in v:
                groups.setdefault(v.name, {})[id(p)] = p
            continue
        info = getattr(v, "_save_slice_info", None)
        if info is not None:
            groups.setdefault(info.full_name, {})[id(v)] = v
        else:
            rest.append(v)
    return rest, {name: join_parts(name, list(g.values())) for name, g in groups.items()}


def merge(out: dict, joined_map: dict[str, JoinedParts]) -> None:
    """Add the joined entries to the var map; a name an ordinary variable has is TF's error."""
    for name, entry in joined_map.items():
        if name in out:
            raise InvalidArgumentError(f"Mixing slices and non-slices with the same name: {name}")
        out[name] = entry
