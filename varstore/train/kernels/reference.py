"""Ground truth: the TF 1.x update rules in plain float64 numpy.

Each function returns new float64 arrays and leaves its inputs alone. The
compiled kernels are tested against these; nothing else should call them
on a hot path (they make a memory pass per operation).

>>> import numpy as np
>>> var, slots = apply_dense("sgd", np.ones(3), np.full(3, 2.0), {}, lr=0.5)
>>> var.tolist()
[0.0, 0.0, 0.0]
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from devices.errors import InvalidArgumentError

from . import rules


def _f64(a: Any) -> np.ndarray:
    return np.array(a, dtype=np.float64)  # a copy: callers' arrays are never written


def _update(kernel: str, h: tuple[float, ...], flag: bool, var: np.ndarray, g: np.ndarray,
            s: list[np.ndarray]) -> None:
    """Apply ``kernel`` in place on float64 arrays (var, slots)."""
    if kernel == "sgd":
        (lr,) = h
        var -= lr * g
    elif kernel == "momentum":
        lr, mom = h
        s[0][...] = mom * s[0] + g
        var -= (lr * g + lr * mom * s[0]) if flag else lr * s[0]
    elif kernel == "adam":
        lr, b1, b2, eps = h
        s[0][...] = b1 * s[0] + (1.0 - b1) * g
        s[1][...] = b2 * s[1] + (1.0 - b2) * g * g
        var -= lr * s[0] / (np.sqrt(s[1]) + eps)
    elif kernel == "adagrad":
        (lr,) = h
        s[0] += g * g
        var -= lr * g / np.sqrt(s[0])
    elif kernel in ("rmsprop", "centered_rmsprop"):
        lr, decay, mom, eps = h
        rms, momentum = s[0], s[1]
        rms[...] = decay * rms + (1.0 - decay) * g * g
        if kernel == "centered_rmsprop":
            mg = s[2]
            mg[...] = decay * mg + (1.0 - decay) * g
            denom = rms - mg * mg + eps
        else:
            denom = rms + eps
        momentum[...] = mom * momentum + lr * g / np.sqrt(denom)
        var -= momentum
    else:  # pragma: no cover - rules.parse only returns the names above
        raise AssertionError(kernel)


def apply_dense(rule: str, var: Any, grad: Any, slots: Mapping[str, Any],
                **hyper: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One dense step of ``rule``; returns (new var, new slots) in float64.

    >>> import numpy as np
    >>> v, s = apply_dense("momentum", np.zeros(2), np.ones(2), {"momentum": np.ones(2)},
    ...                    lr=0.1, momentum=0.5)
    >>> v.tolist(), s["momentum"].tolist()
    ([-0.15000000000000002, -0.15000000000000002], [1.5, 1.5])
    """
    kernel, keys, h, flag = rules.parse(rule, hyper)
    out_var = _f64(var)
    out = [_f64(a) for a in rules.check_slots(rule, keys, slots)]
    g = _f64(grad)
    for name, a in [("grad", g)] + list(zip(keys, out)):
        if a.shape != out_var.shape:
            raise InvalidArgumentError(f"{rule}: {name} has shape {a.shape}, var has {out_var.shape}")
    _update(kernel, h, flag, out_var, g, out)
    return out_var, dict(zip(keys, out))


def dedupe(indices: Any, values: Any, first_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique row indices and the float64 sum of their rows of ``values`` (2-D, a row per index).

    Raises InvalidArgumentError for an index outside ``[0, first_dim)``.

    >>> rows, sums = dedupe([2, 0, 2], np.array([[1.0], [2.0], [3.0]]), 3)
    >>> rows.tolist(), sums.tolist()
    ([0, 2], [[2.0], [4.0]])
    """
    idx = np.asarray(indices)
    if idx.dtype.kind not in "iu":
        raise InvalidArgumentError(f"indices must be integers, got dtype {idx.dtype}")
    idx = idx.reshape(-1).astype(np.int64)
    vals = _f64(values)
    if vals.ndim != 2 or vals.shape[0] != idx.size:
        raise InvalidArgumentError(f"values must have shape (len(indices), row size), got {vals.shape}")
    bad = np.flatnonzero((idx < 0) | (idx >= first_dim))
    if bad.size:
        k = int(bad[0])
        raise InvalidArgumentError(f"indices[{k}] = {int(idx[k])} is not in [0, {first_dim})")
    rows, inverse = np.unique(idx, return_inverse=True)
    sums = np.zeros((rows.size, vals.shape[1]))
    np.add.at(sums, inverse.reshape(-1), vals)
    return rows, sums


def apply_sparse(rule: str, var: Any, indices: Any, values: Any, slots: Mapping[str, Any],
                 **hyper: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One sparse step: duplicates summed, then only those rows of var and slots updated.

    >>> import numpy as np
    >>> v, s = apply_sparse("adagrad", np.zeros((3, 1)), [2, 2], np.ones((2, 1)),
    ...                     {"accumulator": np.zeros((3, 1))}, lr=1.0)
    >>> v.ravel().tolist(), s["accumulator"].ravel().tolist()
    ([0.0, 0.0, -1.0], [0.0, 0.0, 4.0])
    """
    kernel, keys, h, flag = rules.parse(rule, hyper)
    out_var = _f64(var)
    out = [_f64(a) for a in rules.check_slots(rule, keys, slots)]
    if out_var.ndim == 0:
        raise InvalidArgumentError(f"{rule}: a sparse update needs a var with at least one dimension")
    for name, a in zip(keys, out):
        if a.shape != out_var.shape:
            raise InvalidArgumentError(f"{rule}: slot {name} has shape {a.shape}, var has {out_var.shape}")
    idx = np.asarray(indices)
    vals = np.asarray(values)
    if vals.shape != idx.shape + out_var.shape[1:]:
        raise InvalidArgumentError(
            f"{rule}: values have shape {vals.shape}, expected indices.shape + var.shape[1:] = "
            f"{idx.shape + out_var.shape[1:]}")
    row = out_var.reshape(out_var.shape[0], -1)
    rows, g = dedupe(idx, vals.reshape(idx.size, row.shape[1]), out_var.shape[0])
    sub_var = row[rows]
    sub_slots = [a.reshape(row.shape)[rows] for a in out]
    _update(kernel, h, flag, sub_var, g, sub_slots)
    row[rows] = sub_var
    for a, sub in zip(out, sub_slots):
        a.reshape(row.shape)[rows] = sub
    return out_var, dict(zip(keys, out))
