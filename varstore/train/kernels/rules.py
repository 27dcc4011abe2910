"""What each update rule needs: slot names, hyperparameter names, flags.

Shared by the reference, the CPU and the GPU kernels so that every backend
accepts exactly the same arguments and rejects the same mistakes.

>>> parse("adam", {"lr": 0.1, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8})
('adam', ('m', 'v'), (0.1, 0.9, 0.999, 1e-08), False)
>>> parse("rmsprop", {"lr": 0.1, "decay": 0.9, "momentum": 0.0, "epsilon": 1e-10, "centered": True})[:2]
('centered_rmsprop', ('rms', 'momentum', 'mg'))
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from devices.dtypes import bfloat16
from devices.errors import InvalidArgumentError

# Slot keys the caller must pass (TF 1.x slot names). RMSProp adds "mg" when centered.
RULES: dict[str, tuple[str, ...]] = {
    "sgd": (),
    "momentum": ("momentum",),
    "adam": ("m", "v"),
    "adagrad": ("accumulator",),
    "rmsprop": ("rms", "momentum"),
}
# Float hyperparameters, in the order the kernels take them.
HYPERS: dict[str, tuple[str, ...]] = {
    "sgd": ("lr",),
    "momentum": ("lr", "momentum"),
    "adam": ("lr", "beta1", "beta2", "epsilon"),
    "adagrad": ("lr",),
    "rmsprop": ("lr", "decay", "momentum", "epsilon"),
}
# Boolean switches (default False). They select a kernel variant, never a per-element branch.
FLAGS: dict[str, str] = {"momentum": "use_nesterov", "rmsprop": "centered"}

_CENTERED_SLOTS = RULES["rmsprop"] + ("mg",)


def slot_names(rule: str, centered: bool = False) -> tuple[str, ...]:
    """Slot keys ``rule`` needs (``centered`` only matters for rmsprop).

    >>> slot_names("rmsprop", centered=True)
    ('rms', 'momentum', 'mg')
    """
    if rule not in RULES:
        raise InvalidArgumentError(f"unknown update rule {rule!r}; expected one of {sorted(RULES)}")
    return _CENTERED_SLOTS if rule == "rmsprop" and centered else RULES[rule]


def parse(rule: str, hyper: Mapping[str, Any]) -> tuple[str, tuple[str, ...], tuple[float, ...], bool]:
    """Check ``hyper`` against ``rule``; return (kernel name, slot keys, float hypers, flag).

    The kernel name is the rule's, except ``centered_rmsprop`` for a centered
    rmsprop. Hyperparameters become Python floats (0-d arrays are accepted).
    """
    names = HYPERS.get(rule)
    if names is None:
        raise InvalidArgumentError(f"unknown update rule {rule!r}; expected one of {sorted(RULES)}")
    flag_name = FLAGS.get(rule)
    flag = False
    n = len(hyper)
    if flag_name is not None and flag_name in hyper:
        flag = bool(hyper[flag_name])
        n -= 1
    try:
        values = tuple([float(hyper[k]) for k in names])
    except KeyError:
        missing = [k for k in names if k not in hyper]
        raise InvalidArgumentError(f"{rule}: missing hyperparameter(s) {missing}") from None
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(f"{rule}: hyperparameters must be real numbers ({e})") from None
    if n != len(names):
        allowed = set(names) | ({flag_name} if flag_name else set())
        raise InvalidArgumentError(
            f"{rule}: unexpected hyperparameter(s) {sorted(set(hyper) - allowed)}; accepted: {sorted(allowed)}")
    if rule == "rmsprop" and flag:
        return "centered_rmsprop", _CENTERED_SLOTS, values, flag
    return rule, RULES[rule], values, flag


def check_slots(rule: str, keys: tuple[str, ...], slots: Mapping[str, Any]) -> list:
    """The slot arrays in kernel order; InvalidArgumentError naming a missing or extra key."""
    try:
        arrays = [slots[k] for k in keys]
    except KeyError:
        missing = [k for k in keys if k not in slots]
        raise InvalidArgumentError(f"{rule}: missing slot(s) {missing}; this rule needs {list(keys)}") from None
    except TypeError:
        raise InvalidArgumentError(f"{rule}: slots must be a mapping of name -> array") from None
    if len(slots) != len(keys):
        raise InvalidArgumentError(
            f"{rule}: unexpected slot(s) {sorted(set(slots) - set(keys))}; this rule needs {list(keys)}")
    return arrays


HALF = (np.dtype(np.float16), bfloat16)
# (var dtype, operand dtype) pairs every backend accepts: the same dtype, or float32
# gradients/slots beside a half-precision var (computed in float32 anyway).
DTYPE_PAIRS = frozenset({(np.dtype(d), np.dtype(d)) for d in (np.float16, np.float32, np.float64, bfloat16)}
                        | {(h, np.dtype(np.float32)) for h in HALF})


def check_operand(rule: str, what: str, shape: tuple, dtype: np.dtype, a_shape: tuple, a_dtype: Any) -> None:
    """Raise InvalidArgumentError when an operand's shape or dtype does not fit the var's."""
    if a_shape != shape:
        raise InvalidArgumentError(f"{rule}: {what} has shape {a_shape}, expected {shape}")
    if (dtype, a_dtype) not in DTYPE_PAIRS:
        if what == "var":
            raise InvalidArgumentError(
                f"{rule}: var has dtype {a_dtype}; expected float16, bfloat16, float32 or float64")
        raise InvalidArgumentError(
            f"{rule}: {what} has dtype {a_dtype}, var has {dtype}"
            + (" (float32 is also accepted with a half-precision var)" if dtype in HALF else ""))
