"""The one normaliser for shapes.

>>> as_shape([784, 200])
(784, 200)
>>> as_shape(3)
(3,)
"""
from __future__ import annotations

import numbers
import operator
from typing import Any

from .errors import InvalidArgumentError


def as_shape(value: Any) -> tuple[int, ...]:
    """Return ``value`` as a tuple of non-negative ints, or raise InvalidArgumentError."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,)
    try:
        dims = tuple(value)
    except TypeError:
        raise InvalidArgumentError(
            f"shape: expected a sequence of non-negative integers, received {value!r}"
        ) from None
    out = []
    for d in dims:
        try:
            if isinstance(d, bool):  # bool is an int to Python, never a dimension
                raise TypeError
            d = operator.index(d)  # ints and numpy integers; 2.0 is refused
        except TypeError:
            raise InvalidArgumentError(
                f"shape: expected integer dimensions, received {value!r} (dimension {d!r})"
            ) from None
        if d < 0:
            raise InvalidArgumentError(
                f"shape: expected non-negative dimensions, received {value!r} (dimension {int(d)})"
            )
        out.append(int(d))
    return tuple(out)


def num_elements(shape: tuple[int, ...]) -> int:
    """Product of the dimensions, as an exact Python int (no overflow)."""
    n = 1
    for d in shape:
        n *= d
    return n
