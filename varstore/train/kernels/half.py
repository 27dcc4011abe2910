"""float16 and bfloat16 on the CPU: exact conversions and the conversion kernels.

numba has no float16 or bfloat16 type, so their bits travel as integer
views: float16 as int16 and bfloat16 as uint16 (the signedness is only a
tag that selects the conversion). The rule kernels themselves only exist
for float32 and float64; a half-precision update converts cache-sized
blocks to float32, runs the float32 kernel on them and rounds back (see
cpu.py for why). Conversions are exact integer code, round to nearest
even, overflow to inf, NaN kept NaN, and are checked bit for bit against
numpy and ml_dtypes in the tests.

>>> import numpy as np
>>> bits = np.array([1.5, -2.0, 65504.0], np.float16).view(np.int16)
>>> out = np.empty(3, np.float32)
>>> to_f32(bits, 0, out); out.tolist()
[1.5, -2.0, 65504.0]
"""
from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload, register_jitable

from ._jit import JIT, f32_bits, f32_from_bits


@register_jitable
def bf16_to_f32(bits):
    """bfloat16 bits (any integer type) -> float32: a bfloat16 is the top half of a float32."""
    return f32_from_bits((np.int64(bits) & 0xFFFF) << 16)


@register_jitable
def f32_to_bf16(x):
    """float32 -> bfloat16 bits, round to nearest even; a NaN stays a quiet NaN."""
    u = f32_bits(np.float32(x))
    if x != x:
        return (u >> 16) | 0x40
    return (u + 0x7FFF + ((u >> 16) & 1)) >> 16


@register_jitable
def f16_to_f32(bits):
    """IEEE half bits (any integer type) -> float32, exact (subnormals, inf, NaN included)."""
    h = np.int64(bits) & 0xFFFF
    sign = (h & 0x8000) << 16
    exp = h & 0x7C00
    mant = h & 0x03FF
    if exp == 0x7C00:  # inf / NaN: all-ones exponent, mantissa (payload) carried over
        return f32_from_bits(sign | 0x7F800000 | (mant << 13))
    if exp == 0:  # zero / subnormal: mant * 2**-24 is exact in float32
        mag = np.float32(mant) * np.float32(5.9604644775390625e-08)
        return -mag if sign else mag
    return f32_from_bits(sign | (((h & 0x7FFF) << 13) + 0x38000000))  # rebias exponent 15 -> 127


@register_jitable
def f32_to_f16(x):
    """float32 -> IEEE half bits, round to nearest even, overflow to inf, NaN -> quiet NaN.

    The classic branch-light formulation (F. Giesen's float_to_half_fast3_rtne).
    """
    u = f32_bits(np.float32(x))
    sign = (u >> 16) & 0x8000
    u = u & 0x7FFFFFFF
    if u >= 0x47800000:  # |x| >= 65536, inf or NaN: nothing rounds back into range
        return sign | (0x7E00 if u > 0x7F800000 else 0x7C00)
    if u < 0x38800000:  # |x| < 2**-14: a half subnormal or zero
        # Adding 0.5 puts the half's subnormal mantissa in the float's low bits,
        # and the float addition rounds it to nearest even for us.
        f = f32_from_bits(u) + np.float32(0.5)
        return sign | (f32_bits(f) - 0x3F000000)
    odd = (u >> 13) & 1  # ties to even: round up on .5 only when the kept lsb is odd
    return sign | ((u - 0x38000000 + 0xFFF + odd) >> 13)


def load(a, i):  # pragma: no cover - typed by the overload below
    """a[i] as float32 (float64 stays float64), whatever a's storage."""


def store(a, i, x):  # pragma: no cover
    """a[i] = x rounded to a's storage."""


@overload(load)
def _ol_load(a, i):
    dt = a.dtype
    if dt == types.float32 or dt == types.float64:
        return lambda a, i: a[i]
    if dt == types.uint16:  # bfloat16 bits
        return lambda a, i: bf16_to_f32(a[i])
    if dt == types.int16:  # float16 bits
        return lambda a, i: f16_to_f32(a[i])
    return None


@overload(store)
def _ol_store(a, i, x):
    dt = a.dtype
    if dt == types.float32:
        def store_f32(a, i, x):
            a[i] = np.float32(x)
        return store_f32
    if dt == types.float64:
        def store_f64(a, i, x):
            a[i] = np.float64(x)
        return store_f64
    if dt == types.uint16:
        def store_bf16(a, i, x):
            a[i] = np.uint16(f32_to_bf16(x))
        return store_bf16
    if dt == types.int16:
        def store_f16(a, i, x):
            a[i] = np.int16(f32_to_f16(x))
        return store_f16
    return None


@njit(**JIT)
def to_f32(src, lo, out):
    """out[:] = src[lo:lo + out.size] as float32."""
    s = src[lo:lo + out.size]
    for i in range(out.size):
        out[i] = load(s, i)


@njit(**JIT)
def from_f32(x, dst, lo):
    """dst[lo:lo + x.size] = x, rounded to dst's storage."""
    d = dst[lo:lo + x.size]
    for i in range(x.size):
        store(d, i, x[i])


@njit(**JIT)
def gather_f32(src, rows, d, out):
    """Rows ``rows`` (length d) of flat ``src``, as float32, packed into ``out``."""
    for s in range(rows.size):
        row = src[rows[s] * d:(rows[s] + 1) * d]
        o = out[s * d:(s + 1) * d]
        for j in range(d):
            o[j] = load(row, j)


@njit(**JIT)
def scatter_f32(x, rows, d, dst):
    """Inverse of gather_f32: packed float32 rows back into rows ``rows`` of ``dst``."""
    for s in range(rows.size):
        row = dst[rows[s] * d:(rows[s] + 1) * d]
        xs = x[s * d:(s + 1) * d]
        for j in range(d):
            store(row, j, xs[j])


@njit(**JIT)
def segment_sums(vals, order, starts, d, out):
    """out row s = sum of rows order[starts[s]:starts[s+1]] of flat ``vals``, in float32.

    Duplicates are added in the order given (the sort is stable), so sums repeat exactly.
    """
    for s in range(starts.size - 1):
        o = out[s * d:(s + 1) * d]
        first = vals[order[starts[s]] * d:(order[starts[s]] + 1) * d]
        for j in range(d):
            o[j] = load(first, j)
        for k in range(starts[s] + 1, starts[s + 1]):
            row = vals[order[k] * d:(order[k] + 1) * d]
            for j in range(d):
                o[j] += load(row, j)
