"""Fused optimizer updates on CUDA GPUs: one cupy kernel per rule.

Imported only when a GPU variable is updated, so CPU-only installs never
import cupy. Each rule's arithmetic is written once (``_BODIES``) and
instantiated twice: an ``ElementwiseKernel`` over every element (dense) and
one over the touched rows (sparse). cupy compiles each per dtype
combination on first use and caches the binary on disk.

Precision: float32 and float64 compute in their own type; float16 and
bfloat16 load into float32 and round back once (round to nearest even).
bfloat16 is passed to the kernels as its uint16 bits and converted in the
kernel with integer code, the same conversion as the CPU path: cupy only
understands ml_dtypes' bfloat16 from v14 on (experimentally), and the
uint16 view works with any cupy that can hold the array.

Sparse updates are deterministic: indices are sorted stably (cupy sorts
with thrust's stable sort), each output element sums its duplicates in
the order given, in one thread, with no atomics; then applies the rule.
An out-of-range index is found with one device-to-host sync, before
anything is written.

>>> # On a machine with a card (see tests/gpu/test_kernels_gpu.py):
>>> # import cupy as cp
>>> # var, g = cp.ones(4, cp.float32), cp.ones(4, cp.float32)
>>> # apply_dense("sgd", var, g, {}, lr=0.5)   # var is now 0.5 everywhere
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np

from devices.backends.arrays import cupy_module
from devices.dtypes import bfloat16
from devices.errors import InvalidArgumentError

from . import rules

_F16, _F32, _F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
_U16 = np.dtype(np.uint16)

# Loads and stores by C++ overload on the element type. `unsigned short` is
# only ever a bfloat16 view here (the Python side never passes real uint16).
PREAMBLE = r"""
template <typename T> struct vs_compute { typedef float type; };
template <> struct vs_compute<double> { typedef double type; };

__device__ __forceinline__ float vs_ld(float x) { return x; }
__device__ __forceinline__ double vs_ld(double x) { return x; }
__device__ __forceinline__ float vs_ld(float16 x) { return (float)x; }
__device__ __forceinline__ float vs_ld(unsigned short b) {
    return __uint_as_float(((unsigned int)b) << 16);
}

__device__ __forceinline__ void vs_st(float& d, float x) { d = x; }
__device__ __forceinline__ void vs_st(double& d, double x) { d = x; }
__device__ __forceinline__ void vs_st(float16& d, float x) { d = float16(x); }
__device__ __forceinline__ void vs_st(unsigned short& d, float x) {
    unsigned int u = __float_as_uint(x);
    d = (x != x) ? (unsigned short)((u >> 16) | 0x40u)
                 : (unsigned short)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}
"""

# Rule arithmetic in TF 1.x form. `gi` is the (summed) gradient in the compute
# type C; h0.. are the float64 hyperparameters in rules.HYPERS order, rounded to
# C where used; {var}, {s0}.. name the element (dense) or raw[j] (sparse).
_BODIES = {
    "sgd": "vs_st({var}, vs_ld({var}) - (C)h0 * gi);",
    "momentum": """
        C acc = (C)h1 * vs_ld({s0}) + gi;
        vs_st({s0}, acc);
        if (flag) vs_st({var}, vs_ld({var}) - (gi * (C)h0 + acc * (C)h1 * (C)h0));
        else vs_st({var}, vs_ld({var}) - (C)h0 * acc);""",
    "adam": """
        C m = (C)h1 * vs_ld({s0}) + (C)(1.0 - h1) * gi;
        C v = (C)h2 * vs_ld({s1}) + (C)(1.0 - h2) * gi * gi;
        vs_st({s0}, m);
        vs_st({s1}, v);
        vs_st({var}, vs_ld({var}) - (C)h0 * m / (sqrt(v) + (C)h3));""",
    "adagrad": """
        C acc = vs_ld({s0}) + gi * gi;
        vs_st({s0}, acc);
        vs_st({var}, vs_ld({var}) - (C)h0 * gi / sqrt(acc));""",
    "rmsprop": """
        C ms = (C)h1 * vs_ld({s0}) + (C)(1.0 - h1) * gi * gi;
        C mom = (C)h2 * vs_ld({s1}) + (C)h0 * gi / sqrt(ms + (C)h3);
        vs_st({s0}, ms);
        vs_st({s1}, mom);
        vs_st({var}, vs_ld({var}) - mom);""",
    "centered_rmsprop": """
        C ms = (C)h1 * vs_ld({s0}) + (C)(1.0 - h1) * gi * gi;
        C mg = (C)h1 * vs_ld({s2}) + (C)(1.0 - h1) * gi;
        C mom = (C)h2 * vs_ld({s1}) + (C)h0 * gi / sqrt(ms - mg * mg + (C)h3);
        vs_st({s0}, ms);
        vs_st({s2}, mg);
        vs_st({s1}, mom);
        vs_st({var}, vs_ld({var}) - mom);""",
}
_N_SLOTS = {"sgd": 0, "momentum": 1, "adam": 2, "adagrad": 1, "rmsprop": 2, "centered_rmsprop": 3}
_N_HYPER = {"sgd": 1, "momentum": 2, "adam": 4, "adagrad": 1, "rmsprop": 4, "centered_rmsprop": 4}
_FLAG = {"momentum"}


def kernel_source(kernel: str, sparse: bool) -> tuple[str, str, str]:
    """(in_params, out_params, operation) of the ElementwiseKernel for ``kernel``.

    Pure string building, so it is tested without a GPU.

    >>> print(kernel_source("sgd", sparse=False)[2].strip().splitlines()[-1].strip())
    vs_st(var, vs_ld(var) - (C)h0 * gi);
    """
    ns, nh = _N_SLOTS[kernel], _N_HYPER[kernel]
    hyper = ", ".join(f"float64 h{k}" for k in range(nh)) + (", int32 flag" if kernel in _FLAG else "")
    slots = [f"s{k}" for k in range(ns)]
    if sparse:
        in_params = "raw G vals, raw int64 order, raw int64 starts, raw int64 rows, int64 d, " + hyper
        out_params = ", ".join(["raw T var"] + [f"raw S {s}" for s in slots])
        names = {"var": "var[j]", **{s: f"{s}[j]" for s in slots}}
        head = """
        typedef vs_compute<T>::type C;
        const long long seg = i / d, col = i - seg * d;
        C gi = 0;
        for (long long k = starts[seg]; k < starts[seg + 1]; ++k) gi += vs_ld(vals[order[k] * d + col]);
        const long long j = rows[seg] * d + col;"""
    else:
        in_params = "G g, " + hyper
        out_params = ", ".join(["T var"] + [f"S {s}" for s in slots])
        names = {"var": "var", **{s: s for s in slots}}
        head = """
        typedef vs_compute<T>::type C;
        C gi = vs_ld(g);"""
    return in_params, out_params, head + "\n" + _BODIES[kernel].format(**names)


@functools.cache
def _kernel(kernel: str, sparse: bool):
    cp = cupy_module()
    in_params, out_params, body = kernel_source(kernel, sparse)
    name = f"varstore_{kernel}_{'sparse' if sparse else 'dense'}"
    return cp.ElementwiseKernel(in_params, out_params, body, name, preamble=PREAMBLE)


def _cupy():
    cp = cupy_module()
    if cp is None:
        raise InvalidArgumentError("GPU optimizer kernels need cupy (pip install 'varstore[gpu]')")
    return cp


def _operand(cp, a: Any, shape: tuple, dtype: np.dtype, what: str, rule: str, out: bool, device_id: int):
    """``a`` checked against var, as the array the kernel takes (bfloat16 as uint16 bits)."""
    if not isinstance(a, cp.ndarray):
        raise InvalidArgumentError(f"{rule}: {what} must be a cupy array on the GPU, got {type(a).__name__}")
    rules.check_operand(rule, what, shape, dtype, a.shape, a.dtype)
    if a.device.id != device_id:
        raise InvalidArgumentError(f"{rule}: {what} is on GPU {a.device.id}, var on GPU {device_id}")
    if not a.flags.c_contiguous:
        if out:
            raise InvalidArgumentError(f"{rule}: {what} must be C-contiguous (it is updated in place)")
        a = cp.ascontiguousarray(a)
    return a.view(_U16) if a.dtype == bfloat16 else a


def _prepare(rule: str, var: Any, slots: Mapping[str, Any], hyper: Mapping[str, Any]):
    cp = _cupy()
    kernel, keys, h, flag = rules.parse(rule, hyper)
    if not isinstance(var, cp.ndarray):
        raise InvalidArgumentError(f"{rule}: var must be a cupy array on the GPU, got {type(var).__name__}")
    dev = var.device.id
    v = _operand(cp, var, var.shape, var.dtype, "var", rule, True, dev)
    arrays = rules.check_slots(rule, keys, slots)
    s = [_operand(cp, a, var.shape, var.dtype, f"slot {k}", rule, True, dev) for k, a in zip(keys, arrays)]
    if len({a.dtype for a in s}) > 1:
        raise InvalidArgumentError(f"{rule}: slots must share one dtype, got {[str(a.dtype) for a in s]}")
    extra = (np.int32(flag),) if kernel in _FLAG else ()
    return cp, kernel, v, s, h + extra


def apply_dense(rule: str, var: Any, grad: Any, slots: Mapping[str, Any], **hyper: Any) -> None:
    """Update ``var`` and ``slots`` (cupy arrays) in place: one fused kernel launch.

    Same contract as :func:`varstore.train.kernels.cpu.apply_dense`.
    """
    cp, kernel, v, s, h = _prepare(rule, var, slots, hyper)
    g = _operand(cp, grad, var.shape, var.dtype, "grad", rule, False, var.device.id)
    if v.size == 0:
        return
    with var.device:
        _kernel(kernel, False)(g, *h, v, *s)


def apply_sparse(rule: str, var: Any, indices: Any, values: Any, slots: Mapping[str, Any],
                 **hyper: Any) -> None:
    """Update rows ``indices`` of ``var`` and ``slots`` (duplicates summed first) in one launch.

    Same contract as :func:`varstore.train.kernels.cpu.apply_sparse`.
    """
    cp, kernel, v, s, h = _prepare(rule, var, slots, hyper)
    if var.ndim == 0:
        raise InvalidArgumentError(f"{rule}: a sparse update needs a var with at least one dimension")
    with var.device:
        idx = cp.asarray(indices)
        if idx.dtype.kind not in "iu":
            raise InvalidArgumentError(f"{rule}: indices must be integers, got dtype {idx.dtype}")
        expected = idx.shape + var.shape[1:]
        vals = _operand(cp, values, expected, var.dtype, "values", rule, False, var.device.id)
        first_dim = var.shape[0]
        d = var.size // first_dim if first_dim else 0
        if idx.size == 0 or d == 0:
            return
        idx = idx.reshape(-1).astype(cp.int64, copy=False)
        bad = (idx < 0) | (idx >= first_dim)
        if bool(bad.any()):  # the one sync: the error must name the index
            k = int(cp.argmax(bad))
            raise InvalidArgumentError(f"{rule}: indices[{k}] = {int(idx[k])} is not in [0, {first_dim})")
        order = cp.argsort(idx)  # stable: duplicates keep their order, sums repeat exactly
        sidx = idx[order]
        first = cp.empty(idx.size, dtype=cp.bool_)
        first[0] = True
        cp.not_equal(sidx[1:], sidx[:-1], out=first[1:])
        seg_starts = cp.flatnonzero(first)
        rows = sidx[seg_starts]
        starts = cp.concatenate([seg_starts, cp.asarray([idx.size], dtype=seg_starts.dtype)]).astype(cp.int64)
        _kernel(kernel, True)(vals, order, starts, rows, np.int64(d), *h, v, *s,
                              size=rows.size * d)
