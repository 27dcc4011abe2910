"""The one normaliser for dtypes: names, numpy dtypes, ml_dtypes' bfloat16, TF's DType.

Only plain numeric and bool dtypes are allowed: no object, string or
structured dtypes, so nothing that needs code (pickle) to rebuild.

:func:`as_dtype` returns a :class:`DType`: TF 1.x's DType API (``name``,
``is_floating``, ``as_numpy_dtype``, ``min``, ...) on an object that numpy also
takes wherever it takes a dtype (numpy reads its ``.dtype`` attribute, a real
``np.dtype``), so internal code keeps using it as a numpy dtype.

>>> as_dtype("bfloat16").name
'bfloat16'
>>> as_dtype("float32") == as_dtype(np.float32) == np.dtype("float32")
True
>>> np.zeros(2, dtype=as_dtype("float32")).dtype
dtype('float32')
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InvalidArgumentError

_NUMPY_NAMES = (
    "bool", "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "complex64", "complex128",
)

# TF's DataType enum values (types.proto), what `as_datatype_enum` answers and `DType(1)` takes.
_ENUMS = {
    "float32": 1, "float64": 2, "int32": 3, "uint8": 4, "int16": 5, "int8": 6, "complex64": 8,
    "int64": 9, "bool": 10, "bfloat16": 14, "uint16": 17, "complex128": 18, "float16": 19,
    "uint32": 22, "uint64": 23,
}
_BY_ENUM = {v: k for k, v in _ENUMS.items()}

# TF's `DType.limits` table (dtypes.py's dtype_range): image value ranges, not numeric limits;
# float16, bfloat16 and the complex types have none there.
_LIMITS: dict[str, tuple[Any, Any]] = {
    "bool": (False, True), "uint8": (0, 255), "uint16": (0, 65535), "int8": (-128, 127),
    "int16": (-32768, 32767), "int64": (-2**63, 2**63 - 1), "uint64": (0, 2**64 - 1),
    "int32": (-2**31, 2**31 - 1), "uint32": (0, 2**32 - 1), "float32": (-1, 1), "float64": (-1, 1),
}


class DType:
    """A TF 1.x ``tf.DType`` that is also a numpy dtype spec.

    One instance per dtype (``as_dtype("float32") is as_dtype(np.float32)``).
    numpy accepts it wherever it takes a dtype, through the ``dtype``
    attribute (the ``np.dtype``); numpy's attributes (``itemsize``, ``kind``,
    ``type``, ``str``, ``newbyteorder``, ...) answer as the numpy dtype's do.
    Equal to another spelling of the same dtype: a DType, a numpy dtype or
    scalar type, a name (TF's aliases too), TF's enum value. It hashes as its
    numpy dtype, so dicts keyed by numpy dtypes find it (a name is equal but
    hashes differently, as it does for numpy's own dtypes).

    >>> f = as_dtype("float")
    >>> f, f.name, f.is_floating, f.size, f.as_datatype_enum
    (tf.float32, 'float32', True, 4, 1)
    >>> np.arange(3).astype(f).dtype == f, f == np.float32, f == "float32", hash(f) == hash(np.dtype("f4"))
    (True, True, True, True)
    >>> DType(1) is f  # TF's constructor takes the enum value
    True
    """

    # numpy >= 2.4 reads __numpy_dtype__ first (older ones .dtype): a slot, so numpy finds it
    # without going through __getattr__ (which made each conversion ~1 us slower).
    __slots__ = ("name", "dtype", "__numpy_dtype__", "itemsize", "kind", "type", "char", "_hash")

    name: str
    dtype: np.dtype  # what numpy reads when this object is passed as a dtype
    itemsize: int
    kind: str
    type: type
    char: str

    def __new__(cls, type_enum: Any) -> DType:
        # Only the interned instances exist: `DType(x)` is as_dtype(x) (TF's takes the enum).
        return as_dtype(type_enum)

    @classmethod
    def _make(cls, dt: np.dtype, name: str) -> DType:
        self = object.__new__(cls)
        for attr, value in (("name", name), ("dtype", dt), ("__numpy_dtype__", dt), ("itemsize", dt.itemsize), ("kind", dt.kind),
                            ("type", dt.type), ("char", dt.char), ("_hash", hash(dt))):
            object.__setattr__(self, attr, value)
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{self!r} is immutable")

    def __getattr__(self, name: str) -> Any:
        # The rest of numpy's dtype API (str, byteorder, isnative, newbyteorder, alignment, ...).
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dtype, name)

    # -- identity, equality, printing --------------------------------------------------------

    def __eq__(self, other: Any) -> bool:
        if other is self:
            return True
        if type(other) is DType:
            return False  # interned: another instance is another dtype
        if isinstance(other, np.dtype):
            # numpy's equality (byte order counts), so `dt == arr.dtype` answers as
            # `arr.dtype == dt` does: internal code decides on it whether to convert.
            return bool(self.dtype == other)
        try:
            return as_dtype(other) is self
        except InvalidArgumentError:
            pass
        if isinstance(other, str):  # numpy's other names ("f4", "<f4"), as np.dtype's __eq__
            try:
                return bool(self.dtype == np.dtype(other))
            except (TypeError, ValueError):
                return False
        return NotImplemented  # not np.dtype(other): np.dtype(None) is float64

    def __ne__(self, other: Any) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"tf.{self.name}"

    def __str__(self) -> str:
        return f"<dtype: '{self.name}'>"

    def __reduce__(self) -> tuple:
        return as_dtype, (self.name,)  # unpickles to the interned instance

    # -- TF's DType API ----------------------------------------------------------------------

    @property
    def base_dtype(self) -> DType:
        """This DType (varstore has no reference dtypes)."""
        return self

    @property
    def real_dtype(self) -> DType:
        """float32 for complex64, float64 for complex128, else this DType."""
        return _BY_NAME[{"complex64": "float32", "complex128": "float64"}.get(self.name, self.name)]

    @property
    def as_numpy_dtype(self) -> type:
        """The numpy scalar type (``np.float32``, ``ml_dtypes.bfloat16``)."""
        return self.type

    @property
    def as_datatype_enum(self) -> int:
        """TF's DataType enum value (float32: 1)."""
        return _ENUMS[self.name]

    @property
    def size(self) -> int:
        """Bytes per element."""
        return self.itemsize

    @property
    def is_bool(self) -> bool:
        return self.kind == "b"

    @property
    def is_floating(self) -> bool:
        """float16, bfloat16, float32, float64."""
        return self.kind == "f" or self.name == "bfloat16"

    @property
    def is_integer(self) -> bool:
        """Signed and unsigned integers (not bool)."""
        return self.kind in "iu"

    @property
    def is_unsigned(self) -> bool:
        return self.kind == "u"

    @property
    def is_complex(self) -> bool:
        return self.kind == "c"

    @property
    def is_quantized(self) -> bool:
        """Always False: varstore has no quantized dtypes."""
        return False

    @property
    def is_numeric(self) -> bool:
        """Everything but bool."""
        return self.kind != "b"

    @property
    def is_numpy_compatible(self) -> bool:
        return True

    def _info(self, which: str) -> Any:
        if self.kind in "bc":
            raise TypeError(f"Cannot find {which}imum value of {self} with type {self}.")
        if self.kind in "iu":
            info: Any = np.iinfo(self.dtype)
        elif self.name == "bfloat16":
            import ml_dtypes  # loaded already: a bfloat16 DType exists only once it is

            info = ml_dtypes.finfo(self.dtype)
        else:
            info = np.finfo(self.dtype)
        return getattr(info, which)

    @property
    def min(self) -> Any:
        """The lowest finite value (a Python int for integers, a numpy scalar for floats); TypeError
        for bool and complex, as TF."""
        return self._info("min")

    @property
    def max(self) -> Any:
        """The highest finite value; TypeError for bool and complex, as TF."""
        return self._info("max")

    @property
    def limits(self) -> tuple[Any, Any]:
        """TF's image value range, lower end clipped to 0: ``(0, 255)`` for uint8, ``(0, 1)`` for
        float32/float64; ValueError for dtypes TF has no range for (float16, complex)."""
        if self.name not in _LIMITS:
            raise ValueError(f"{self} does not have defined limits.")
        return 0, _LIMITS[self.name][1]

    def is_compatible_with(self, other: Any) -> bool:
        """True if ``other`` (anything :func:`as_dtype` takes) is this dtype.

        >>> as_dtype("float32").is_compatible_with(np.float32)
        True
        """
        return as_dtype(other) is self


# Canonical name -> DType. The names are what checkpoints store. bfloat16 joins on first use
# (_bfloat16): ml_dtypes' extension takes 0.5-1 s to import with numpy 2.x, more than all the
# rest of `import varstore`, and most programs never touch a bfloat16.
_BY_NAME: dict[str, DType] = {n: DType._make(np.dtype(n), n) for n in _NUMPY_NAMES}
# Exact numpy dtypes and numpy scalar types -> DType: as_dtype's fast path. No numbers among
# the keys: np.float64(1.0) and True hash and compare equal to 1.
_BY_KEY: dict[Any, DType] = {}
for _d in _BY_NAME.values():
    _BY_KEY[_d.dtype] = _BY_KEY[_d.type] = _d
# Python's own types as TF reads them (float is float32 in TF, unlike numpy); int and complex,
# which TF refuses, as numpy reads them.
_BY_KEY.update({float: _BY_NAME["float32"], bool: _BY_NAME["bool"], int: _BY_NAME["int64"],
                complex: _BY_NAME["complex128"]})
del _d


@functools.cache
def _bfloat16_dtype() -> DType:
    import ml_dtypes

    d = DType._make(np.dtype(ml_dtypes.bfloat16), "bfloat16")
    _BY_NAME["bfloat16"] = _BY_KEY[d.dtype] = _BY_KEY[d.type] = d
    return d


def _bfloat16() -> np.dtype:
    return _bfloat16_dtype().dtype


if TYPE_CHECKING:
    bfloat16: np.dtype  # ml_dtypes' bfloat16 as a numpy dtype
    bfloat16_dtype: DType  # the same as a DType: TF's tf.bfloat16
else:
    def __getattr__(name: str) -> Any:
        # `devices.dtypes.bfloat16` (and `from devices.dtypes import bfloat16`) load ml_dtypes
        # here, on first use. Hidden from type checkers, so a misspelled name stays an error.
        # `bfloat16` stays the numpy dtype: kernels key dicts by it and compare arrays' dtypes
        # to it on every step, where a DType would go through DType.__eq__.
        # `bfloat16_dtype` (as_dtype("bfloat16")) is the DType, varstore's tf.bfloat16.
        if name == "bfloat16":
            return _bfloat16()
        if name == "bfloat16_dtype":
            return _bfloat16_dtype()
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_bfloat16(dtype: Any) -> bool:
    """True for ml_dtypes' bfloat16 (a numpy dtype, a DType, or its scalar type), without
    importing ml_dtypes for any other dtype.

    An array can only have that dtype once ml_dtypes is loaded, so the name is
    checked first and the (loading) comparison only made for a candidate.

    >>> is_bfloat16(np.dtype("float32")), is_bfloat16(as_dtype("bfloat16"))
    (False, True)
    """
    if "bfloat16" not in (getattr(dtype, "name", None), getattr(dtype, "__name__", None)):
        return False
    try:
        return np.dtype(dtype) == _bfloat16()
    except (TypeError, ValueError):  # something else that calls itself bfloat16 (torch's is no numpy dtype)
        return False


# TF spellings a user of the guide may type.
_ALIASES = {"half": "float16", "float": "float32", "double": "float64", "bool_": "bool"}

DTYPE_NAMES = frozenset(_BY_NAME) | {"bfloat16"}


def as_dtype(value: Any) -> DType:
    """Return the :class:`DType` for ``value``: a DType, a name (``"float32"``, TF's ``"float"``,
    ``"half"``, ``"double"``), a numpy dtype or scalar type, ml_dtypes' bfloat16, TF's enum value,
    or Python's ``float`` (float32, as TF), ``bool``, ``int`` (int64) or ``complex`` (complex128).

    Raises InvalidArgumentError for anything outside the supported set.
    A byte-swapped numpy dtype gives the native one: everything is stored
    little-endian.

    >>> as_dtype("float")
    tf.float32
    >>> as_dtype(np.dtype(">i8")), as_dtype(float), as_dtype(9)
    (tf.int64, tf.float32, tf.int64)
    """
    if type(value) is DType:
        return value
    try:
        return _BY_KEY[value]
    except (KeyError, TypeError):  # TypeError: unhashable
        pass
    if value is None:
        raise InvalidArgumentError("dtype: expected a dtype name such as 'float32', received None")
    name = getattr(value, "name", None) if not isinstance(value, str) else value
    d: DType | None
    if isinstance(value, str):
        name = _ALIASES.get(value, value)
        d = _bfloat16_dtype() if name == "bfloat16" else _BY_NAME.get(name)
    elif type(value) is int:  # TF's enum value; not bool, not numpy's scalars (their own dtype)
        name = _BY_ENUM.get(value)
        d = None if name is None else _bfloat16_dtype() if name == "bfloat16" else _BY_NAME[name]
    else:
        try:
            dt = np.dtype(value)
        except (TypeError, ValueError):  # ValueError: e.g. a field list naming a field twice
            dt = None
        d = None
        if dt is not None and (dt.kind != "V" or is_bfloat16(dt)):
            # Byte order and subclasses are irrelevant: everything is stored little-endian.
            d = _bfloat16_dtype() if dt.name == "bfloat16" else _BY_NAME.get(dt.name)
    if d is None:
        raise InvalidArgumentError(
            f"dtype: expected one of {sorted(DTYPE_NAMES)}, received {value!r}"
            + (f" ({name})" if name and name != value else "")
        )
    return d


def dtype_name(dtype: Any) -> str:
    """Canonical name of a supported dtype (``as_dtype(dtype).name``)."""
    return as_dtype(dtype).name


def is_floating(dtype: Any) -> bool:
    """True for float16/bfloat16/float32/float64 (a numpy dtype or a DType)."""
    return dtype.kind == "f" or is_bfloat16(dtype)
