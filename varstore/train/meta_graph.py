"""Meta graphs: the variables' description as data (msgpack), rebuilt without the model's code.

A meta file stores each variable's name, shape, dtype, requested device
(``device``: what import_meta_graph asks for again) and the device it was
placed on (``placed_device``: where it lived, for ``varstore summary``),
trainable flag, collections, optimizer-slot link and initializer (as its
kind and parameters, never code), plus the Saver's name map. Reading it
runs no code and validates everything; a bad file is DataLossError.

>>> import os, tempfile, varstore as tf
>>> tf.reset_default_graph()
>>> _ = tf.Variable(tf.zeros([2]), name="v")
>>> path = os.path.join(tempfile.mkdtemp(), "m.meta")
>>> _ = tf.train.export_meta_graph(path)
>>> tf.reset_default_graph()
>>> saver = tf.train.import_meta_graph(path)
>>> [v.name for v in tf.global_variables()]
['v:0']
"""
from __future__ import annotations

import errno
import os
from typing import Any

import msgpack

import devices
from devices.dtypes import as_dtype
from devices.errors import DataLossError, MissingFileError, NotFoundError, OpError
from devices.shapes import as_shape

from .. import initializers as _init
from ..checkpoint.store import normalize, store_for
from ..graph import GraphKeys, get_default_graph
from ..variables import Variable

META_FORMAT = "varstore.meta"
META_VERSION = 1
MAX_META_BYTES = 256 << 20
MAX_INITIALIZER_DEPTH = 100  # nested operations in one variable's initial value


def _describe(var: Variable, clear_devices: bool, cols: list[str]) -> dict:
    return {
        # The op name, plain ints and numpy's dtype name: the internal forms (v.op, v.shape and
        # v.dtype build TF-style objects per access, ~3 us a variable at 100,000 variables).
        "name": var._name, "shape": list(var.storage.shape), "dtype": var._dtype.name,
        "device": "" if clear_devices else var.requested_device,
        # Where it lived; differs from the request under soft placement (/gpu:0 on a CPU machine).
        "placed_device": "" if clear_devices else var.device,
        "trainable": var.trainable, "collections": cols,
        "initializer": var._initial.describe(),
        "slot_of": list(var.slot_of) if var.slot_of else None,
        # A part of a partitioned variable: where it sits in the full one (TF's save_slice_info).
        "save_slice": _slice_desc(getattr(var, "_save_slice_info", None)),
    }


def _slice_desc(info: Any) -> list | None:
    if info is None:
        return None
    return [info.full_name, list(info.full_shape), list(info.var_offset), list(info.var_shape)]


def export_meta_graph(filename: str | None = None, clear_devices: bool = False, saver: Any = None,
                      **unused_tf_options: Any) -> dict:
    """Describe the default graph's variables (and ``saver``'s name map); write it to ``filename``.

    Returns the description (a dict of plain data).
    """
    g = get_default_graph()
    # Which collections hold each object, in one pass over them all (not one per variable).
    membership: dict[int, list[str]] = {}
    for key in g.get_all_collection_keys():
        for x in g.get_collection(key):
            keys = membership.setdefault(id(x), [])
            if not keys or keys[-1] != key:
                keys.append(key)
    seen, variables = set(), []
    for key in (GraphKeys.GLOBAL_VARIABLES, GraphKeys.LOCAL_VARIABLES):
        for v in g.get_collection(key):
            if id(v) not in seen:
                seen.add(id(v))
                variables.append(_describe(v, clear_devices, membership.get(id(v), [])))
    meta = {"format": META_FORMAT, "version": META_VERSION, "variables": variables}
    if saver is not None:
        meta["saver"] = saver.describe()
    if filename is not None:
        write_meta_graph(filename, meta)
    return meta


def write_meta_graph(filename: str, meta: dict, stat_out: list | None = None) -> None:
    """Write a description made by :func:`export_meta_graph` atomically to ``filename``
    (``stat_out``, a list, receives the file's ``os.stat_result`` where the store has one)."""
    filename = normalize(filename)
    store_for(filename).replace(filename, msgpack.packb(meta, use_bin_type=True), stat_out)


def read_meta_graph(filename: str) -> dict:
    """Load and validate a meta file; DataLossError names the file and what is wrong."""
    path = normalize(filename)
    try:
        data = store_for(path).read_small(path, MAX_META_BYTES)
    except FileNotFoundError:
        raise MissingFileError(f"meta graph {path} does not exist") from None
    except OpError:  # a remote store that failed: its own error names the URL
        raise
    except IsADirectoryError:
        raise NotFoundError(f"meta graph {path} is a directory") from None
    except (OSError, ValueError) as e:  # not a regular file, permissions, an I/O error; ValueError: a NUL
        if getattr(e, "errno", None) == errno.EIO:
            raise DataLossError(f"{path}: I/O error while reading the meta graph") from None
        raise NotFoundError(f"meta graph {path} cannot be read: {getattr(e, 'strerror', None) or e}") from None
    if len(data) > MAX_META_BYTES:
        raise DataLossError(f"{path}: meta graph larger than {MAX_META_BYTES} bytes")
    try:
        meta = msgpack.unpackb(data, raw=False, strict_map_key=True,
                               ext_hook=_no_ext)
    except RecursionError:
        raise DataLossError(f"{path}: meta graph nested too deeply") from None
    except Exception as e:  # msgpack raises a variety of ValueError/TypeError subclasses
        raise DataLossError(f"{path}: not a readable meta graph ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
        raise DataLossError(f"{path}: not a varstore meta graph")
    if meta.get("version") != META_VERSION:
        raise DataLossError(f"{path}: meta graph version {meta.get('version')!r} is not one this "
                            f"varstore understands ({META_VERSION})")
    vars_ = meta.get("variables")
    if not isinstance(vars_, list):
        raise DataLossError(f"{path}: 'variables' must be a list")
    for i, v in enumerate(vars_):
        _check_var(path, i, v)
    saver = meta.get("saver")
    if saver is not None and not (isinstance(saver, dict) and isinstance(saver.get("var_map"), dict)
                                  and all(isinstance(k, str) and isinstance(x, str)
                                          for k, x in saver["var_map"].items())):
        raise DataLossError(f"{path}: 'saver' must hold a var_map of names")
    return meta


def _no_ext(code, data):
    raise ValueError(f"msgpack ext type {code} is not allowed")


def _check_var(path: str, i: int, v: Any) -> None:
    where = f"{path}: variable #{i}"
    if not isinstance(v, dict) or not isinstance(v.get("name"), str) or not v["name"]:
        raise DataLossError(f"{where}: needs a name")
    where = f"{path}: variable {v['name']!r}"
    try:
        as_shape(v.get("shape"))
        as_dtype(v.get("dtype"))
        devices.DeviceSpec.from_string(v.get("device") or None)
        devices.DeviceSpec.from_string(v.get("placed_device") or None)  # absent in files before it existed
    except OpError as e:
        raise DataLossError(f"{where}: {e}") from None
    if not isinstance(v.get("trainable"), bool) or not isinstance(v.get("collections", []), list) \
            or not all(isinstance(c, str) for c in v.get("collections", [])):
        raise DataLossError(f"{where}: 'trainable' must be a bool and 'collections' a list of names")
    slot = v.get("slot_of")
    if slot is not None and not (isinstance(slot, list) and len(slot) == 2 and all(isinstance(s, str) for s in slot)):
        raise DataLossError(f"{where}: 'slot_of' must be [variable name, slot name]")
    sl = v.get("save_slice")
    if sl is not None and not (
            isinstance(sl, list) and len(sl) == 4 and isinstance(sl[0], str) and sl[0]
            and all(isinstance(x, list) and len(x) == len(sl[1])
                    and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in x) for x in sl[1:])):
        raise DataLossError(f"{where}: 'save_slice' must be [full name, full shape, offset, shape]")
    if v.get("initializer") is not None and not isinstance(v["initializer"], dict):
        raise DataLossError(f"{where}: 'initializer' must be a description or nil")
    # Rebuilding an initializer recurses once per level: bound the depth here, where it is cheap.
    level, depth = [v.get("initializer")], 0
    while level:
        depth += 1
        if depth > MAX_INITIALIZER_DEPTH:
            raise DataLossError(f"{where}: initializer nested deeper than {MAX_INITIALIZER_DEPTH} levels")
        level = [x for d in level if isinstance(d, dict) for x in d.values() if isinstance(x, dict)]


def _partitioned(name: str, parts: list) -> Any:
    """The PartitionedVariable that imported ``parts`` (with their slice information) make up."""
    from ..partitioned import PartitionedVariable
    from .partitioned_save import join_parts
    entry = join_parts(name, parts)  # checks that the parts cover the full shape once
    partitions = [1] * len(entry.shape)
    if partitions:
        partitions[entry.axis] = len(entry.parts)
    return PartitionedVariable(name, entry.shape, entry.dtype, entry.parts, partitions)


def import_meta_graph(meta_graph_or_file: Any, clear_devices: bool = False, import_scope: str | None = None,
                      **unused_tf_options: Any):
    """Rebuild the variables of a meta graph in the default graph and return a Saver for them.

    ``saver = tf.train.import_meta_graph("model.ckpt-1000.meta"); saver.restore(sess, "model.ckpt-1000")``

    Variables whose initializer could not be described come back uninitialized, waiting
    for ``restore``. An initializer kind this version does not know is DataLossError.
    """
    path = meta_graph_or_file if isinstance(meta_graph_or_file, (str, os.PathLike)) else "<meta graph>"
    meta = read_meta_graph(meta_graph_or_file) if isinstance(meta_graph_or_file, (str, os.PathLike)) \
        else meta_graph_or_file
    g = get_default_graph()
    prefix = f"{import_scope.rstrip('/')}/" if import_scope else ""
    descs = {v["name"]: v for v in meta["variables"]}
    built: dict[str, Variable] = {}
    building: list[str] = []

    def build(name: str) -> Variable:
        if name in built:
            return built[name]
        if name not in descs:
            raise DataLossError(f"{path}: an initializer refers to variable {name!r}, which the meta graph lacks")
        if name in building:
            raise DataLossError(f"{path}: initializers form a cycle: {' -> '.join(building + [name])}")
        building.append(name)
        d = descs[name]
        shape, dtype = as_shape(d["shape"]), as_dtype(d["dtype"])
        init = _init.Undescribed(name, shape, dtype)
        if d.get("initializer") is not None:
            try:
                init = _init.from_description(d["initializer"], build)
            except DataLossError:
                raise
            except (OpError, KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as e:
                # Hostile values reach the initializers' constructors: any of these is a bad file.
                raise DataLossError(f"{path}: variable {name!r}: bad initializer: {type(e).__name__}: {e}") from None
            if init.shape != shape or init.dtype != dtype:
                raise DataLossError(f"{path}: variable {name!r}: initializer gives {init.shape} {init.dtype.name}, "
                                    f"the variable is {shape} {dtype.name}")
        device = None if clear_devices else (d.get("device") or None)
        cols = set(d.get("collections") or [GraphKeys.GLOBAL_VARIABLES]) - {GraphKeys.TRAINABLE_VARIABLES}
        with devices.device(None), devices.device(device), g.name_scope(None):
            v = Variable(init, trainable=d["trainable"], collections=cols, name=prefix + name)
        if d.get("slot_of"):
            v.slot_of = (prefix + d["slot_of"][0], d["slot_of"][1])
        if d.get("save_slice"):
            from ..partitioned import SaveSliceInfo
            full, full_shape, offset, part_shape = d["save_slice"]
            v._save_slice_info = SaveSliceInfo(prefix + full, full_shape, offset, part_shape)
        building.pop()
        built[name] = v
        return v

    try:
        for name in descs:
            build(name)
    except RecursionError:  # a chain of initializers reading other variables, thousands long
        raise DataLossError(f"{path}: initializers refer to other variables too deeply") from None
    from .saver import Saver
    saver_desc = meta.get("saver")
    if saver_desc is None:
        return Saver([built[n] for n in descs], allow_empty=True)
    parts: dict[str, list] = {}  # a partitioned variable's full name -> its parts
    for name, v in built.items():
        if descs[name].get("save_slice"):
            parts.setdefault(descs[name]["save_slice"][0], []).append(v)
    var_map = {}
    for k, name in saver_desc["var_map"].items():
        if name in built:
            var_map[k] = built[name]
        elif name in parts:
            try:
                var_map[k] = _partitioned(prefix + name, parts[name])
            except OpError as e:
                raise DataLossError(f"{path}: partitioned variable {name!r}: {e}") from None
        else:
            raise DataLossError(f"{path}: the saver names variable {name!r}, which the meta graph lacks")
    max_to_keep = saver_desc.get("max_to_keep", 5)
    hours = saver_desc.get("keep_checkpoint_every_n_hours", 10000.0)
    return Saver(var_map, allow_empty=True,
                 max_to_keep=max_to_keep if isinstance(max_to_keep, int) or max_to_keep is None else 5,
                 keep_checkpoint_every_n_hours=float(hours) if isinstance(hours, (int, float)) else 10000.0)
