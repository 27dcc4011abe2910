"""TF 2 object-based checkpoints: keys such as ``model/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE``.

``tf.train.Checkpoint`` names each saved value by the path of attribute names
from the root object to it, then ``.ATTRIBUTES/<attribute>``; a ``/`` inside one
attribute name is escaped as ``.S`` and a ``.`` as ``..``. The bundle also holds
``_CHECKPOINTABLE_OBJECT_GRAPH``, a string scalar: the serialized
TrackableObjectGraph, which records each value's ``full_name`` (the variable's own
name, ``dense/kernel``, as TF 1.x code and varstore name it).

:func:`plain_name` maps a key to its object path (``model/dense/kernel``);
:func:`object_names` maps every variable value of a bundle to its object path or,
with ``by="full_name"``, to the variable's own name. Restore into varstore
variables named either way with a ``var_list`` dict::

    names = object_names("ckpt-1", by="full_name")      # {checkpoint key: "dense/kernel", ...}
    by_name = {v.op.name: v for v in tf.global_variables()}
    tf.train.Saver({k: by_name[n] for k, n in names.items() if n in by_name}).restore(sess, "ckpt-1")

>>> plain_name("model/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE")
'model/dense/kernel'
>>> plain_name("layer.Sa..b/.ATTRIBUTES/VARIABLE_VALUE"), plain_name("_CHECKPOINTABLE_OBJECT_GRAPH")
('layer/a.b', None)
"""
from __future__ import annotations

import os
import re
from typing import Any

from devices.errors import DataLossError, InvalidArgumentError

from .wire import WireError, fields

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


def _unescape(part: str) -> str:
    return re.sub(r"\.(.)", lambda m: {"S": "/", ".": "."}.get(m.group(1), m.group(0)), part)


def plain_name(key: str) -> str | None:
    """The object path of a variable value's key (its attribute names from the root, unescaped);
    None for a key that is not a variable value."""
    if not key.endswith(VALUE_SUFFIX):
        return None
    return "/".join(_unescape(p) for p in key[:-len(VALUE_SUFFIX)].split("/"))


def full_names(graph: bytes) -> dict[str, str]:
    """{checkpoint key: full_name} from a serialized TrackableObjectGraph (nodes = 1; each node's
    attributes = 2, SerializedTensor {full_name = 2, checkpoint_key = 3})."""
    out: dict[str, str] = {}
    try:
        for number, wt, start, end in fields(graph, 0, len(graph)):
            if number != 1 or wt != 2:
                continue
            for n2, wt2, s2, e2 in fields(graph, start, end):
                if n2 != 2 or wt2 != 2:
                    continue
                full = key = None
                for n3, wt3, s3, e3 in fields(graph, s2, e2):
                    if n3 in (2, 3) and wt3 == 2:
                        text = graph[s3:e3].decode("utf-8")
                        full, key = (text, key) if n3 == 2 else (full, text)
                if full and key:
                    out[key] = full
    except (WireError, UnicodeDecodeError) as e:
        raise DataLossError(f"{OBJECT_GRAPH_KEY}: not a valid TrackableObjectGraph ({e})") from None
    return out


def object_names(checkpoint: Any, by: str = "path") -> dict[str, str]:
    """{key: name} for every variable value in a TF 2 object-based checkpoint.

    ``checkpoint`` is a bundle prefix or an open reader. ``by="path"``: the object path
    (``model/dense/kernel``); ``by="full_name"``: the variable's own name from the object
    graph (``dense/kernel``), falling back to the path for a value the graph does not name.
    Keys that are not variable values (the object graph itself) are left out.
    """
    if by not in ("path", "full_name"):
        raise InvalidArgumentError(f"object_names: by must be 'path' or 'full_name', received {by!r}")
    if isinstance(checkpoint, (str, os.PathLike)):
        from .reader import TFBundleReader
        with TFBundleReader(checkpoint) as r:
            return object_names(r, by)
    names = {k: p for k in checkpoint.names() if (p := plain_name(k)) is not None}
    if by == "full_name" and checkpoint.has_tensor(OBJECT_GRAPH_KEY):
        graph = checkpoint.get_tensor(OBJECT_GRAPH_KEY)
        full = full_names(bytes(graph.reshape(-1)[0])) if graph.size == 1 else {}
        names = {k: full.get(k, p) for k, p in names.items()}
    return names


__all__ = ["plain_name", "object_names", "full_names", "OBJECT_GRAPH_KEY", "VALUE_SUFFIX"]
