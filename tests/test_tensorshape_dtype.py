"""TensorShape, Dimension and DType: TF 1.x's API, and still the tuples of ints and numpy dtypes
that internal code, numpy, msgpack and pickle take (issue 13).

The expected values are what tensorflow-cpu 2.21 (``tensorflow.compat.v1`` with
``disable_v2_behavior()``, so V1 shapes with Dimension objects) answers; with
``VARSTORE_TF_PYTHON`` set (or TensorFlow importable) :func:`test_tf_oracle` runs the
same expressions under real TF and compares. Kept differences, each a superset:
numpy takes a DType as a dtype (TF's it refuses); a known Dimension is an int
(hashable, ``isinstance(d, int)``); ``tf.as_dtype(int)`` is int64 and ``(complex)``
complex128 (TF refuses both); errors TF raises as ValueError are
InvalidArgumentError, which is a ValueError; a bool is no dimension.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import os
import pickle
import subprocess
import sys
import textwrap
from operator import eq, ne

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import varstore as tf
from devices.dtypes import DTYPE_NAMES, DType, as_dtype
from devices.errors import InvalidArgumentError
from devices.shapes import Dimension, TensorShape, as_shape, dimension_value

NAMES = sorted(DTYPE_NAMES)

# -- TensorShape ---------------------------------------------------------------------------------

dims_st = st.lists(st.one_of(st.none(), st.integers(0, 2**40)), max_size=6)
known_st = st.lists(st.integers(0, 50), max_size=5)


def test_tensorshape_reprs_as_tf():
    assert repr(TensorShape([2, 3])) == "TensorShape([Dimension(2), Dimension(3)])"
    assert str(TensorShape([2, 3])) == "(2, 3)"
    assert repr(TensorShape([None, 3])) == "TensorShape([Dimension(None), Dimension(3)])"
    assert str(TensorShape([None, 3])) == "(?, 3)"
    assert repr(TensorShape(None)) == "TensorShape(None)"
    assert str(TensorShape(None)) == "<unknown>"
    assert (repr(TensorShape([])), str(TensorShape([]))) == ("TensorShape([])", "()")
    assert str(TensorShape([5])) == "(5,)"
    assert (repr(Dimension(3)), str(Dimension(3)), f"{Dimension(3)}") == ("Dimension(3)", "3", "3")
    assert (repr(Dimension(None)), str(Dimension(None))) == ("Dimension(None)", "?")


def test_tensorshape_api_as_tf():
    s, u, r = TensorShape([2, 3]), TensorShape([None, 3]), TensorShape(None)
    assert (s.as_list(), u.as_list()) == ([2, 3], [None, 3])
    with pytest.raises(ValueError, match="unknown TensorShape"):
        r.as_list()
    assert (s.ndims, s.rank, r.ndims, r.rank) == (2, 2, None, None)
    assert s.dims == [Dimension(2), Dimension(3)] and r.dims is None
    assert u.dims[0] is Dimension(None)
    assert (s.num_elements(), u.num_elements(), r.num_elements(), TensorShape([]).num_elements()) == (6, None, None, 1)
    assert s.is_fully_defined() and not u.is_fully_defined() and not r.is_fully_defined()
    assert (s[0].value, u[0].value, int(s[0]), s[-1]) == (2, None, 2, 3)
    assert isinstance(s[0], Dimension) and isinstance(u[0], Dimension)
    assert s[1:] == TensorShape([3]) and type(s[1:]) is TensorShape
    assert r[0] is Dimension(None) and r[1:] is r
    assert len(s) == 2
    with pytest.raises(ValueError, match="unknown rank"):
        len(r)
    with pytest.raises(ValueError, match="unknown rank"):
        list(r)
    assert bool(TensorShape([])) and bool(s) and not bool(r)
    assert 2 in s and 3 in u and None not in u


def test_tensorshape_equality_as_tf():
    s, u, r = TensorShape([2, 3]), TensorShape([None, 3]), TensorShape(None)
    assert s == [2, 3] and s == (2, 3) and s == TensorShape([2, 3])
    assert eq((2, 3), s) and eq([2, 3], s)  # the reflected comparisons
    assert s != [2, 4] and ne(s, [2, 3]) is False
    assert u == u and u == TensorShape([None, 3]) and u == [None, 3] and u == (None, 3)
    assert ne(u, (None, 3)) is False
    assert r == r and r == TensorShape(None) and r != TensorShape([])
    assert s != "abc" and s != None and s != 5  # noqa: E711 - the comparison is what is tested
    assert TensorShape([5]) == 5
    assert TensorShape([]) == [] and TensorShape([]) == ()


def test_tensorshape_compatibility_as_tf():
    s, u, r = TensorShape([2, 3]), TensorShape([None, 3]), TensorShape(None)
    assert s.is_compatible_with(u) and u.is_compatible_with(s) and s.is_compatible_with([2, None])
    assert not s.is_compatible_with([2]) and r.is_compatible_with(s) and s.is_compatible_with(r)
    assert u.merge_with(s) == s and r.merge_with(s) == s and s.merge_with(r) == s
    with pytest.raises(ValueError, match=r"Shapes \(2, 3\) and \(2, 4\) are not compatible"):
        s.merge_with([2, 4])
    assert s.concatenate([4]) == [2, 3, 4] and s.concatenate(4) == [2, 3, 4]
    assert s.concatenate(r) is r and r.concatenate(s) is r
    assert s + [4] == [2, 3, 4] and [4] + s == [4, 2, 3] and (4,) + s == [4, 2, 3]
    assert type(s + [4]) is TensorShape and type((4,) + s) is TensorShape
    assert s.with_rank(2) is s and r.with_rank(2) == [None, None]
    with pytest.raises(ValueError, match=r"Shape \(2, 3\) must have rank 3"):
        s.with_rank(3)
    assert s.with_rank_at_least(1) is s
    with pytest.raises(ValueError, match="must have rank at most 1"):
        s.with_rank_at_most(1)
    s.assert_is_compatible_with([2, 3])
    with pytest.raises(ValueError, match="are incompatible"):
        s.assert_is_compatible_with([2, 4])
    s.assert_has_rank(2)
    r.assert_has_rank(3)
    with pytest.raises(ValueError, match="must have rank 3"):
        s.assert_has_rank(3)
    s.assert_is_fully_defined()
    with pytest.raises(ValueError, match=r"Shape \(\?, 3\) is not fully defined"):
        u.assert_is_fully_defined()
    s.assert_same_rank([1, 2])
    with pytest.raises(ValueError, match="must have the same rank"):
        s.assert_same_rank([1])
    assert s.most_specific_compatible_shape([2, 4]) == [2, None]


def test_tensorshape_construction():
    assert TensorShape(3) == [3] and TensorShape([Dimension(3), None]) == [3, None]
    assert TensorShape((2, np.int64(3))) == [2, 3] and TensorShape(np.array([2, 3])) == [2, 3]
    s = TensorShape([2, 3])
    assert TensorShape(s) is s
    for bad in ([2.0], (2.0, 3), ["a"], "ab", [True], (True, 3), object()):
        with pytest.raises(TypeError):
            TensorShape(bad)
    with pytest.raises(ValueError, match="must be >= 0"):
        TensorShape([-1])


def test_dimension_as_tf():
    d, n = Dimension(3), Dimension(None)
    assert d.value == 3 and n.value is None and Dimension(None) is n and Dimension(d) is d
    assert d == 3 and d != 4 and Dimension(np.int64(4)) == 4
    assert (n == 3) is None and (n == n) is None and (n != 3) is None and (n < 8) is None and (d < n) is None
    assert d + 1 == 4 and type(d + 1) is type(d) and 1 + d == 4 and type(1 + d) is type(d)
    assert d * n is n and n + 1 is n and d - 1 == 2 and d // 2 == 1 and d % 2 == 1
    assert max(Dimension(3), Dimension(4)) == 4
    assert [1, 2, 3][Dimension(1)] == 2 and np.zeros(d).shape == (3,)
    with pytest.raises(TypeError):
        int(n)
    for bad in (2.5, 2.0, "3", True):
        with pytest.raises(TypeError):
            Dimension(bad)
    with pytest.raises(ValueError, match="must be >= 0"):
        Dimension(-1)
    assert d.is_compatible_with(None) and not d.is_compatible_with(4)
    assert d.merge_with(None) == 3 and n.merge_with(4) == 4
    with pytest.raises(ValueError, match="Dimensions 3 and 4 are not compatible"):
        d.merge_with(4)
    assert (dimension_value(d), dimension_value(n), dimension_value(3), dimension_value(None)) == (3, None, 3, None)
    assert tf.dimension_at_index(TensorShape(None), 5) is n and tf.dimension_at_index([2, 3], 0) == 2


@settings(max_examples=200, deadline=None)
@given(dims_st)
def test_tensorshape_round_trips(dims):
    s = TensorShape(dims)
    assert s.as_list() == dims and s.ndims == len(dims) == len(s)
    assert s == dims and s == tuple(dims) and TensorShape(tuple(dims)) == s
    assert hash(s) == hash(tuple(dims))  # as TF's: a dict keyed by the tuple finds it
    assert [d.value for d in s] == dims and all(isinstance(d, Dimension) for d in s)
    assert s.is_fully_defined() == (None not in dims)
    for k in range(len(dims) + 1):
        assert s[:k].as_list() == dims[:k] and s[k:].as_list() == dims[k:]
    assert pickle.loads(pickle.dumps(s)) == s and copy.deepcopy(s) == s
    assert str(s) == str(tuple("?" if d is None else d for d in dims)).replace("'", "")
    assert s.is_compatible_with(s) and s.merge_with(s) == s and s.merge_with(TensorShape(None)) == s
    assert s.concatenate(dims) == dims + dims


@settings(max_examples=200, deadline=None)
@given(known_st, st.data())
def test_fully_defined_shape_is_a_tuple_of_ints(dims, data):
    """Where internal code puts a shape: numpy, dict keys, msgpack, json, as_shape."""
    s = TensorShape(dims)
    t = tuple(dims)
    assert s == t and t == s and {t: 1}[s] == 1 and {s: 1}[t] == 1
    assert as_shape(s) == t and type(as_shape(s)) is tuple and all(type(d) is int for d in as_shape(s))
    assert np.empty(s, np.uint8).shape == t and np.zeros(s).shape == t
    assert np.ones(t).shape == s and np.arange(int(np.prod(t, dtype=np.int64))).reshape(s).shape == t
    assert msgpack.unpackb(msgpack.packb(list(s))) == list(t) and msgpack.packb(list(s)) == msgpack.packb(list(t))
    assert json.loads(json.dumps(list(s))) == list(t)
    assert s.num_elements() == int(np.prod(t, dtype=np.int64)) and type(s.num_elements()) is int
    other = data.draw(known_st)
    assert (s == other) == (t == tuple(other)) and (s.is_compatible_with(other)) == (t == tuple(other))


@settings(max_examples=200, deadline=None)
@given(dims_st, dims_st)
def test_merge_and_compatibility_agree(a, b):
    sa, sb = TensorShape(a), TensorShape(b)
    compatible = len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))
    assert sa.is_compatible_with(sb) == sb.is_compatible_with(sa) == compatible
    if compatible:
        merged = sa.merge_with(sb)
        assert merged == sb.merge_with(sa)
        assert merged.as_list() == [x if x is not None else y for x, y in zip(a, b)]
        assert merged.is_compatible_with(sa) and merged.is_compatible_with(sb)
    else:
        with pytest.raises(ValueError):
            sa.merge_with(sb)


def test_as_shape_unchanged():
    """as_shape still takes what it took, returns plain tuples of ints, refuses partial shapes."""
    assert as_shape([784, 200]) == (784, 200) and as_shape(3) == (3,) and as_shape(np.int64(2)) == (2,)
    assert as_shape(np.array([2, 3])) == (2, 3) and as_shape(()) == () and as_shape(TensorShape([])) == ()
    for bad in ([2.0], [-1], [True], "ab", None, [None, 3], TensorShape([None, 3]), TensorShape(None)):
        with pytest.raises(InvalidArgumentError):
            as_shape(bad)


# -- DType ---------------------------------------------------------------------------------------

# name: (as_datatype_enum, size, is_floating, is_integer, is_complex, is_bool, is_unsigned,
#        real_dtype), from tensorflow-cpu 2.21.
TF_DTYPES = {
    "bool": (10, 1, False, False, False, True, False, "bool"),
    "int8": (6, 1, False, True, False, False, False, "int8"),
    "int16": (5, 2, False, True, False, False, False, "int16"),
    "int32": (3, 4, False, True, False, False, False, "int32"),
    "int64": (9, 8, False, True, False, False, False, "int64"),
    "uint8": (4, 1, False, True, False, False, True, "uint8"),
    "uint16": (17, 2, False, True, False, False, True, "uint16"),
    "uint32": (22, 4, False, True, False, False, True, "uint32"),
    "uint64": (23, 8, False, True, False, False, True, "uint64"),
    "float16": (19, 2, True, False, False, False, False, "float16"),
    "bfloat16": (14, 2, True, False, False, False, False, "bfloat16"),
    "float32": (1, 4, True, False, False, False, False, "float32"),
    "float64": (2, 8, True, False, False, False, False, "float64"),
    "complex64": (8, 8, False, False, True, False, False, "float32"),
    "complex128": (18, 16, False, False, True, False, False, "float64"),
}


def test_dtype_names_cover_tf_table():
    assert set(TF_DTYPES) == DTYPE_NAMES


@pytest.mark.parametrize("name", NAMES)
def test_dtype_api_as_tf(name):
    d = as_dtype(name)
    enum, size, fl, it, cx, bo, un, real = TF_DTYPES[name]
    assert (d.name, repr(d), str(d)) == (name, f"tf.{name}", f"<dtype: '{name}'>")
    assert (d.as_datatype_enum, d.size, d.is_floating, d.is_integer, d.is_complex, d.is_bool, d.is_unsigned) == (
        enum, size, fl, it, cx, bo, un)
    assert d.real_dtype.name == real and d.base_dtype is d and not d.is_quantized
    assert d.is_numeric == (name != "bool") and d.is_numpy_compatible
    assert d.as_numpy_dtype is np.dtype(d).type and np.dtype(d.as_numpy_dtype) == d
    assert as_dtype(enum) is d and DType(enum) is d and DType(d) is d and tf.as_dtype(d) is d
    assert getattr(tf, name) is d and isinstance(d, tf.DType)
    if name in ("bool", "complex64", "complex128"):
        with pytest.raises(TypeError, match="Cannot find minimum value"):
            _ = d.min
        with pytest.raises(TypeError, match="Cannot find maximum value"):
            _ = d.max
    else:
        info = np.iinfo(np.dtype(d)) if it else None
        if it:
            assert (d.min, d.max) == (info.min, info.max) and type(d.min) is int
        else:
            assert d.min == -d.max and np.dtype(type(d.max)) == d and np.isfinite(float(d.max))
    if name in ("float16", "bfloat16", "complex64", "complex128"):
        with pytest.raises(ValueError, match="does not have defined limits"):
            _ = d.limits
    else:
        assert d.limits[0] == 0
        assert d.limits[1] == {"bool": True, "float32": 1, "float64": 1}.get(name, d.max if it else None)


@pytest.mark.parametrize("name", NAMES)
def test_dtype_is_a_numpy_dtype_spec(name):
    d = as_dtype(name)
    nd = np.dtype(d)
    assert isinstance(nd, np.dtype) and nd is d.dtype
    assert np.zeros(3, dtype=d).dtype == nd and np.empty((2,), d).dtype == nd
    assert np.arange(3).astype(d).dtype == nd and np.array([1, 0], dtype=d).dtype == nd
    a = np.zeros(2, nd)
    assert a.dtype == d and d == a.dtype and ne(a.dtype, d) is False and ne(d, a.dtype) is False
    assert a.view(d).dtype == nd and np.result_type(d, d) == nd
    assert (d.itemsize, d.kind, d.type, d.char, d.str, d.byteorder) == (
        nd.itemsize, nd.kind, nd.type, nd.char, nd.str, nd.byteorder)
    assert d.newbyteorder(">") == nd.newbyteorder(">") and d.isnative
    # Hashes as the numpy dtype: dicts keyed by either find the other.
    assert hash(d) == hash(nd) and {nd: 1}[d] == 1 and {d: 1}[nd] == 1 and d in {nd} and nd in {d}
    assert pickle.loads(pickle.dumps(d)) is d and copy.copy(d) is d and copy.deepcopy(d) is d
    with pytest.raises(AttributeError):
        d.name = "x"


@pytest.mark.parametrize("name", NAMES)
def test_dtype_equality_with_every_spelling(name):
    d = as_dtype(name)
    nd = np.dtype(d)
    for spelling in (d, nd, nd.type, name, d.as_datatype_enum):
        assert d == spelling and ne(d, spelling) is False and as_dtype(spelling) is d, spelling
    if name != "bfloat16":  # numpy's own string spellings ("<f4") are equal; as_dtype takes names only
        assert d == nd.str and ne(d, nd.str) is False
    if nd.itemsize > 1 and name != "bfloat16":  # a byte-swapped bfloat16 is refused, as before
        swapped = nd.newbyteorder()
        assert as_dtype(swapped) is d  # stored little-endian: the name is what counts
        assert d != swapped and swapped != d  # but numpy's equality, both ways: byte order counts
    for other in NAMES:
        if other != name:
            assert d != as_dtype(other) and d != other and d != np.dtype(as_dtype(other))
    assert d != "nope" and d != None and d != object() and d != 3.5  # noqa: E711


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(NAMES), st.sampled_from(NAMES), st.integers(0, 3))
def test_dtype_equality_matches_numpy(a, b, how):
    """Whatever the spelling on the other side, DType equality is numpy's on the dtypes."""
    da, db = as_dtype(a), as_dtype(b)
    nb = np.dtype(db)
    other = (db, nb, nb.type, b)[how]
    assert (da == other) == (np.dtype(da) == nb) == (a == b)
    assert (da == other) == (np.zeros(1, da).dtype == other) or how == 3  # numpy's names differ: "bfloat16"
    assert da.is_compatible_with(other) == (a == b)


def test_as_dtype_spellings_as_tf():
    assert as_dtype("float") is tf.float32 and as_dtype("half") is tf.float16 and as_dtype("double") is tf.float64
    assert tf.half is tf.float16 and tf.double is tf.float64
    assert as_dtype(float) is tf.float32  # TF: Python's float is float32
    assert as_dtype(bool) is tf.bool and as_dtype(np.bool_) is tf.bool
    assert as_dtype(int) is tf.int64 and as_dtype(complex) is tf.complex128  # TF refuses these
    assert as_dtype(np.int32(3)) is tf.int32 and as_dtype(np.float64(1.0)) is tf.float64
    assert eq(tf.float32, float) and ne(tf.float64, float) and tf.float32 == 1
    assert tf.float32.is_compatible_with("float32") and tf.float32.is_compatible_with(np.float32)
    assert not tf.float32.is_compatible_with(tf.float64)
    for bad in (None, "nope", "int", "f4", ">f4", np.dtype("V2"), np.dtype(object), np.str_, 99, True, 1.0,
                np.zeros(3, np.float32), [1]):
        with pytest.raises(InvalidArgumentError):
            as_dtype(bad)
    with pytest.raises(InvalidArgumentError):
        tf.float32.is_compatible_with("nope")


def test_bfloat16():
    b = tf.bfloat16
    import ml_dtypes

    assert isinstance(b, DType) and b is as_dtype("bfloat16") and b is as_dtype(ml_dtypes.bfloat16)
    assert np.dtype(b) == np.dtype(ml_dtypes.bfloat16) and b.as_numpy_dtype is ml_dtypes.bfloat16
    assert np.zeros(2, b).dtype == ml_dtypes.bfloat16 and b.is_floating and b.min == -b.max
    assert float(b.max) == float(ml_dtypes.finfo(ml_dtypes.bfloat16).max)
    import devices.dtypes
    assert devices.dtypes.bfloat16 == b and isinstance(devices.dtypes.bfloat16, np.dtype)


def test_variable_dtype_and_tensors_numpy_interop():
    v = tf.Variable(tf.zeros([2, 3], dtype=tf.float16), name="tsd_v")
    assert v.dtype == tf.float16 and v.dtype.base_dtype == tf.float16 and v.dtype.is_floating
    with tf.Session() as sess:
        sess.run(v.initializer)
        a = sess.run(v)
    assert a.dtype == v.dtype and a.astype(v.dtype).dtype == np.float16
    assert np.zeros(3, dtype=tf.float32).dtype == np.float32


def test_top_level_exports():
    assert tf.TensorShape is TensorShape and tf.Dimension is Dimension and tf.dimension_value is dimension_value
    assert tf.DType is DType and tf.as_dtype is as_dtype
    assert "bfloat16" in dir(tf)


def test_import_stays_lazy():
    """`import varstore` loads neither ml_dtypes nor the checkpoint stack."""
    code = "import sys, varstore as tf; tf.float32, tf.TensorShape([2]); print('ml_dtypes' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"


# -- the same expressions under real TensorFlow ----------------------------------------------------

ORACLE_EXPRS = [
    "repr(S([2, 3]))", "str(S([None, 3]))", "repr(S(None))", "str(S(None))", "repr(S([]))", "str(S([5]))",
    "S([None, 3]).as_list()", "S([2, 3]).ndims", "S(None).ndims", "repr(S([None, 3]).dims)",
    "S([2, 3]).num_elements()", "S([None, 3]).num_elements()", "S([2, 3])[0].value", "S([None, 3])[0].value",
    "int(S([2, 3])[1])", "repr(S([2, 3])[1:])", "repr(S(None)[0])", "repr(S(None)[1:])",
    "S([2, 3]) == [2, 3]", "S([2, 3]) == (2, 3)", "S([None, 3]) == [None, 3]", "S(None) == S(None)",
    "S([2, 3]) != [2, 4]", "S([2, 3]) == 'abc'", "S([5]) == 5", "hash(S([2, 3])) == hash((2, 3))",
    "hash(S([None, 3])) == hash((None, 3))", "bool(S([]))", "bool(S(None))", "None in S([None, 3])",
    "repr(S([None, 3]).merge_with([2, None]))", "repr(S([2, 3]).concatenate(4))", "repr(S([2]).concatenate(S(None)))",
    "repr(S(None).with_rank(2))", "repr(S([2, 3]).most_specific_compatible_shape([2, 4]))",
    "S([2, 3]).is_compatible_with([2, None])", "S([2, 3]).is_compatible_with([2])",
    "repr(S([2, 3]) + [4])", "repr([4] + S([2, 3]))",
    "repr(D(3))", "str(D(3))", "str(D(None))", "D(3).value", "D(None).value", "D(3) == 3", "D(None) == 3",
    "repr(D(3) + 1)", "repr(1 + D(3))", "repr(D(3) * D(None))", "repr(D(3) // 2)", "D(None) < 8",
    "repr(D(None).merge_with(4))", "D(3).is_compatible_with(None)", "dv(D(None))", "dv(3)",
    "np.zeros(S([2, 3])).shape", "[1, 2, 3][D(1)]",
    "repr(tf.float32)", "str(tf.float32)", "tf.float32 == np.float32", "tf.float32 == 'float32'",
    "tf.float32 == np.dtype('float32')", "np.dtype('float32') == tf.float32", "np.float32 == tf.float32",
    "tf.float32 == 'float'", "tf.float32 == 1", "tf.float32 == float", "tf.float64 == float", "tf.float32 == None",
    "repr(tf.as_dtype('half'))", "repr(tf.as_dtype(np.dtype('>f4')))", "repr(tf.as_dtype(np.int32(3)))",
    "repr(tf.complex64.real_dtype)", "tf.float32.is_compatible_with(np.float32)", "tf.uint8.limits",
    "tf.int32.limits", "tf.bool.limits", "tf.float64.limits", "repr(tf.float32.min)", "repr(tf.int8.max)",
    "repr(tf.bfloat16.max)", "tf.bfloat16.is_floating", "tf.bfloat16.as_datatype_enum",
    "tf.bool.is_numeric", "tf.uint16.is_unsigned", "repr(tf.DType(1))",
    "np.zeros(3, np.float32).dtype == tf.float32",
]

_ORACLE_PRELUDE = """
import json, sys
import numpy as np
{imports}
S, D, dv = tf.TensorShape, tf.Dimension, tf.dimension_value
out = {{}}
for e in json.loads(sys.argv[1]):
    try:
        out[e] = repr(eval(e))
    except Exception as ex:
        out[e] = "error"
print(json.dumps(out))
"""


def _tf_python() -> str | None:
    env = os.environ.get("VARSTORE_TF_PYTHON")
    if env:
        return env
    return sys.executable if importlib.util.find_spec("tensorflow") is not None else None


def _run(python: str, imports: str) -> dict:
    code = textwrap.dedent(_ORACLE_PRELUDE.format(imports=imports))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    r = subprocess.run([python, "-c", code, json.dumps(ORACLE_EXPRS)], capture_output=True, text=True,
                       env=env, timeout=300, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(_tf_python() is None, reason="needs TensorFlow: set VARSTORE_TF_PYTHON or install it")
def test_tf_oracle():
    theirs = _run(_tf_python(), "import tensorflow.compat.v1 as tf\ntf.disable_v2_behavior()")
    ours = _run(sys.executable, "import varstore as tf")
    diff = {e: (ours[e], theirs[e]) for e in ORACLE_EXPRS if ours[e] != theirs[e]}
    assert not diff, "varstore vs TF:\n" + "\n".join(f"  {e}: {o} vs {t}" for e, (o, t) in diff.items())
