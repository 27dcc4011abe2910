"""``tf.train.init_from_checkpoint``: warm-start variables from a checkpoint.

It replaces the initial values of the variables an assignment map names by
reads from the checkpoint. Nothing is read when it is called (graph mode):
running the variables' initializers (``global_variables_initializer``) loads
them, on each variable's own device. In eager mode the variables, which are
initialized already, are loaded at once.

Assignment maps, as TF 1.x's:

- ``{"old_scope/": "new_scope/"}``: every variable under ``new_scope/`` from the
  tensor of the same name under ``old_scope/``;
- ``{"old_scope/v": "new_scope/v"}``: one variable by its name;
- ``{"old_scope/v": var}``: one variable object (or a list of a partitioned
  variable's parts);
- ``{"/": "new_scope/"}``: every variable under ``new_scope/`` from the tensor of the
  same name at the checkpoint's root.

>>> import os, tempfile, varstore as tf
>>> tf.reset_default_graph()
>>> with tf.name_scope("old"):
...     a = tf.Variable([1.0, 2.0], name="a")
>>> d = tempfile.mkdtemp()
>>> with tf.Session() as sess:
...     sess.run(a.initializer)
...     _ = tf.train.Saver().save(sess, os.path.join(d, "model.ckpt"))
>>> tf.reset_default_graph()
>>> with tf.name_scope("new"):
...     b = tf.Variable(tf.zeros([2]), name="a")
>>> tf.train.init_from_checkpoint(d, {"old/": "new/"})
>>> with tf.Session() as sess:
...     sess.run(tf.global_variables_initializer())
...     sess.run(b).tolist()
[1.0, 2.0]
"""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from devices.errors import InvalidArgumentError, NotFoundError

from ..checkpoint.store import normalize, store_for
from ..graph import GraphKeys, get_default_graph
from ..ops import RunContext, executing_eagerly
from ..tensors import Tensor
from ..variables import Variable
from .checkpoint_state import latest_checkpoint

log = logging.getLogger("varstore")

_PART = re.compile(r"/part_\d+$")


class CheckpointValue(Tensor):
    """A variable's initial value read from a checkpoint when its initializer runs.

    ``slice_spec`` (``(full_shape, offset, shape)``) reads a partitioned variable's part
    out of the whole tensor saved under ``tensor_name``.
    """

    _base_name = "checkpoint_initializer"

    def __init__(self, var: Variable, ckpt_file: str, tensor_name: str,
                 slice_spec: tuple[tuple, tuple, tuple] | None = None):
        self.var, self.ckpt_file, self.tensor_name, self.slice_spec = var, ckpt_file, tensor_name, slice_spec
        self.shape, self.dtype = tuple(var.shape), var.dtype
        # TF reads on the host ("/cpu:0") and assigns on the variable's device: so do we (the
        # variable's device evaluates this value; a ps task receives the host array).
        self.graph = var.graph

    def _eval(self, device: Any, ctx: RunContext) -> Any:
        from ..checkpoint.shards import open_checkpoint
        with open_checkpoint(self.ckpt_file) as reader:
            if not reader.has_tensor(self.tensor_name):
                raise NotFoundError(f"Key {self.tensor_name} not found in checkpoint {self.ckpt_file} "
                                    f"(initializing {self.var._name})")
            stored = np.dtype(reader.dtype(self.tensor_name))
            if stored != self.dtype:
                # TF's RestoreV2 message: the variable's dtype is what the read asks for.
                raise InvalidArgumentError(
                    f"tensor_name = {self.tensor_name}; expected dtype {self.dtype.name} does not equal "
                    f"original dtype {stored.name} (initializing {self.var._name} from {self.ckpt_file})")
            value = reader.get_tensor(self.tensor_name)
            if self.slice_spec is not None:
                full, offset, shape = self.slice_spec
                if tuple(value.shape) != tuple(full):
                    raise InvalidArgumentError(
                        f"{self.tensor_name} in {self.ckpt_file} has shape {tuple(value.shape)}; the partitioned "
                        f"variable {self.var._name} is a part of shape {tuple(full)}")
                value = value[tuple(slice(o, o + n) for o, n in zip(offset, shape))]
            if tuple(value.shape) != self.shape:
                raise InvalidArgumentError(
                    f"{self.tensor_name} in {self.ckpt_file} has shape {tuple(value.shape)}, the variable "
                    f"{self.var._name} {self.shape}")
            # A copy: the reader's array may be mapped from the file and is gone once it closes.
            return device.asarray(value, dtype=self.dtype, copy=True)

    def _home_device(self) -> Any:
        return self.var.device_object


# -- finding the variables the map names ------------------------------------------------------
def _is_variable(x: Any) -> bool:
    return isinstance(x, Variable)


def _store_vars(graph: Any) -> dict[str, Any]:
    """Variables by op name: TF looks in ``get_variable``'s store; here every global and local
    variable counts (``tf.Variable`` ones too), plus a variable store's if the graph has one."""
    out: dict[str, Any] = {}
    for v in graph.get_collection(GraphKeys.GLOBAL_VARIABLES) + graph.get_collection(GraphKeys.LOCAL_VARIABLES):
        if isinstance(v, Variable):
            out.setdefault(v._name, v)
    store = getattr(graph, "_variable_store", None)  # get_variable's (varstore.var_scope), once used
    for name, v in (getattr(store, "vars", None) or {}).items():  # partitioned ones by part: w/part_0...
        out.setdefault(name, v)
    return out


def _collect_partitioned(name: str, store_vars: dict[str, Any]) -> list | None:
    """The parts ``name/part_0``, ``name/part_1``... of a partitioned variable, or None."""
    if name + "/part_0" not in store_vars:
        return None
    parts, i = [], 0
    while f"{name}/part_{i}" in store_vars:
        parts.append(store_vars[f"{name}/part_{i}"])
        i += 1
    return parts


def _parts(var: Any) -> list | None:
    """A partitioned variable's parts (a list of Variables, or a PartitionedVariable), else None."""
    if isinstance(var, (list, tuple)) and var and all(_is_variable(v) for v in var):
        return list(var)
    get_list = getattr(var, "_get_variable_list", None)
    if callable(get_list):
        return list(get_list())
    return None


def _checkpoint_file(ckpt_dir_or_file: Any) -> str:
    path = normalize(ckpt_dir_or_file)
    if store_for(path).is_dir(path):
        latest = latest_checkpoint(path)
        if latest is None:  # TF's ValueError (a path that does not exist at all is NotFoundError)
            raise ValueError(f"Couldn't find 'checkpoint' file or checkpoints in given directory {path}")
        return latest
    return path


def _shape_map(reader: Any) -> dict[str, list[int]]:
    return {n: list(reader.shape(n)) for n in reader.names()}


def _set_initializer(var: Any, ckpt_file: str, tensor_name: str) -> None:
    """Make ``var`` (or each part of a partitioned ``var``) load ``tensor_name`` when initialized."""
    parts = _parts(var)
    if parts is None:
        targets = [(var, None)]
    else:
        targets = []
        for p in parts:
            info = getattr(p, "_save_slice_info", None)
            if info is None:
                raise ValueError(f"{p.name} is listed as a part of a partitioned variable but has no slice "
                                 f"information (_save_slice_info)")
            targets.append((p, (tuple(info.full_shape), tuple(info.var_offset), tuple(info.var_shape))))
    for v, spec in targets:
        v._initial = CheckpointValue(v, ckpt_file, tensor_name, spec)
        if executing_eagerly():
            # Eager variables were initialized when created: load now, as TF's eager restore does.
            v.initializer.run()
        log.debug("initialize %s from checkpoint %s with %s", v._name, ckpt_file, tensor_name)


def init_from_checkpoint(ckpt_dir_or_file: Any, assignment_map: Mapping | list) -> None:
    """Initialize variables from a checkpoint: their initializers load the named tensors.

    ``ckpt_dir_or_file``: a checkpoint (ours, sharded or not, or a TF bundle prefix) or a
    directory (its latest checkpoint, chosen now). ``assignment_map`` maps checkpoint
    names or scopes to variables, variable names or scopes (see the module docstring).
    Entries are handled in the order of their checkpoint names, as TF does.

    Errors, as TF's: ValueError when a named tensor is not in the checkpoint, when a
    variable's shape does not match the tensor's, or when a name that is no variable is
    not a scope-to-scope entry (``"scope/": "other_scope/"``) and for a directory without
    checkpoints; NotFoundError for a checkpoint that does not exist. A dtype mismatch fails when the initializer runs
    (InvalidArgumentError), as TF's restore op does.

    Differences from TF: a variable made with ``tf.Variable`` (not only ``get_variable``) is
    found by its name; initializer ops built before this call load from the checkpoint too
    (TF's keep the old initial value).

    >>> import varstore as tf
    >>> tf.train.init_from_checkpoint("/nonexistent/model.ckpt", {"v": "v"})
    Traceback (most recent call last):
    ...
    devices.errors.NotFoundError: Checkpoint '/nonexistent/model.ckpt' not found (no such file)
    """
    from ..checkpoint.shards import open_checkpoint
    ckpt_file = _checkpoint_file(ckpt_dir_or_file)
    with open_checkpoint(ckpt_file) as reader:  # NotFoundError when there is none, as TF
        variable_map = _shape_map(reader)
    graph = get_default_graph()
    items = list(assignment_map.items()) if isinstance(assignment_map, Mapping) else list(assignment_map)
    store_vars = _store_vars(graph)
    for tensor_name, current in sorted(items, key=lambda kv: kv[0]):
        var = None
        if _is_variable(current) or _parts(current) is not None:
            var = current
        elif isinstance(current, str):
            var = store_vars.get(current)
            if var is None:
                var = _collect_partitioned(current, store_vars)
        else:
            raise TypeError(f"init_from_checkpoint: assignment_map values are variables, lists of a partitioned "
                            f"variable's parts or names; received {type(current).__name__} for {tensor_name!r}")
        if var is not None:
            if tensor_name not in variable_map:
                raise ValueError(f"Tensor {tensor_name} is not found in {ckpt_dir_or_file} checkpoint "
                                 f"{variable_map}")
            if _is_variable(var) and list(var.shape) != variable_map[tensor_name]:
                raise ValueError(f"Shape of variable {var.name} ({var.shape}) doesn't match with shape "
                                 f"of tensor {tensor_name} ({variable_map[tensor_name]}) from checkpoint reader.")
            _set_initializer(var, ckpt_file, tensor_name)
            continue
        scopes = current[:current.rindex("/")] if "/" in current else ""
        if not tensor_name.endswith("/"):
            raise ValueError(f"Assignment map with scope only name {scopes} should map to scope only "
                             f"{tensor_name}. Should be 'scope/': 'other_scope/'.")
        scope_variables = set()
        for var_name in store_vars:
            if not scopes or var_name.startswith(scopes + "/"):
                # A partitioned variable's parts count as one variable: its name without /part_N.
                scope_variables.add(_PART.sub("", var_name))
        for var_name in sorted(scope_variables):
            full_tensor_name = var_name[len(scopes):]
            if current != "/":
                full_tensor_name = full_tensor_name[1:]
            if tensor_name != "/":
                full_tensor_name = tensor_name + full_tensor_name
            if full_tensor_name.endswith("/"):
                full_tensor_name = full_tensor_name[:-1]
            if full_tensor_name not in variable_map:
                raise ValueError(f"Tensor {full_tensor_name} ({var_name[len(scopes) + 1:]} in {tensor_name}) is "
                                 f"not found in {ckpt_dir_or_file} checkpoint")
            target = store_vars.get(var_name)
            if target is None:
                target = _collect_partitioned(var_name, store_vars)
            if _is_variable(target) and list(target.shape) != variable_map[full_tensor_name]:
                # TF checks shapes only for one-to-one entries and fails at run time here; we fail now.
                raise ValueError(f"Shape of variable {target.name} ({tuple(target.shape)}) doesn't match with "
                                 f"shape of tensor {full_tensor_name} ({variable_map[full_tensor_name]}) from "
                                 f"checkpoint reader.")
            _set_initializer(target, ckpt_file, full_tensor_name)
