"""The one normaliser for shapes, and TF 1.x's TensorShape.

:func:`as_shape` is what internal code uses: a concrete shape as a tuple of
non-negative ints. :class:`TensorShape` is what users see (``v.shape``,
``v.get_shape()``, a placeholder's partial shape): TF 1.x's API, with
unknown dimensions and unknown rank. A fully defined TensorShape *is* a
tuple of ints (:class:`Dimension` elements are ints), so it goes wherever a
shape tuple goes: numpy, dict keys, ``==`` with a tuple, msgpack.

>>> as_shape([784, 200])
(784, 200)
>>> as_shape(3)
(3,)
>>> s = TensorShape([None, 3])
>>> s, str(s), s[1].value, s.as_list()
(TensorShape([Dimension(None), Dimension(3)]), '(?, 3)', 3, [None, 3])
"""
from __future__ import annotations

import numbers
import operator
from collections.abc import Iterator
from typing import Any

from .errors import InvalidArgumentError


def as_shape(value: Any) -> tuple[int, ...]:
    """Return ``value`` as a tuple of non-negative ints, or raise InvalidArgumentError.

    A TensorShape is taken when it is fully defined.

    >>> as_shape(TensorShape([2, 3])), as_shape(())
    ((2, 3), ())
    """
    if isinstance(value, TensorShape) and not value.is_fully_defined():
        raise InvalidArgumentError(f"shape: expected a fully defined shape, received {value}")
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
    """Product of the dimensions, as an exact Python int (no overflow).

    >>> num_elements((2, 3)), num_elements(())
    (6, 1)
    """
    n = 1
    for d in shape:
        n *= d
    return int(n)  # a plain int even when the dimensions are Dimensions


# -- Dimension ---------------------------------------------------------------------------------

class Dimension:
    """TF 1.x's ``tf.Dimension``: one dimension of a TensorShape, known or unknown.

    ``Dimension(3)`` is an int (numpy, indexing and arithmetic take it);
    ``Dimension(None)`` is the unknown dimension, which is not. Both answer
    ``.value`` (3, None). Arithmetic between dimensions and ints gives a
    Dimension, unknown if either side is. Comparisons with an unknown
    dimension give None, as TF's do.

    >>> d = Dimension(3)
    >>> d, d.value, int(d) + 1, d * 2, Dimension(None) + 1, [1, 2, 3, 4][d]
    (Dimension(3), 3, 4, Dimension(6), Dimension(None), 4)
    """

    __slots__ = ()

    value: int | None

    def __new__(cls, value: Any) -> Dimension:  # type: ignore[misc]
        if value is None:
            return _UNKNOWN
        if isinstance(value, Dimension):
            return value  # immutable: the same object
        if type(value) is int:
            known = _KNOWN.get(value)
            if known is not None:
                return known
            if 0 <= value < _KNOWN_MAX:
                known = _KNOWN[value] = _KnownDimension(value)
                return known
        if isinstance(value, bool):  # an int to Python, never a dimension (as as_shape)
            raise TypeError(f"Dimension value must be integer or None, got {value!r}")
        try:
            v = operator.index(value)
        except TypeError:
            raise TypeError(
                f"Dimension value must be integer or None or have an __index__ method, got value "
                f"{value!r} with type {type(value)!r}") from None
        if v < 0:
            raise InvalidArgumentError(f"Dimension {v} must be >= 0")
        return _KnownDimension(v)

    def is_compatible_with(self, other: Any) -> bool:
        """True if both are known and equal, or either is unknown.

        >>> Dimension(3).is_compatible_with(None), Dimension(3).is_compatible_with(4)
        (True, False)
        """
        other = Dimension(other)
        return self.value is None or other.value is None or self.value == other.value

    def assert_is_compatible_with(self, other: Any) -> None:
        """ValueError (InvalidArgumentError) unless :meth:`is_compatible_with`."""
        if not self.is_compatible_with(other):
            raise InvalidArgumentError(f"Dimensions {self} and {other} are not compatible")

    def merge_with(self, other: Any) -> Dimension:
        """The known one of two compatible dimensions.

        >>> Dimension(None).merge_with(4)
        Dimension(4)
        """
        other = Dimension(other)
        self.assert_is_compatible_with(other)
        return self if self.value is not None else other


class _KnownDimension(int, Dimension):
    """A known dimension: an int that prints and computes as TF's Dimension."""

    __slots__ = ()

    def __new__(cls, value: int) -> _KnownDimension:
        return int.__new__(cls, value)

    @property
    def value(self) -> int:
        return int(self)

    def __repr__(self) -> str:
        return f"Dimension({int(self)})"

    def __str__(self) -> str:
        return int.__repr__(self)

    __format__ = int.__format__

    def __reduce__(self) -> tuple:
        return Dimension, (int(self),)

    # Arithmetic keeps TF's type (an unknown operand is handled by _UnknownDimension's reflected
    # operator: int's returns NotImplemented for it). Comparisons and hashing stay int's, so a
    # shape full of Dimensions compares and hashes as fast as a tuple of ints.
    def _arith(op: Any) -> Any:  # a class-body helper that makes the operator methods
        def method(self: _KnownDimension, other: Any) -> Any:
            if isinstance(other, _KnownDimension) or (type(other) is int and other >= 0):
                result = op(int(self), int(other))
                return Dimension(result) if result >= 0 else result
            return NotImplemented
        method.__name__ = op.__name__
        return method

    __add__ = __radd__ = _arith(operator.add)
    __mul__ = __rmul__ = _arith(operator.mul)
    __sub__ = _arith(operator.sub)
    __rsub__ = _arith(lambda a, b: b - a)
    __floordiv__ = _arith(operator.floordiv)
    __rfloordiv__ = _arith(lambda a, b: b // a)
    __mod__ = _arith(operator.mod)
    __rmod__ = _arith(lambda a, b: b % a)
    del _arith


class _UnknownDimension(Dimension):
    """``Dimension(None)``: one instance, so shapes holding it compare equal by identity."""

    __slots__ = ()
    value = None

    def __new__(cls) -> _UnknownDimension:
        return object.__new__(cls)

    def __repr__(self) -> str:
        return "Dimension(None)"

    def __str__(self) -> str:
        return "?"

    def __reduce__(self) -> tuple:
        return Dimension, (None,)

    def __hash__(self) -> int:
        return hash(None)  # a shape (None, 3) hashes as the tuple (None, 3), as TF's

    def __eq__(self, other: Any) -> Any:
        # TF: whether an unknown dimension equals anything is unknown (None). Tuples compare
        # items by identity first, so shapes holding this one instance still compare equal.
        if other is None or isinstance(other, (numbers.Integral, Dimension)):
            return None
        return NotImplemented

    __ne__ = __eq__

    def _unknown(self, other: Any) -> Any:
        if other is None or isinstance(other, (numbers.Integral, Dimension)):
            return self
        return NotImplemented

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _unknown
    __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _unknown

    def _none(self, other: Any) -> Any:
        return None if other is None or isinstance(other, (numbers.Integral, Dimension)) else NotImplemented

    __lt__ = __le__ = __gt__ = __ge__ = _none

    def __int__(self) -> int:
        raise TypeError("an unknown dimension (Dimension(None)) has no int value")

    __index__ = __int__


_UNKNOWN = _UnknownDimension()
# Dimensions of the sizes seen so far (below _KNOWN_MAX), each made once: building a TensorShape
# is then a dict lookup per axis. Filled on use: making them all at import would cost it ~2 ms.
_KNOWN: dict[int, _KnownDimension] = {}
_KNOWN_MAX = 1 << 16


def dimension_value(dimension: Any) -> int | None:
    """The int (or None) of a Dimension, an int or None: TF's ``tf.dimension_value``.

    >>> dimension_value(TensorShape([None, 3])[1]), dimension_value(None), dimension_value(4)
    (3, None, 4)
    """
    if isinstance(dimension, Dimension):
        return dimension.value
    return dimension


def dimension_at_index(shape: Any, index: int) -> Dimension:
    """``shape[index]`` as a Dimension; Dimension(None) when the rank is unknown.

    >>> dimension_at_index(TensorShape(None), 5)
    Dimension(None)
    """
    return TensorShape(shape)[index]


# -- TensorShape -------------------------------------------------------------------------------

class TensorShape(tuple):
    """TF 1.x's ``tf.TensorShape``: a shape whose dimensions or rank may be unknown.

    A tuple of :class:`Dimension` (ints when known), so a fully defined
    shape goes wherever a tuple of ints does: ``np.zeros(shape)``,
    ``shape == (2, 3)``, dict keys, ``list(shape)`` into msgpack.
    ``TensorShape(None)`` has unknown rank: ``len`` and iteration raise, as TF's.
    ``==`` converts the other side (a list, a tuple, an int) as TF does;
    unknown dimensions are equal to each other.

    >>> s = TensorShape([2, 3])
    >>> s == (2, 3), s == [2, 3], s.num_elements(), s[1:], s.concatenate([4]).as_list()
    (True, True, 6, TensorShape([Dimension(3)]), [2, 3, 4])
    >>> TensorShape([None, 3]).merge_with([2, None])
    TensorShape([Dimension(2), Dimension(3)])
    >>> TensorShape(None).ndims, str(TensorShape(None))
    (None, '<unknown>')
    """

    __slots__ = ()

    def __new__(cls, dims: Any = None) -> TensorShape:
        if isinstance(dims, TensorShape):
            return dims  # immutable: the same object
        if dims is None:
            return _UNKNOWN_RANK
        if type(dims) is tuple:
            cached = _CACHE.get(dims)
            # Only for the ints and Nones it was made from: (2.0, 3) and (True, 3) are equal keys.
            if cached is not None and _PLAIN.issuperset(map(type, dims)):
                return cached
        if isinstance(dims, (str, bytes)):
            raise TypeError(f"Failed to convert {dims!r} to a shape: a shape is a dimension or a "
                            f"sequence of dimensions (ints or None)")
        if isinstance(dims, (numbers.Integral, Dimension)) and not isinstance(dims, bool):
            items: Any = (dims,)
        else:
            try:
                items = iter(dims)
            except TypeError:
                raise TypeError(f"Failed to convert {dims!r} to a shape: a shape is a dimension or a "
                                f"sequence of dimensions (ints or None)") from None
        shape = tuple.__new__(cls, [Dimension(d) for d in items])
        if type(dims) is tuple and len(_CACHE) < _CACHE_MAX and _PLAIN.issuperset(map(type, dims)):
            _CACHE[dims] = shape
        return shape

    # -- what TF calls the shape's properties ------------------------------------------------

    @property
    def dims(self) -> list[Dimension] | None:
        """The dimensions as a list of Dimension; None when the rank is unknown."""
        return list(self)

    @property
    def ndims(self) -> int | None:
        """The rank; None when unknown."""
        return tuple.__len__(self)

    @property
    def rank(self) -> int | None:
        """The rank; None when unknown (``ndims``)."""
        return self.ndims

    def as_list(self) -> list[int | None]:
        """The dimensions as ints, None for unknown ones; ValueError for an unknown rank.

        >>> TensorShape([None, 3]).as_list()
        [None, 3]
        """
        return [d.value for d in self]

    def num_elements(self) -> int | None:
        """The number of elements; None unless fully defined."""
        if not self.is_fully_defined():
            return None
        return num_elements(self)

    def is_fully_defined(self) -> bool:
        """True when the rank and every dimension are known."""
        # By identity: `_UNKNOWN in self` would call its __eq__ for every known dimension.
        return all(d is not _UNKNOWN for d in tuple.__iter__(self))

    def assert_is_fully_defined(self) -> None:
        """ValueError (InvalidArgumentError) unless fully defined."""
        if not self.is_fully_defined():
            raise InvalidArgumentError(f"Shape {self} is not fully defined")

    # -- compatibility, merging ----------------------------------------------------------------

    def is_compatible_with(self, other: Any) -> bool:
        """True if the two shapes could describe the same tensor (unknowns match anything).

        >>> TensorShape([2, None]).is_compatible_with([2, 3]), TensorShape([2]).is_compatible_with([2, 3])
        (True, False)
        """
        other = TensorShape(other)
        if self.ndims is None or other.ndims is None:
            return True
        return len(self) == len(other) and all(a.is_compatible_with(b) for a, b in zip(self, other))

    def assert_is_compatible_with(self, other: Any) -> None:
        """ValueError (InvalidArgumentError) unless :meth:`is_compatible_with`."""
        if not self.is_compatible_with(other):
            raise InvalidArgumentError(f"Shapes {self} and {other} are incompatible")

    def merge_with(self, other: Any) -> TensorShape:
        """The most specific shape compatible with both; ValueError (InvalidArgumentError) if
        they are incompatible."""
        other = TensorShape(other)
        if self.ndims is None:
            return other
        if other.ndims is None:
            return self
        if len(self) != len(other) or not self.is_compatible_with(other):
            raise InvalidArgumentError(f"Shapes {self} and {other} are not compatible")
        return TensorShape([a.merge_with(b) for a, b in zip(self, other)])

    def most_specific_compatible_shape(self, other: Any) -> TensorShape:
        """The most specific shape that both are compatible with (unequal dims become unknown).

        >>> TensorShape([2, 3]).most_specific_compatible_shape([2, 4])
        TensorShape([Dimension(2), Dimension(None)])
        """
        other = TensorShape(other)
        if self.ndims is None or other.ndims is None or len(self) != len(other):
            return _UNKNOWN_RANK
        return TensorShape([a if a.value is not None and a.value == b.value else None
                            for a, b in zip(self, other)])

    def concatenate(self, other: Any) -> TensorShape:
        """This shape's dimensions followed by ``other``'s; unknown rank if either's is.

        >>> TensorShape([2]).concatenate(3)
        TensorShape([Dimension(2), Dimension(3)])
        """
        other = TensorShape(other)
        if self.ndims is None or other.ndims is None:
            return _UNKNOWN_RANK
        return tuple.__new__(TensorShape, tuple.__add__(self, other))

    def _rank_error(self, what: str) -> InvalidArgumentError:
        return InvalidArgumentError(f"Shape {self} must have rank {what}")

    def with_rank(self, rank: int) -> TensorShape:
        """This shape, with ``rank`` unknown dimensions if its rank is unknown; ValueError
        (InvalidArgumentError) for another rank."""
        if self.ndims is None:
            return TensorShape([None] * rank)
        if len(self) != rank:
            raise self._rank_error(str(rank))
        return self

    def with_rank_at_least(self, rank: int) -> TensorShape:
        """This shape; ValueError (InvalidArgumentError) if its rank is known and below ``rank``."""
        if self.ndims is not None and len(self) < rank:
            raise self._rank_error(f"at least {rank}")
        return self

    def with_rank_at_most(self, rank: int) -> TensorShape:
        """This shape; ValueError (InvalidArgumentError) if its rank is known and above ``rank``."""
        if self.ndims is not None and len(self) > rank:
            raise self._rank_error(f"at most {rank}")
        return self

    def assert_has_rank(self, rank: int) -> None:
        """ValueError (InvalidArgumentError) if the rank is known and not ``rank``."""
        if self.ndims is not None and len(self) != rank:
            raise self._rank_error(str(rank))

    def assert_same_rank(self, other: Any) -> None:
        """ValueError (InvalidArgumentError) if both ranks are known and differ."""
        other = TensorShape(other)
        if self.ndims is not None and other.ndims is not None and len(self) != len(other):
            raise InvalidArgumentError(f"Shapes {self} and {other} must have the same rank")

    # -- the tuple, as TF's shape answers it ---------------------------------------------------

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice):
            return tuple.__new__(TensorShape, tuple.__getitem__(self, key))
        return tuple.__getitem__(self, key)

    def __add__(self, other: Any) -> TensorShape:
        return self.concatenate(other)

    def __radd__(self, other: Any) -> TensorShape:
        return TensorShape(other).concatenate(self)

    def __eq__(self, other: Any) -> bool:
        if type(other) is tuple and None not in other:  # a shape tuple of ints: as tuples compare
            return tuple.__eq__(self, other)
        if not isinstance(other, TensorShape):
            # A list, an int, or a tuple that may hold None for an unknown dimension (only the
            # one unknown Dimension instance makes unknown dimensions equal, as TF's are).
            try:
                other = TensorShape(other)
            except (TypeError, ValueError):
                return NotImplemented
        if type(other) is _UnknownRankShape:
            return False
        return tuple.__eq__(self, other)

    def __ne__(self, other: Any) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = tuple.__hash__

    def __bool__(self) -> bool:
        return True  # TF: a scalar shape () is true, only the unknown rank is false

    def __repr__(self) -> str:
        return f"TensorShape([{', '.join(map(repr, self))}])"

    def __str__(self) -> str:
        if len(self) == 1:
            return f"({self[0]},)"
        return f"({', '.join(map(str, self))})"

    def __reduce__(self) -> tuple:
        return TensorShape, (self.as_list(),)


class _UnknownRankShape(TensorShape):
    """``TensorShape(None)``: one instance. Its rank, length and dimensions are unknown."""

    __slots__ = ()

    @property
    def dims(self) -> None:
        return None

    @property
    def ndims(self) -> None:
        return None

    def as_list(self) -> list:
        raise InvalidArgumentError("as_list() is not defined on an unknown TensorShape.")

    def is_fully_defined(self) -> bool:
        return False

    def __len__(self) -> int:
        raise InvalidArgumentError("Cannot take the length of shape with unknown rank.")

    def __iter__(self) -> Iterator[Dimension]:
        raise InvalidArgumentError("Cannot iterate over a shape with unknown rank.")

    def __getitem__(self, key: Any) -> Any:
        return self if isinstance(key, slice) else _UNKNOWN

    def __eq__(self, other: Any) -> bool:
        return other is self  # one instance; TF: equal to another unknown-rank shape only

    def __ne__(self, other: Any) -> bool:
        return other is not self

    __hash__ = tuple.__hash__

    def __bool__(self) -> bool:
        return False

    def __contains__(self, item: Any) -> bool:
        return False

    def __repr__(self) -> str:
        return "TensorShape(None)"

    def __str__(self) -> str:
        return "<unknown>"

    def __reduce__(self) -> tuple:
        return TensorShape, (None,)


_UNKNOWN_RANK = tuple.__new__(_UnknownRankShape, ())
# Shapes made from plain tuples (a variable's storage shape), made once: `v.shape` in a loop
# costs a dict lookup. Bounded: a program with endless distinct shapes only stops caching.
_CACHE: dict[tuple, TensorShape] = {}
_CACHE_MAX = 4096
_PLAIN = frozenset({int, type(None)})
