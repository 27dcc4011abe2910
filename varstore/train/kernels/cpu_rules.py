"""The update rules as numba loops over float32 or float64 arrays.

Each rule has a loop body over equal-length 1-D views (its constants
already in the compute type), a dense driver over elements [lo, hi) and a
sparse driver over segments [s_lo, s_hi) of deduplicated rows. The
formulas are TF 1.x's (see reference.py); the Python side (cpu.py) checks
arguments, so nothing here validates.

Loops run over slices (``a[lo:hi]`` then ``a[i]``), never ``a[lo + i]``:
numba must allow for negative indices unless the index is a plain range
counter, and that check alone stops LLVM from vectorizing.

>>> import numpy as np
>>> var, g = np.ones(3, np.float32), np.ones(3, np.float32)
>>> sgd_dense(var, g, 0.25, 0, 3); var.tolist()
[0.75, 0.75, 0.75]
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ._jit import JIT, ctype, sqrt


@njit(**JIT)
def _aligned_split(a, lo, hi):
    """First index >= lo at which ``a`` sits on a 64-byte boundary (at most hi).

    The dense drivers run the first few elements apart so that the long
    loop's AVX-512 loads and stores are aligned: numpy's large allocations
    start 16 bytes past a page boundary, and unaligned loads cost ~15% on
    Adam. Arrays allocated by ``devices`` are already aligned.
    """
    size = a.itemsize
    # int64 throughout: numba turns uint64 (the pointer) mixed with int64 into float64.
    off = (64 - (np.int64(a.ctypes.data) + lo * size) % 64) % 64
    return min(hi, lo + off // size) if off % size == 0 else lo


@njit(**JIT)
def _parts(a, lo, hi, part):
    """Bounds of part 0 (unaligned head) or 1 (aligned rest) of [lo, hi).

    Drivers loop ``for part in range(2)`` so the body has one call site and
    is compiled (inlined) once: a second call site doubles the compile time.
    """
    mid = _aligned_split(a, lo, hi)
    return (lo, mid) if part == 0 else (mid, hi)


@njit(**JIT)
def sum_rows(vals, order, a, b, buf):
    """buf = sum of rows order[a:b] of flat ``vals`` (row length buf.size), in that order."""
    d = buf.size
    first = vals[order[a] * d:(order[a] + 1) * d]
    for j in range(d):
        buf[j] = first[j]
    for k in range(a + 1, b):
        row = vals[order[k] * d:(order[k] + 1) * d]
        for j in range(d):
            buf[j] += row[j]


# -- sgd: var -= lr * g -------------------------------------------------------

@njit(**JIT)
def _sgd_body(var, g, lr):
    for i in range(var.size):
        var[i] = var[i] - lr * g[i]


@njit(**JIT)
def sgd_dense(var, g, lr, lo, hi):
    lr_ = ctype(var, lr)
    for part in range(2):
        a, b = _parts(var, lo, hi, part)
        _sgd_body(var[a:b], g[a:b], lr_)


@njit(**JIT)
def sgd_sparse(var, vals, lr, rows, order, starts, s_lo, s_hi, buf):
    lr_ = ctype(var, lr)
    d = buf.size
    for s in range(s_lo, s_hi):
        sum_rows(vals, order, starts[s], starts[s + 1], buf)
        a = rows[s] * d
        _sgd_body(var[a:a + d], buf, lr_)


# -- momentum: accum = m*accum + g; var -= lr*accum (nesterov: lr*g + lr*m*accum) --

@njit(**JIT)
def _momentum_body(var, g, acc, lr, mom, nesterov):
    if nesterov:  # TF's order of operations: var -= g*lr + accum*momentum*lr
        for i in range(var.size):
            gi = g[i]
            ai = mom * acc[i] + gi
            acc[i] = ai
            var[i] = var[i] - (gi * lr + ai * mom * lr)
    else:
        for i in range(var.size):
            ai = mom * acc[i] + g[i]
            acc[i] = ai
            var[i] = var[i] - lr * ai


@njit(**JIT)
def momentum_dense(var, g, acc, lr, mom, nesterov, lo, hi):
    lr_, mom_ = ctype(var, lr), ctype(var, mom)
    for part in range(2):
        a, b = _parts(var, lo, hi, part)
        _momentum_body(var[a:b], g[a:b], acc[a:b], lr_, mom_, nesterov)


@njit(**JIT)
def momentum_sparse(var, vals, acc, lr, mom, nesterov, rows, order, starts, s_lo, s_hi, buf):
    lr_, mom_ = ctype(var, lr), ctype(var, mom)
    d = buf.size
    for s in range(s_lo, s_hi):
        sum_rows(vals, order, starts[s], starts[s + 1], buf)
        a = rows[s] * d
        _momentum_body(var[a:a + d], buf, acc[a:a + d], lr_, mom_, nesterov)


# -- adam (TF 1.x form; lr has the bias correction folded in) -----------------

@njit(**JIT)
def _adam_body(var, g, m, v, lr, b1, c1, b2, c2, eps):
    for i in range(var.size):
        gi = g[i]
        mi = b1 * m[i] + c1 * gi
        vi = b2 * v[i] + c2 * gi * gi
        m[i] = mi
        v[i] = vi
        var[i] = var[i] - lr * mi / (sqrt(vi) + eps)


@njit(**JIT)
def adam_dense(var, g, m, v, lr, b1, b2, eps, lo, hi):
    # 1 - beta is formed in float64 and then rounded: 1 - float32(0.999) is 1e-5 off.
    lr_, b1_, b2_, eps_ = ctype(var, lr), ctype(var, b1), ctype(var, b2), ctype(var, eps)
    c1, c2 = ctype(var, 1.0 - b1), ctype(var, 1.0 - b2)
    for part in range(2):
        a, b = _parts(var, lo, hi, part)
        _adam_body(var[a:b], g[a:b], m[a:b], v[a:b], lr_, b1_, c1, b2_, c2, eps_)


@njit(**JIT)
def adam_sparse(var, vals, m, v, lr, b1, b2, eps, rows, order, starts, s_lo, s_hi, buf):
    lr_, b1_, b2_, eps_ = ctype(var, lr), ctype(var, b1), ctype(var, b2), ctype(var, eps)
    c1, c2 = ctype(var, 1.0 - b1), ctype(var, 1.0 - b2)
    d = buf.size
    for s in range(s_lo, s_hi):
        sum_rows(vals, order, starts[s], starts[s + 1], buf)
        a = rows[s] * d
        _adam_body(var[a:a + d], buf, m[a:a + d], v[a:a + d], lr_, b1_, c1, b2_, c2, eps_)


# -- adagrad: accum += g*g; var -= lr * g / sqrt(accum) ------------------------

@njit(**JIT)
def _adagrad_body(var, g, acc, lr):
    for i in range(var.size):
        gi = g[i]
        ai = acc[i] + gi * gi
        acc[i] = ai
        var[i] = var[i] - lr * gi / sqrt(ai)


@njit(**JIT)
def adagrad_dense(var, g, acc, lr, lo, hi):
    lr_ = ctype(var, lr)
    for part in range(2):
        a, b = _parts(var, lo, hi, part)
        _adagrad_body(var[a:b], g[a:b], acc[a:b], lr_)


@njit(**JIT)
def adagrad_sparse(var, vals, acc, lr, rows, order, starts, s_lo, s_hi, buf):
    lr_ = ctype(var, lr)
    d = buf.size
    for s in range(s_lo, s_hi):
        sum_rows(vals, order, starts[s], starts[s + 1], buf)
        a = rows[s] * d
        _adagrad_body(var[a:a + d], buf, acc[a:a + d], lr_)


# -- rmsprop: ms = rho*ms + (1-rho)*g*g; mom = m*mom + lr*g/sqrt(ms + eps); var -= mom --

@njit(**JIT)
def _rmsprop_body(var, g, ms, mom, lr, rho, c, momentum, eps):
    for i in range(var.size):
        gi = g[i]
        msi = rho * ms[i] + c * gi * gi
        mi = momentum * mom[i] + lr * gi / sqrt(msi + eps)
        ms[i] = msi
        mom[i] = mi
        var[i] = var[i] - mi


@njit(**JIT)
def rmsprop_dense(var, g, ms, mom, lr, rho, momentum, eps, lo, hi):
    lr_, rho_, mo_, eps_ = ctype(var, lr), ctype(var, rho), ctype(var, momentum), ctype(var, eps)
    c = ctype(var, 1.0 - rho)
    for part in range(2):
        a, b = _parts(var, lo, hi, part)
        _rmsprop_body(var[a:b], g[a:b], ms[a:b], mom[a:b], lr_, rho_, c, mo_, eps_)


@njit(**JIT)
def rmsprop_sparse(var, vals, ms, mom, lr, rho, momentum, eps, rows, order, starts, s_lo, s_hi, buf):
    lr_, rho_, mo_, eps_ = ctype(var, lr), ctype(var, rho), ctype(var, momentum), ctype(var, eps)
    c = ctype(var, 1.0 - rho)
    d = buf.size
    for s in range(s_lo, s_hi):
        sum_rows(vals, order, starts[s], starts[s + 1], buf)
        a = rows[s] * d
        _rmsprop_body(var[a:a + d], buf, ms[a:a + d], mom[a:a + d], lr_, rho_, c, mo_, eps_)


# -- centered rmsprop: also mg = rho*mg + (1-rho)*g; denominator ms - mg^2 + eps --

@njit(**JIT)
def _centered_rmsprop_body(var, g, ms, mom, mg, lr, rho, c, momentum, eps):
    for i in range(var.size):
        gi = g[i]
        msi = rho * ms[i] + c * gi * gi
        mgi = rho * mg[i] + c * gi
        mi = momentum * mom[i] + lr * gi / sqrt(msi - mgi * mgi + eps)
        ms[i] = msi
        mg[i] = mgi
        mom[i] = mi
        var[i] = var[i] - mi


@njit(**JIT)
def centered_rmsprop_dense(var, g, ms, mom, mg, lr, rho, momentum, eps, lo, hi):
    lr_, rho_, mo_, eps_ = ctype(var, lr), ctype(var, rho), ctype(var, momentum), ctype(var, eps)
    c = ctype(var, 1.0 - rho)
    for part in range(2):
        a, b = _parts(var, lo, hi, part)
        _centered_rmsprop_body(var[a:b], g[a:b], ms[a:b], mom[a:b], mg[a:b], lr_, rho_, c, mo_, eps_)


@njit(**JIT)
def centered_rmsprop_sparse(var, vals, ms, mom, mg, lr, rho, momentum, eps, rows, order, starts,
                            s_lo, s_hi, buf):
    lr_, rho_, mo_, eps_ = ctype(var, lr), ctype(var, rho), ctype(var, momentum), ctype(var, eps)
    c = ctype(var, 1.0 - rho)
    d = buf.size
    for s in range(s_lo, s_hi):
        sum_rows(vals, order, starts[s], starts[s + 1], buf)
        a = rows[s] * d
        _centered_rmsprop_body(var[a:a + d], buf, ms[a:a + d], mom[a:a + d], mg[a:a + d],
                               lr_, rho_, c, mo_, eps_)


# kernel name -> (dense driver, sparse driver, takes the boolean flag)
KERNELS = {
    "sgd": (sgd_dense, sgd_sparse, False),
    "momentum": (momentum_dense, momentum_sparse, True),
    "adam": (adam_dense, adam_sparse, False),
    "adagrad": (adagrad_dense, adagrad_sparse, False),
    "rmsprop": (rmsprop_dense, rmsprop_sparse, False),
    "centered_rmsprop": (centered_rmsprop_dense, centered_rmsprop_sparse, False),
}
