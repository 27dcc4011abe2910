"""Numba settings and the two LLVM-level helpers every CPU kernel uses.

Why these settings (see cpu.py for the wider story):
- ``error_model="numpy"``: numba's default (Python semantics) puts a
  ZeroDivisionError check on every division, which stops LLVM from
  vectorizing the loop. With numpy semantics x/0 is inf/nan, as in numpy.
- ``fastmath=False``: IEEE results, independent of how a loop is split
  across threads or vector lanes.
- ``cache``: machine code is kept on disk where numba finds a writable
  place (``NUMBA_CACHE_DIR``, the ``__pycache__`` beside this package, or
  the user's cache directory, in numba's own order), so the compile cost is
  paid once per machine and source version. Where there is none (a
  non-root user in a container, with a read-only site-packages and
  ``$HOME``) the kernels are compiled in memory, once per process, instead
  of failing: see :func:`_cache_usable`.
- ``nogil=True``: big updates are split across a thread pool.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload


def _cache_usable() -> bool:
    """Whether numba can cache functions defined in this directory (every kernel module is here).

    ``njit(cache=True)`` looks for a cache locator when it decorates, and raises
    ``RuntimeError: cannot cache function ...: no locator available`` when no
    candidate place is writable. That error would surface from every optimizer
    update (the kernels load on first use), so a throwaway function is decorated
    here first, by numba's own rules (NUMBA_CACHE_DIR, the in-tree
    ``__pycache__``, the user-wide cache; NUMBA_CACHE_LOCATOR_CLASSES where numba
    has it): no private API, nothing compiled, no file left behind.

    Without a locator the kernels compile in memory, once per process (a few
    seconds). Inventing a cache directory instead (under /tmp, say) is what we
    do not do: numba's cache files are pickles, and a directory another user
    can write to would let them run code in this process.
    """
    def probe() -> None:  # pragma: no cover - never called, only decorated
        pass

    try:
        njit(cache=True)(probe)
    except RuntimeError:
        return False
    return True


JIT = dict(cache=_cache_usable(), nogil=True, fastmath=False, error_model="numpy")


@intrinsic
def sqrt(typingctx, x):
    """IEEE square root via ``llvm.sqrt``.

    numba lowers ``np.sqrt`` on float32 to a libm ``sqrtf`` call guarded for
    errno, which LLVM cannot vectorize; ``llvm.sqrt`` is the same correctly
    rounded result as one ``vsqrtps``.
    """
    sig = x(x)

    def codegen(context, builder, signature, args):
        fn = builder.module.declare_intrinsic("llvm.sqrt", [args[0].type])
        return builder.call(fn, args)

    return sig, codegen


@intrinsic
def f32_from_bits(typingctx, x):
    """The float32 whose bit pattern is the low 32 bits of integer ``x``."""
    sig = types.float32(x)

    def codegen(context, builder, signature, args):
        v = args[0]
        if v.type.width > 32:
            v = builder.trunc(v, ir.IntType(32))
        return builder.bitcast(v, ir.FloatType())

    return sig, codegen


@intrinsic
def f32_bits(typingctx, x):
    """The bit pattern of float32 ``x`` as a non-negative int64."""
    sig = types.int64(types.float32)

    def codegen(context, builder, signature, args):
        return builder.zext(builder.bitcast(args[0], ir.IntType(32)), ir.IntType(64))

    return sig, codegen


def ctype(a, x):  # pragma: no cover - typed by the overload below
    """``x`` cast to the compute type of array ``a``: float64 for float64, else float32.

    Constants are cast once, outside the loops: a Python float literal in a
    float32 loop would promote the arithmetic to float64 and halve the
    SIMD width.
    """


@overload(ctype)
def _ol_ctype(a, x):
    if a.dtype == types.float64:
        return lambda a, x: np.float64(x)
    return lambda a, x: np.float32(x)
