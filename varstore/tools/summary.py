"""Tables of variables: ``varstore.summary()`` and ``varstore summary CKPT``.

One row per variable (name, shape, dtype, device, bytes, trainable), then
the totals per device. The device is where the variable lives (or lived), not
what its scope asked for: under soft placement "/gpu:0" on a machine without
one is "/device:CPU:0". For a checkpoint the rows come from the file, and the
device and trainable flag from its ``.meta`` file when there is one.

>>> import varstore as tf
>>> tf.reset_default_graph()
>>> w = tf.Variable(tf.zeros([784, 200]), name="weights")
>>> b = tf.Variable(tf.zeros([200]), name="biases")
>>> step = tf.Variable(0, trainable=False, name="global_step")
>>> tf.summary()  # doctest: +NORMALIZE_WHITESPACE
name         shape       dtype    device         bytes      trainable
weights      [784, 200]  float32  /device:CPU:0  612.5 KiB  yes
biases       [200]       float32  /device:CPU:0  800 B      yes
global_step  []          int32    /device:CPU:0  4 B        no
<BLANKLINE>
device         variables  parameters  bytes      trainable parameters
/device:CPU:0  3          157,001     613.3 KiB  157,000
3 variables are not initialized yet (their bytes are not allocated).
"""
from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Union

from devices.errors import InvalidArgumentError, OpError

from ..checkpoint import store
from ..graph import GraphKeys, get_default_graph
from ..progress import format_bytes
from ..variables import Variable

__all__ = ["summary", "format_summary", "checkpoint_summary"]

Target = Union[None, str, "os.PathLike[str]", Iterable[Variable], Mapping[str, Variable]]


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]], right: frozenset = frozenset()) -> list[str]:
    allrows = [header, *rows]
    widths = [max(len(r[i]) for r in allrows) for i in range(len(header))]
    out = []
    for r in allrows:
        cells = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(r)]
        out.append("  ".join(cells).rstrip())
    return out


def _totals(rows: Sequence[tuple[str, tuple[int, ...], int, bool | None]]) -> list[str]:
    """rows: (device, shape, nbytes, trainable or None if unknown) -> the per-device table."""
    per: dict[str, list[int]] = {}
    for device, shape, nbytes, trainable in rows:
        t = per.setdefault(device, [0, 0, 0, 0, 0])
        n = math.prod(shape)
        t[0] += 1
        t[1] += n
        t[2] += nbytes
        t[3] += n if trainable else 0
        t[4] += trainable is None

    def trainable_cell(t: list[int]) -> str:
        return "?" if t[4] == t[0] else f"{t[3]:,}" + ("+?" if t[4] else "")

    body = [(d, str(t[0]), f"{t[1]:,}", format_bytes(t[2]), trainable_cell(t)) for d, t in per.items()]
    if len(per) > 1:
        s = [sum(t[i] for t in per.values()) for i in range(5)]
        body.append(("total", str(s[0]), f"{s[1]:,}", format_bytes(s[2]), trainable_cell(s)))
    return _table(("device", "variables", "parameters", "bytes", "trainable parameters"), body,
                  right=frozenset({1, 2, 3, 4}))


def _variables(var_list: Any) -> list[tuple[str, Variable]]:
    if var_list is None:
        g = get_default_graph()
        seen: dict[int, Variable] = {}
        for key in (GraphKeys.GLOBAL_VARIABLES, GraphKeys.LOCAL_VARIABLES):
            for v in g.get_collection(key):
                seen.setdefault(id(v), v)
        return [(v.op.name, v) for v in seen.values()]
    items: list[tuple[str | None, Any]] = (list(var_list.items()) if isinstance(var_list, Mapping)
                                               else [(None, v) for v in var_list])
    out: list[tuple[str, Variable]] = []
    for label, v in items:
        if not isinstance(v, Variable):
            raise InvalidArgumentError(f"summary: expected Variables, received {type(v).__name__}")
        out.append((label if label is not None else v.op.name, v))
    return out


def format_summary(var_list: Any = None) -> str:
    """The summary table of ``var_list`` (a list or ``{name: Variable}`` dict; default: the
    default graph's global and local variables) as a string."""
    items = _variables(var_list)
    rows = []
    totals = []
    uninitialized = 0
    for name, v in items:
        nbytes = math.prod(v.shape) * v.dtype.itemsize
        uninitialized += not v.is_initialized
        rows.append((name, str(v.shape.as_list()), v.dtype.name, v.device, format_bytes(nbytes),
                     "yes" if v.trainable else "no"))
        totals.append((v.device, v.shape, nbytes, v.trainable))
    if not rows:
        return "no variables"
    lines = _table(("name", "shape", "dtype", "device", "bytes", "trainable"), rows, right=frozenset({4}))
    lines += [""] + _totals(totals)
    if uninitialized:
        lines.append(f"{uninitialized} variable{'s are' if uninitialized > 1 else ' is'} not initialized yet "
                     f"(their bytes are not allocated).")
    return "\n".join(lines)


def checkpoint_summary(path: str | os.PathLike) -> str:
    """The summary table of a checkpoint file: tensors from the file, device and trainable
    flag from ``PATH.meta`` when it exists (else ``-`` and ``?``)."""
    from ..checkpoint.shards import open_checkpoint as CheckpointReader  # shards followed; TF bundles too
    path = os.fsdecode(os.fspath(path))
    meta_vars: dict[str, dict] = {}
    meta_path = f"{path}.meta"
    note = f"(no {os.path.basename(meta_path)}: device and trainable unknown)"
    from ..checkpoint.tf import is_bundle
    if store.exists(meta_path) and not is_bundle(path):  # TF's .meta is a protobuf MetaGraphDef, not ours
        from ..train.meta_graph import read_meta_graph
        try:
            meta = read_meta_graph(meta_path)
        except OpError as e:
            note = f"({os.path.basename(meta_path)} unreadable, ignored: {e})"
        else:
            by_name = {d["name"]: d for d in meta["variables"]}
            var_map = (meta.get("saver") or {}).get("var_map") or {n: n for n in by_name}
            meta_vars = {key: by_name[name] for key, name in var_map.items() if name in by_name}
            meta_vars.update({n: d for n, d in by_name.items() if n not in meta_vars})
            note = ""
    with CheckpointReader(path) as r:
        rows, totals = [], []
        for name in r.names():
            shape, dtype, nbytes = tuple(r.shape(name)), r.dtype(name), r.nbytes(name)
            d = meta_vars.get(name)
            device = _lived_on(d) if d else "-"
            trainable = d.get("trainable") if d else None
            rows.append((name, str(list(shape)), dtype.name, device, format_bytes(nbytes),
                         "?" if trainable is None else "yes" if trainable else "no"))
            totals.append((device, shape, nbytes, trainable))
        step = r.extra.get("global_step")
    head = f"{path}: {len(rows)} tensors" + (f", global_step {step}" if step is not None else "")
    lines = [head]
    if rows:
        lines += _table(("name", "shape", "dtype", "device", "bytes", "trainable"), rows, right=frozenset({4}))
        lines += [""] + _totals(totals)
    if note:
        lines.append(note)
    return "\n".join(lines)


def _lived_on(d: Mapping[str, Any]) -> str:
    """Where a variable described in a meta file lived. Files written before the meta graph
    recorded it (``placed_device``) only know the request, and say so."""
    if d.get("placed_device"):
        return str(d["placed_device"])
    return f"{d['device']} (requested)" if d.get("device") else "(any)"


def summary(target: Target = None, *, print_fn: Callable[[str], Any] | None = None) -> None:
    """Print a table of variables: name, shape, dtype, device, bytes and trainable flag, then totals per device.

    ``target``: None (the default graph's variables), a list or ``{name: Variable}``
    dict, or the path of a checkpoint file (read with its ``.meta``). ``print_fn``
    receives the text (default: write it to stdout). ``devices.memory_summary()``
    shows what each device actually holds.
    """
    if isinstance(target, (str, os.PathLike)):
        text = checkpoint_summary(target)
    else:
        text = format_summary(target)
    if print_fn is None:
        sys.stdout.write(text + "\n")
    else:
        print_fn(text)


def _main_summary(args: Any) -> int:
    """``varstore summary CKPT`` (called by the command line)."""
    sys.stdout.write(checkpoint_summary(args.path) + "\n")
    return 0
