"""Restore: every name, shape and dtype checked first, then values read into the variables.

A restore that fails part-way leaves every variable it touched uninitialized,
never half-written and usable. Variables on ps tasks are loaded by their tasks,
all in parallel; CPU variables are read straight into their existing buffers.
"""
from __future__ import annotations

import logging
from itertools import compress
from operator import and_, attrgetter, eq, itemgetter
from typing import Any

import numpy as np

from devices.dtypes import bfloat16, is_floating
from devices.errors import InvalidArgumentError, NotACheckpointError
from devices.spec import DeviceSpec

from ..checkpoint import shards as _shards
from ..checkpoint import tf as _tf
from ..checkpoint.store import normalize, store_for
from ..storage import gc_paused, holding
from ..variables import Variable

log = logging.getLogger("varstore")

# Variables restored together, under their locks held at once (storage.holding).
RUN_VARIABLES = 4096
_storage_of, _lock_of, _array_of = attrgetter("storage"), attrgetter("lock"), attrgetter("array")
_shape_of, _dtype_of, _device_of = attrgetter("shape"), attrgetter("dtype"), attrgetter("device_object")
_graph_of, _storage_shape = attrgetter("graph"), attrgetter("storage.shape")


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


def restore(var_map: dict[str, Variable], save_path: str | None, device: Any = None) -> None:
    """``Saver.restore``: load ``var_map``'s variables from ``save_path`` (its docstring says
    what is checked, what a failure leaves and what ``device`` selects)."""
    if save_path is None:
        raise InvalidArgumentError("Can't load save_path when it is None.")
    path = normalize(save_path)
    store = store_for(path)
    tf_bundle = _tf.is_bundle(path)  # TensorFlow's own checkpoint: this process reads it (no ps loaders)
    if store.local and not tf_bundle and not store.is_checkpoint(path):  # a URL's reader says what is there
        hint = " (it is a directory: use tf.train.latest_checkpoint(dir))" if store.is_dir(path) else ""
        raise NotACheckpointError(f"The passed save_path is not a valid checkpoint: {path}{hint}")
    with gc_paused(), (_tf.TFBundleReader(path) if tf_bundle else _shards.CheckpointSet(path)) as reader:
        plan = check_plan(var_map, reader)
        if device is not None:
            plan = [p for p in plan if _on_device(p[1], device)]
        keys, variables, shapes, dtypes, same = (list(map(itemgetter(c), plan)) for c in range(5))
        devices = list(map(_device_of, variables))
        recover_devices(set(devices))
        # Variables created later in these graphs (optimizer slots) restore from here too.
        for g in set(map(_graph_of, variables)):
            g._last_restore = path
        touched: list[Variable] = []
        try:
            local = store.local and not tf_bundle
            loaders = {d: _task_loader(d, local) for d in set(devices)}
            by_task: dict[Any, list] = {}
            if any(loaders.values()):
                for key, var, dev in zip(keys, variables, devices):
                    if loaders[dev] is not None:
                        by_task.setdefault(dev, []).append((key, var))
            waits = []
            for dev, items in by_task.items():  # every task starts loading now
                touched += [v for _, v in items]
                waits.append((items, dev.load_tensors(
                    [(v.storage.array, reader.file_of(k), k, reader.shape(k), v.dtype) for k, v in items],
                    _shards.load_arrays)))
            # This process reads the rest: CPU variables stored in their own dtype in runs
            # (read_many), the others one at a time.
            in_runs = {d: loaders[d] is None and d.kind == "cpu" and hasattr(reader, "read_many") for d in loaders}
            runs = list(map(and_, map(in_runs.__getitem__, devices), same))
            picked = range(len(plan)) if all(runs) else list(compress(range(len(plan)), runs))
            for i in range(0, len(picked), RUN_VARIABLES):
                at = picked[i:i + RUN_VARIABLES]
                _restore_run(reader, [keys[j] for j in at], [variables[j] for j in at], [shapes[j] for j in at],
                             touched, local)
            for p, dev, in_run in zip(plan, devices, runs):
                if not in_run and loaders[dev] is None:
                    touched.append(p[1])
                    restore_one(reader, p[0], p[1], local, p[2], p[3])
            for items, wait in waits:
                for (_, var), array in zip(items, wait()):
                    if array is not var.storage.array:
                        var.storage.adopt(array)
        except BaseException:
            for v in touched:
                v.storage.forget()
            raise
    log.info("restored %d variables from %s", len(plan), path)


def recover_devices(devs: set) -> None:
    """Bring back the lost devices a restore writes to: a ps task whose process or node died
    is restarted on a live node (all at once), so that one restore recovers every task."""
    checks = [start() for start in (getattr(d, "start_recover", None) for d in devs) if start is not None]
    for finish in [check() for check in checks]:
        if finish is not None:
            finish()


def check_plan(var_map: dict[str, Variable], reader: Any) -> list[tuple[str, Variable, tuple, np.dtype, bool]]:
    """(key, variable, stored shape, stored dtype, stored in the variable's own dtype) to
    restore, every name, shape and dtype checked before any variable changes (a column at a
    time: thousands of variables)."""
    keys = sorted(var_map)
    variables = list(map(var_map.__getitem__, keys))
    lookup = getattr(reader, "lookup", None)
    if lookup is not None:
        shapes, dtypes = lookup(keys)  # NotFoundError naming the first missing key
    else:
        shapes, dtypes = [], []
        for key in keys:
            if not reader.has_tensor(key):
                reader.shape(key)  # raises NotFoundError naming the key and the closest names
            shapes.append(tuple(reader.shape(key)))
            dtypes.append(np.dtype(reader.dtype(key)))
    bad = []
    if list(map(_storage_shape, variables)) != shapes:
        bad += [(i, "shape") for i, (var, shape) in enumerate(zip(variables, shapes))
                if shape != var.shape and var.validate_shape][:1]
    var_dtypes = numpy_dtypes(variables)
    if var_dtypes != dtypes:
        refused = {pair for pair in set(zip(dtypes, var_dtypes)) if not exact_cast_allowed(*pair)}
        bad += [(i, "dtype") for i, pair in enumerate(zip(dtypes, var_dtypes)) if pair in refused][:1]
    if bad:
        i, what = min(bad)
        var, key = variables[i], keys[i]
        if what == "shape":
            raise InvalidArgumentError(
                f"Restoring {var.name} from {reader.path}: tensor {key!r} has shape {shapes[i]}, "
                f"the variable has shape {var.shape}")
        raise InvalidArgumentError(
            f"Restoring {var.name} from {reader.path}: tensor {key!r} has dtype {dtypes[i].name}, "
            f"the variable has dtype {var.dtype.name} (only exact widening casts are implicit)")
    return list(zip(keys, variables, shapes, dtypes, map(eq, dtypes, var_dtypes)))


def numpy_dtypes(variables: list) -> list[np.dtype]:
    """The variables' dtypes as numpy's objects, converted once per distinct dtype (a
    variable's may be TF's DType, whose comparisons run in Python)."""
    dts = list(map(_dtype_of, variables))
    ids = list(map(id, dts))
    as_numpy = {i: np.dtype(d) for i, d in dict(zip(ids, dts)).items()}
    return list(map(as_numpy.__getitem__, ids))


def _restore_run(reader: Any, keys: list, variables: list, shapes: list, touched: list, local: bool) -> None:
    """Restore a run of CPU variables stored in their own dtype: under all their locks,
    each is read into its existing buffer where it has a fitting one (else into a new
    array, adopted once every checksum in the run holds), in a few vectored reads."""
    storages = list(map(_storage_of, variables))
    touched += variables
    with holding(list(map(_lock_of, storages))):
        outs = list(map(_array_of, storages))
        fresh = []
        if set(map(type, outs)) != {np.ndarray} or list(map(_shape_of, outs)) != shapes:
            for i, (out, var, shape) in enumerate(zip(outs, variables, shapes)):
                if type(out) is not np.ndarray or out.shape != shape:
                    outs[i] = var.device_object.empty(shape, var.dtype)
                    fresh.append(i)
        try:
            reader.read_many(keys, outs)
        except InvalidArgumentError:  # a strided or read-only buffer: one variable at a time
            for key, var, shape in zip(keys, variables, shapes):
                restore_one(reader, key, var, local, shape, var.dtype)
            return
        for i in fresh:
            storages[i].adopt(outs[i])


def _task_loader(dev: Any, local: bool) -> Any:
    """The device's own loader (a ps task reads a local file itself), or None: this process
    reads (always, from a URL: only it has the store's credentials)."""
    return getattr(dev, "load_tensors", None) if local else None


def restore_one(reader: Any, key: str, var: Variable, local: bool | None = None,
                shape: tuple | None = None, dtype: np.dtype | None = None) -> None:
    """Read tensor ``key`` into ``var`` under its lock: into its existing buffer where it can
    (no allocation), else into a new array on its device. ``local``: the checkpoint is a
    local file (None: ask the store); ``shape``, ``dtype``: the stored ones, when the caller
    has them already (None: ask the reader)."""
    dev = var.device_object
    if shape is None or dtype is None:
        shape, dtype = tuple(reader.shape(key)), reader.dtype(key)
    if local is None:
        local = store_for(reader.path).local and getattr(reader, "format", None) != "tf"
    load = _task_loader(dev, local)
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
        load_into, chunks = getattr(dev, "load_into", None), getattr(reader, "iter_chunks", None)
        if load_into is not None and chunks is not None and cur is not None and cur.shape == shape \
                and cur.dtype == dtype:
            # A GPU buffer of the right kind: chunks through pinned staging straight into it.
            load_into(cur, lambda buf: chunks(key, len(buf), buffer=buf))
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


def _on_device(var: Variable, device: Any) -> bool:
    """True when every field set in ``device`` matches where ``var`` lives."""
    want, have = DeviceSpec.from_string(device), DeviceSpec.from_string(var.device)
    return all(getattr(want, f) is None or getattr(want, f) == getattr(have, f)
               for f in ("job", "replica", "task", "device_type", "device_index"))
