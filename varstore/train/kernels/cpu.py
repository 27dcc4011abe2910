"""Fused optimizer updates on the CPU: one compiled pass per variable.

(A step over many variables is one compiled call for all of them, in
``cpu_multi``, through these same drivers: same bits, without the Python
this module spends on each variable's checks.)

Why numba
---------
An update like Adam reads four arrays (var, grad, m, v) and writes three:
28 bytes of memory traffic per float32 element, against a handful of
vector instructions, so memory passes are the whole cost. A chain of numpy
ufuncs, even in place with ``out=``, makes one pass per operation (about
ten for Adam) and runs 3x slower than a single fused loop (see
``benchmarks/optimizers.py``). A C extension would give the fused loop
too, at the price of a compiler in every install and per-platform wheels
for a handful of loops. numba (a dependency for this alone) compiles the
loop with LLVM for the host CPU, AVX-512 included, and caches the machine
code on disk (``cache=True``): the compile cost is paid once per machine,
not per process. The loops are in ``cpu_rules.py``; ``_jit.py`` says why
each numba setting is what it is.

Precision
---------
float32 computes in float32 and float64 in float64. float16 and bfloat16
are converted to float32 in cache-sized blocks (``_BLOCK`` elements, held
in per-thread scratch that stays in L2), updated by the same float32
kernel and rounded back (round to nearest even). Memory still sees one
read and one write per array; the block loop runs in Python and costs a
few microseconds per block. Compiling every rule for two more storage
types in the kernels themselves would double the compile cost (about 20 s
more on a cold cache on a 2-core machine) for a precision that is rare on
CPUs; converting blocks costs nothing to compile, and a half-precision
update is then by construction the float32 update, rounded.

Threads
-------
``set_threads(n)`` (or ``VARSTORE_CPU_THREADS``) splits a big variable into
contiguous chunks on 64-element boundaries, run in a thread pool (the
kernels release the GIL). Variables under ``2 * MIN_PER_THREAD`` elements
stay on the calling thread, so a model of many small tensors pays no pool
overhead. Every element gets the same arithmetic whatever the split, so
results are bitwise identical for any thread count. The default is the
CPUs this process may use (as TF and torch do); ``set_threads(1)`` suits a
process that runs its own threads.

>>> import numpy as np
>>> from varstore.train.kernels import cpu
>>> var, m, v = np.ones(4, np.float32), np.zeros(4, np.float32), np.zeros(4, np.float32)
>>> cpu.apply_dense("adam", var, np.ones(4, np.float32), {"m": m, "v": v},
...                 lr=0.1, beta1=0.9, beta2=0.999, epsilon=1e-8)
>>> [round(float(x), 4) for x in var]
[0.6838, 0.6838, 0.6838, 0.6838]
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from devices.dtypes import bfloat16
from devices.errors import InvalidArgumentError

from . import half, rules
from .cpu_rules import KERNELS

_F16, _F32, _F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
# Storage dtype -> the view numba sees (None: as is). int16 vs uint16 tags float16 vs bfloat16.
_VIEW = {_F32: None, _F64: None, _F16: np.dtype(np.int16), bfloat16: np.dtype(np.uint16)}
_HALF = rules.HALF

_BLOCK = 1 << 15  # half-precision block: 128 KiB of float32 per array, L2-resident
_tls = threading.local()

MIN_PER_THREAD = 1 << 17  # elements; below this a thread costs more than it saves
_ALIGN_ELEMS = 64  # chunk boundaries on multiples of 64 elements: whole cache lines per thread


def _default_threads() -> int:
    env = os.environ.get("VARSTORE_CPU_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


_threads = _default_threads()
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def set_threads(n: int | None) -> None:
    """Threads for one big update (None: the CPUs this process may use).

    Results do not depend on it: every element gets the same arithmetic.

    >>> set_threads(1); get_threads()
    1
    >>> set_threads(None)
    """
    global _threads, _pool
    if n is not None and (not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1):
        raise InvalidArgumentError(f"threads must be a positive integer or None, got {n!r}")
    with _pool_lock:
        new = int(n) if n is not None else _default_threads()
        if new != _threads:
            # No shutdown: a call in flight on another thread may still submit to the old
            # pool; its idle workers exit once it is garbage collected.
            _threads, _pool = new, None


def get_threads() -> int:
    """The thread count big updates use."""
    return _threads


def _get_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=max(1, _threads - 1),
                                       thread_name_prefix="varstore-kernels")
        return _pool


def _forget_pool_after_fork() -> None:
    # A forked child inherits the pool object but not its threads.
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _chunks(n: int, threads: int) -> list[tuple[int, int]]:
    """Split [0, n) into at most ``threads`` ranges on multiples of _ALIGN_ELEMS."""
    t = min(threads, n // MIN_PER_THREAD)
    if t <= 1:
        return [(0, n)]
    step = -(-n // t)
    step += -step % _ALIGN_ELEMS
    return [(lo, min(n, lo + step)) for lo in range(0, n, step)]


def _run_split(fn: Callable, args: tuple, spans: list[tuple[int, int]]) -> None:
    """fn(*args, lo, hi) for each span: the caller takes the first, the pool the rest."""
    if len(spans) == 1:
        fn(*args, *spans[0])
        return
    pool = _get_pool()
    futures = [pool.submit(fn, *args, lo, hi) for lo, hi in spans[1:]]
    try:
        fn(*args, *spans[0])
    finally:
        for f in futures:
            f.result()


# (var dtype, operand dtype) -> the view numba sees (None: as is), for the pairs allowed.
_COMPAT = {(d, d): view for d, view in _VIEW.items()}
_COMPAT.update({(h, _F32): None for h in _HALF})


def _flat(a: Any, shape: tuple, dtype: np.dtype, what: str, rule: str, out: bool) -> np.ndarray:
    """``a`` as the flat array view numba takes, after checking it against var.

    ``out``: ``a`` is written (var, slots), so it must be writable and
    C-contiguous; an input (grad, values) that is not contiguous is copied.
    Every call runs this for each array: the checks that pass cost ~0.5 us.
    """
    if isinstance(a, np.ndarray):
        adt = a.dtype
        view = _VIEW.get(adt, False) if adt is dtype else _COMPAT.get((dtype, adt), False)
        flags = a.flags
        if view is not False and a.shape == shape and flags.c_contiguous and (flags.writeable or not out):
            flat = a.reshape(-1)
            return flat if view is None else flat.view(view)
    return _slow_flat(a, shape, dtype, what, rule, out)


def _slow_flat(a: Any, shape: tuple, dtype: np.dtype, what: str, rule: str, out: bool) -> np.ndarray:
    """Copy a non-contiguous input, or raise InvalidArgumentError saying what is wrong."""
    if not isinstance(a, np.ndarray):
        raise InvalidArgumentError(f"{rule}: {what} must be a numpy array on the CPU, got {type(a).__name__}")
    rules.check_operand(rule, what, shape, dtype, a.shape, a.dtype)
    if out and not a.flags.c_contiguous:
        raise InvalidArgumentError(f"{rule}: {what} must be C-contiguous (it is updated in place)")
    if out:
        raise InvalidArgumentError(f"{rule}: {what} is read-only")
    return _flat(np.ascontiguousarray(a), shape, dtype, what, rule, out)


_SLOT_LABEL = {k: f"slot {k}" for keys in rules.RULES.values() for k in keys} | {"mg": "slot mg"}


def _slot_views(rule: str, keys: tuple[str, ...], slots: Mapping[str, Any], var: np.ndarray) -> list:
    try:
        if len(slots) == len(keys):
            shape, dtype = var.shape, var.dtype
            return [_flat(slots[k], shape, dtype, _SLOT_LABEL[k], rule, True) for k in keys]
    except (KeyError, TypeError):
        pass
    rules.check_slots(rule, keys, slots)  # raises, naming the missing or extra key
    raise AssertionError("unreachable")  # pragma: no cover


def segments(idx: np.ndarray, first_dim: int, rule: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group the 1-D integer ``idx`` by row: (order, rows, starts), all int64.

    Segment s sums the values rows order[starts[s]:starts[s+1]] into row
    rows[s]. The sort is stable, so duplicates are summed in the order they
    were given and sums repeat exactly. An index outside [0, first_dim)
    raises InvalidArgumentError naming it. (numpy, not numba: numba's
    argsort costs 1.5 s to compile, numpy's runs as fast.)

    >>> segments(np.array([4, 1, 4]), 5, "sgd")
    (array([1, 0, 2]), array([1, 4]), array([0, 1, 3]))
    """
    if idx.min() < 0 or idx.max() >= first_dim:
        k = int(np.flatnonzero((idx < 0) | (idx >= first_dim))[0])
        raise InvalidArgumentError(f"{rule}: indices[{k}] = {int(idx[k])} is not in [0, {first_dim})")
    order = np.argsort(idx, kind="stable").astype(np.int64, copy=False)
    sorted_idx = idx[order].astype(np.int64, copy=False)
    first = np.empty(idx.size, dtype=bool)
    first[0] = True
    np.not_equal(sorted_idx[1:], sorted_idx[:-1], out=first[1:])
    seg = np.flatnonzero(first)
    starts = np.empty(seg.size + 1, np.int64)
    starts[:-1] = seg
    starts[-1] = idx.size
    return order, sorted_idx[seg], starts


def _scratch(rows: int, n: int) -> np.ndarray:
    """A per-thread (rows, n) float32 array, rows on 64-byte boundaries, reused across calls."""
    buf = getattr(_tls, "scratch", None)
    if buf is None or buf.shape[0] < rows or buf.shape[1] < n:
        width = max(n, _BLOCK if buf is None else buf.shape[1])
        width += -width % 16  # whole cache lines per row
        raw = np.empty(max(rows, 5) * width + 16, np.float32)
        start = (-raw.ctypes.data % 64) // 4
        buf = raw[start:start + max(rows, 5) * width].reshape(-1, width)
        _tls.scratch = buf
    return buf


def _dense_half(dense: Callable, v: np.ndarray, g: np.ndarray, slots: list, hargs: tuple,
                lo: int, hi: int) -> None:
    """Half-precision dense update of [lo, hi): float32 blocks through the float32 kernel."""
    buf = _scratch(2 + len(slots), min(_BLOCK, hi - lo))
    g32 = g.dtype == _F32
    for a in range(lo, hi, _BLOCK):
        b = min(hi, a + _BLOCK)
        n = b - a
        xv = buf[0, :n]
        half.to_f32(v, a, xv)
        if g32:
            xg = g[a:b]
        else:
            xg = buf[1, :n]
            half.to_f32(g, a, xg)
        xs = []
        for k, s in enumerate(slots):
            if s.dtype == _F32:  # float32 slots of a half var: updated in place
                xs.append(s[a:b])
            else:
                x = buf[2 + k, :n]
                half.to_f32(s, a, x)
                xs.append(x)
        dense(xv, xg, *xs, *hargs, 0, n)
        half.from_f32(xv, v, a)
        for s, x in zip(slots, xs):
            if s.dtype != _F32:
                half.from_f32(x, s, a)


def _split(fn: Callable, args: tuple, n: int) -> None:
    """fn(*args, lo, hi) over [0, n), split across threads when n is big enough."""
    if _threads == 1 or n < 2 * MIN_PER_THREAD:
        fn(*args, 0, n)  # the common, small case: no list, no pool
    else:
        _run_split(fn, args, _chunks(n, _threads))


def apply_dense(rule: str, var: np.ndarray, grad: np.ndarray, slots: Mapping[str, np.ndarray],
                **hyper: Any) -> None:
    """Update ``var`` and ``slots`` in place with dense gradient ``grad``: one pass.

    ``grad`` has var's shape and dtype; slots have var's shape and dtype. For
    a float16 or bfloat16 var, float32 is accepted for ``grad`` and slots too.

    >>> import numpy as np
    >>> var, acc = np.ones(2, np.float32), np.zeros(2, np.float32)
    >>> apply_dense("momentum", var, np.ones(2, np.float32), {"momentum": acc}, lr=0.5, momentum=0.9)
    >>> var.tolist(), acc.tolist()
    ([0.5, 0.5], [1.0, 1.0])
    """
    dense_update(rule, var, grad, slots, hyper)


def dense_update(rule: str, var: np.ndarray, grad: np.ndarray, slots: Mapping[str, np.ndarray],
                 hyper: Mapping[str, Any]) -> None:
    """:func:`apply_dense` with the hyperparameters as one mapping (the dispatch's fast path)."""
    kernel, keys, h, flag = rules.parse(rule, hyper)
    if not isinstance(var, np.ndarray):
        _slow_flat(var, (), _F32, "var", rule, True)  # raises
    shape, dtype = var.shape, var.dtype
    v = _flat(var, shape, dtype, "var", rule, True)
    g = _flat(grad, shape, dtype, "grad", rule, False)
    s = _slot_views(rule, keys, slots, var) if keys else ()
    dense, _, takes_flag = KERNELS[kernel]
    if takes_flag:
        h = (*h, flag)
    n = v.size
    if v.dtype is not dtype:  # a half var, seen through its integer view
        _split(_dense_half, (dense, v, g, s, h), n)
    elif _threads == 1 or n < 2 * MIN_PER_THREAD:
        dense(v, g, *s, *h, 0, n)  # the common case: no tuple building, no pool
    else:
        _run_split(dense, (v, g, *s, *h), _chunks(n, _threads))


def apply_sparse(rule: str, var: np.ndarray, indices: Any, values: np.ndarray,
                 slots: Mapping[str, np.ndarray], **hyper: Any) -> None:
    """Update only rows ``indices`` of ``var`` and ``slots``, duplicate indices summed first.

    ``values`` has shape ``indices.shape + var.shape[1:]``. Rows not named are
    not touched, slots included (TF's sparse apply; "lazy" Adam). An index
    outside ``[0, var.shape[0])`` raises InvalidArgumentError before anything
    is written.

    >>> import numpy as np
    >>> var, acc = np.zeros((3, 2), np.float32), np.zeros((3, 2), np.float32)
    >>> apply_sparse("adagrad", var, np.array([2, 2]), np.ones((2, 2), np.float32),
    ...              {"accumulator": acc}, lr=1.0)
    >>> var[:, 0].tolist(), acc[:, 0].tolist()
    ([0.0, 0.0, -1.0], [0.0, 0.0, 4.0])
    """
    kernel, keys, h, flag = rules.parse(rule, hyper)
    if not isinstance(var, np.ndarray):
        _slow_flat(var, (), _F32, "var", rule, True)  # raises
    v = _flat(var, var.shape, var.dtype, "var", rule, True)
    if var.ndim == 0:
        raise InvalidArgumentError(f"{rule}: a sparse update needs a var with at least one dimension")
    idx = np.asarray(indices)
    if idx.dtype.kind not in "iu":
        raise InvalidArgumentError(f"{rule}: indices must be integers, got dtype {idx.dtype}")
    expected = idx.shape + var.shape[1:]
    if getattr(values, "shape", None) != expected:
        raise InvalidArgumentError(
            f"{rule}: values have shape {getattr(values, 'shape', None)}, expected indices.shape + "
            f"var.shape[1:] = {expected}")
    vals = _flat(values, expected, var.dtype, "values", rule, False)
    s = _slot_views(rule, keys, slots, var) if keys else []
    first_dim = var.shape[0]
    if idx.size == 0:
        return
    idx = idx.reshape(-1)
    order, rows, starts = segments(idx, first_dim, rule)
    d = v.size // first_dim
    if d == 0:
        return
    dense, sparse, takes_flag = KERNELS[kernel]
    hargs = (*h, flag) if takes_flag else h
    nseg = rows.size
    if var.dtype in _HALF:
        # Touched rows only: sum duplicates, gather rows as float32, float32 kernel, round back.
        n = nseg * d
        g32 = np.empty(n, _F32)
        half.segment_sums(vals, order, starts, d, g32)
        x = np.empty((1 + len(s), n), _F32)
        for k, a in enumerate([v, *s]):
            half.gather_f32(a, rows, d, x[k])
        _split(dense, (x[0], g32, *x[1:], *hargs), n)
        for k, a in enumerate([v, *s]):
            half.scatter_f32(x[k], rows, d, a)
        return
    ctype = _F64 if var.dtype == _F64 else _F32
    args = (v, vals, *s, *hargs, rows, order, starts)
    # Split segments across threads by rows touched; each thread sums into its own buffer.
    t = min(_threads, (nseg * d) // MIN_PER_THREAD, nseg)
    if t <= 1:
        sparse(*args, 0, nseg, np.empty(d, ctype))
        return
    step = -(-nseg // t)
    bufs = np.empty((t, d), ctype)
    spans = [(lo, min(nseg, lo + step)) for lo in range(0, nseg, step)]
    pool = _get_pool()
    futures = [pool.submit(sparse, *args, lo, hi, bufs[k]) for k, (lo, hi) in enumerate(spans) if k]
    try:
        sparse(*args, *spans[0], bufs[0])
    finally:
        for f in futures:
            f.result()
