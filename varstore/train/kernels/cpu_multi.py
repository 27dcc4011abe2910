"""Multi-tensor optimizer steps on the CPU: one compiled call per (rule, dtypes) group.

Why
---
A model is hundreds or thousands of variables, most of them small. Through
:func:`cpu.dense_update` each one pays its own Python: argument parsing, the
checks on four arrays, a numba dispatch. About 7 us a variable, against
~0.1 us of arithmetic for 256 floats: at 2,000 variables the step was
Python-bound (2.5x torch's fused Adam). Here a step over many variables is
one numba call per group of variables whose operands share dtypes, walking
a table of (address, length) per tensor, in the order given.

The operand table
-----------------
The checks, the flat views and the addresses of the variables and their
slots are computed once, by :class:`Table`, and reused while the step's
arrays are the very same objects (``is``). A restore or an assign that
replaces a variable's array, a new slot, another variable list: the next
step sees another object and builds a new table. The table holds the arrays
it points into, so an address in it can never outlive its buffer, and it is
only written (the gradient row) by a caller holding the variables' locks.
What it trusts is that a numpy array object keeps its buffer, shape, dtype
and writeability for life; numpy allows changing those in place only with
``ndarray.resize(refcheck=False)`` or attribute surgery on the live buffer
(``np.asarray(v).flags.writeable = False``), which this does not guard
against. Gradients are new arrays every step, so each is checked every
step (type, dtype, shape, contiguity: ~0.3 us) and only its address is
written into the table.

Inside the compiled call each address becomes an array again
(``numba.carray`` over a pointer) and goes through the rule's dense driver
from ``cpu_rules``, the very function the per-tensor path calls on the same
memory, so results are bit-identical to it. Half-precision variables go
through the same float32 blocks as ``cpu._dense_half`` (convert, update,
round back), in the compiled loop instead of a Python one.

Order and threads
-----------------
Updates run in the order given; duplicated variables (the same array
twice) are updated in turn, as a loop would. Variables of different dtype
groups are independent, so each group is one call, unless a variable
appears in two groups (then calls follow the given order). As in
``cpu.py``, a variable of at least ``2 * MIN_PER_THREAD`` elements is split
across threads when ``set_threads`` allows; smaller ones stay on the
calling thread, in the one call.

>>> import numpy as np
>>> var, acc = [np.ones(3, np.float32), np.ones(2, np.float32)], [np.zeros(3, np.float32), np.zeros(2, np.float32)]
>>> apply_dense_many("momentum", var, [np.ones(3, np.float32), np.ones(2, np.float32)],
...                  {"momentum": acc}, {"lr": 0.5, "momentum": 0.9})
>>> var[0].tolist(), var[1].tolist(), acc[1].tolist()
([0.5, 0.5, 0.5], [0.5, 0.5], [1.0, 1.0])
"""
from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numba import carray, njit, types
from numba.extending import intrinsic, overload

from devices.errors import InvalidArgumentError

from . import cpu, rules
from ._jit import JIT
from .cpu_rules import (
    KERNELS,
    adagrad_dense,
    adam_dense,
    centered_rmsprop_dense,
    momentum_dense,
    rmsprop_dense,
    sgd_dense,
)
from .half import from_f32, to_f32

_ND = np.ndarray
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
_BLOCK = cpu._BLOCK  # the half-precision block of the per-tensor path: same blocks, same results
_NO_SCRATCH = np.empty((1, 1), np.float32)  # a float group never touches the scratch


# -- the compiled side --------------------------------------------------------------------------

@intrinsic
def _pointer_like(typingctx, address, like):
    """int64 ``address`` as a pointer to ``like``'s element type (``like``: an array, a type tag)."""
    ptr = types.CPointer(like.dtype)
    sig = ptr(types.int64, like)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(ptr))

    return sig, codegen


@njit(**JIT)
def _view(address, n, like):
    """The n elements at ``address`` as a 1-D array of ``like``'s dtype (no copy)."""
    return carray(_pointer_like(address, like), n)


@njit(**JIT)
def address(a):
    """The address of ``a``'s first element, or -1 when ``a`` is not C-contiguous.

    numba reads it from the array struct in ~0.15 us; numpy's ``a.ctypes.data``
    and ``__array_interface__`` build Python objects (~1.2 us), as much as the
    rest of a variable's share of a step.
    """
    if a.flags.c_contiguous:
        return np.int64(a.ctypes.data)
    return np.int64(-1)


def _is_half(a):  # pragma: no cover - typed by the overloads below
    """Whether array ``a`` holds half-precision bits (int16/uint16 views) rather than floats."""


def _in(a, lo, hi, buf, k):  # pragma: no cover
    """a[lo:hi] as float32/float64 the kernel can update: the slice itself, or its
    float32 conversion in scratch row k."""


def _out(x, a, lo):  # pragma: no cover
    """Round block ``x`` back into a[lo:] when ``_in`` converted it (else nothing: updated in place)."""


def _floats(dt) -> bool:
    return dt == types.float32 or dt == types.float64


@overload(_is_half)
def _ol_is_half(a):
    half = not _floats(a.dtype)
    return lambda a: half


@overload(_in)
def _ol_in(a, lo, hi, buf, k):
    if _floats(a.dtype):
        return lambda a, lo, hi, buf, k: a[lo:hi]

    def convert(a, lo, hi, buf, k):
        row = buf[k, :hi - lo]
        to_f32(a, lo, row)
        return row
    return convert


@overload(_out)
def _ol_out(x, a, lo):
    if _floats(a.dtype):
        return lambda x, a, lo: None
    return lambda x, a, lo: from_f32(x, a, lo)


@njit(**JIT)
def _step(var, n):
    """Elements per kernel call: the whole tensor (as cpu.dense_update), or a half block."""
    if _is_half(var):
        return _BLOCK
    return max(n, 1)


# One function per rule (numba caches a function by its source, so no factory): entries
# [lo, hi) of the table, operand k of entry i at ptrs[k, i]; t* are empty arrays whose
# dtypes say how to read each operand; the hyperparameters as the dense driver takes them.

@njit(**JIT)
def sgd_many(ptrs, sizes, lo, hi, tv, tg, lr, buf):
    for i in range(lo, hi):
        n = sizes[i]
        var, g = _view(ptrs[0, i], n, tv), _view(ptrs[1, i], n, tg)
        step = _step(var, n)
        for a in range(0, n, step):
            b = min(n, a + step)
            xv = _in(var, a, b, buf, 0)
            sgd_dense(xv, _in(g, a, b, buf, 1), lr, 0, b - a)
            _out(xv, var, a)


@njit(**JIT)
def momentum_many(ptrs, sizes, lo, hi, tv, tg, t0, lr, mom, nesterov, buf):
    for i in range(lo, hi):
        n = sizes[i]
        var, g, s0 = _view(ptrs[0, i], n, tv), _view(ptrs[1, i], n, tg), _view(ptrs[2, i], n, t0)
        step = _step(var, n)
        for a in range(0, n, step):
            b = min(n, a + step)
            xv, x0 = _in(var, a, b, buf, 0), _in(s0, a, b, buf, 2)
            momentum_dense(xv, _in(g, a, b, buf, 1), x0, lr, mom, nesterov, 0, b - a)
            _out(xv, var, a)
            _out(x0, s0, a)


@njit(**JIT)
def adam_many(ptrs, sizes, lo, hi, tv, tg, t0, t1, lr, b1, b2, eps, buf):
    for i in range(lo, hi):
        n = sizes[i]
        var, g = _view(ptrs[0, i], n, tv), _view(ptrs[1, i], n, tg)
        s0, s1 = _view(ptrs[2, i], n, t0), _view(ptrs[3, i], n, t1)
        step = _step(var, n)
        for a in range(0, n, step):
            b = min(n, a + step)
            xv, x0, x1 = _in(var, a, b, buf, 0), _in(s0, a, b, buf, 2), _in(s1, a, b, buf, 3)
            adam_dense(xv, _in(g, a, b, buf, 1), x0, x1, lr, b1, b2, eps, 0, b - a)
            _out(xv, var, a)
            _out(x0, s0, a)
            _out(x1, s1, a)


@njit(**JIT)
def adagrad_many(ptrs, sizes, lo, hi, tv, tg, t0, lr, buf):
    for i in range(lo, hi):
        n = sizes[i]
        var, g, s0 = _view(ptrs[0, i], n, tv), _view(ptrs[1, i], n, tg), _view(ptrs[2, i], n, t0)
        step = _step(var, n)
        for a in range(0, n, step):
            b = min(n, a + step)
            xv, x0 = _in(var, a, b, buf, 0), _in(s0, a, b, buf, 2)
            adagrad_dense(xv, _in(g, a, b, buf, 1), x0, lr, 0, b - a)
            _out(xv, var, a)
            _out(x0, s0, a)


@njit(**JIT)
def rmsprop_many(ptrs, sizes, lo, hi, tv, tg, t0, t1, lr, rho, momentum, eps, buf):
    for i in range(lo, hi):
        n = sizes[i]
        var, g = _view(ptrs[0, i], n, tv), _view(ptrs[1, i], n, tg)
        s0, s1 = _view(ptrs[2, i], n, t0), _view(ptrs[3, i], n, t1)
        step = _step(var, n)
        for a in range(0, n, step):
            b = min(n, a + step)
            xv, x0, x1 = _in(var, a, b, buf, 0), _in(s0, a, b, buf, 2), _in(s1, a, b, buf, 3)
            rmsprop_dense(xv, _in(g, a, b, buf, 1), x0, x1, lr, rho, momentum, eps, 0, b - a)
            _out(xv, var, a)
            _out(x0, s0, a)
            _out(x1, s1, a)


@njit(**JIT)
def centered_rmsprop_many(ptrs, sizes, lo, hi, tv, tg, t0, t1, t2, lr, rho, momentum, eps, buf):
    for i in range(lo, hi):
        n = sizes[i]
        var, g = _view(ptrs[0, i], n, tv), _view(ptrs[1, i], n, tg)
        s0, s1, s2 = _view(ptrs[2, i], n, t0), _view(ptrs[3, i], n, t1), _view(ptrs[4, i], n, t2)
        step = _step(var, n)
        for a in range(0, n, step):
            b = min(n, a + step)
            xv = _in(var, a, b, buf, 0)
            x0, x1, x2 = _in(s0, a, b, buf, 2), _in(s1, a, b, buf, 3), _in(s2, a, b, buf, 4)
            centered_rmsprop_dense(xv, _in(g, a, b, buf, 1), x0, x1, x2, lr, rho, momentum, eps, 0, b - a)
            _out(xv, var, a)
            _out(x0, s0, a)
            _out(x1, s1, a)
            _out(x2, s2, a)


MANY = {"sgd": sgd_many, "momentum": momentum_many, "adam": adam_many, "adagrad": adagrad_many,
        "rmsprop": rmsprop_many, "centered_rmsprop": centered_rmsprop_many}

# -- the Python side ----------------------------------------------------------------------------

_TAGS: dict[np.dtype, np.ndarray] = {}  # view dtype -> an empty array of it: the operand's type tag


def _tag(dt: np.dtype) -> np.ndarray:
    tag = _TAGS.get(dt)
    if tag is None:
        tag = _TAGS[dt] = np.empty(0, dt)
    return tag


class _Group:
    """The entries of one dtype combination: their addresses, sizes and compiled function."""

    __slots__ = ("index", "ptrs", "sizes", "tags", "half")

    def __init__(self, index: list[int], ptrs: np.ndarray, sizes: np.ndarray, tags: tuple, half: bool):
        self.index = np.asarray(index, np.int64)  # entry -> position in the caller's lists
        self.ptrs, self.sizes, self.tags, self.half = ptrs, sizes, tags, half


class Table:
    """The checked operands of one step's variables, reused while they are the same arrays.

    Built by :func:`apply_dense_many`; see the module docstring for what it trusts.
    """

    __slots__ = ("rule", "kernel", "keys", "values", "slots", "shapes", "vdtypes", "gdtypes", "direct",
                 "groups", "plan", "big", "n")

    def __init__(self, rule: str, kernel: str, keys: tuple[str, ...], values: Sequence, grads: Sequence,
                 slots: list[list]) -> None:
        self.rule, self.kernel, self.keys = rule, kernel, keys
        n = self.n = len(values)
        self.values, self.slots = list(values), [list(s) for s in slots]
        self.shapes: list[tuple] = []
        self.vdtypes: list[np.dtype] = []
        self.gdtypes: list[np.dtype] = []
        by_combo: dict[tuple, list[int]] = {}
        rows: list[list[int]] = []
        sizes: list[int] = []
        for i in range(n):
            var = values[i]
            if not isinstance(var, _ND):
                cpu._slow_flat(var, (), _F32, "var", rule, True)  # raises, naming what it got
            shape, dtype = var.shape, var.dtype
            flats = [cpu._flat(var, shape, dtype, "var", rule, True),
                     cpu._flat(grads[i], shape, dtype, "grad", rule, False)]
            flats += [cpu._flat(s[i], shape, dtype, cpu._SLOT_LABEL[k], rule, True) for k, s in zip(keys, slots)]
            self.shapes.append(shape)
            self.vdtypes.append(dtype)
            self.gdtypes.append(grads[i].dtype)  # a copied non-contiguous grad keeps its dtype
            by_combo.setdefault(tuple(f.dtype for f in flats), []).append(i)
            rows.append([int(address(f)) for f in flats])
            sizes.append(flats[0].size)
        # Gradients of float32/float64 are read as they are; half ones through their integer view.
        self.direct = [dt is _F32 or dt is _F64 for dt in self.gdtypes]
        table = np.array(rows, np.int64).reshape(n, 2 + len(keys)).T
        all_sizes = np.array(sizes, np.int64)
        self.groups = []
        group_of = np.empty(n, np.int64)
        for g, (combo, index) in enumerate(by_combo.items()):
            idx = np.asarray(index, np.int64)
            group_of[idx] = g
            self.groups.append(_Group(index, np.ascontiguousarray(table[:, idx]), all_sizes[idx],
                                      tuple(_tag(dt) for dt in combo), combo[0] in (np.int16, np.uint16)))
        # Threads (when set) split only big variables, one at a time, in their place in the order.
        self.big = {i for i in range(n) if sizes[i] >= 2 * cpu.MIN_PER_THREAD}
        self.plan = self._plan(group_of, [id(v) for v in values])

    def _plan(self, group_of: np.ndarray, ids: list[int]) -> list[tuple[int, int, int]]:
        """(group, lo, hi) calls, over group-local entries, in an order equivalent to the given one.

        Groups touch disjoint variables unless a variable appears twice: then its
        updates must keep their order, so calls follow the given order exactly.
        """
        order = list(range(self.n))
        if len(set(ids)) == len(ids):
            order.sort(key=lambda i: group_of[i])  # stable: each group in the given order
        local = np.empty(self.n, np.int64)
        for g in self.groups:
            local[g.index] = np.arange(g.index.size)
        plan: list[tuple[int, int, int]] = []
        for i in order:
            g, k = int(group_of[i]), int(local[i])
            if plan and plan[-1][0] == g and plan[-1][2] == k:
                plan[-1] = (g, plan[-1][1], k + 1)
            else:
                plan.append((g, k, k + 1))
        return plan

    def holds(self, values: Sequence, slots: list[Sequence]) -> bool:
        """Whether ``values`` and ``slots`` are this table's arrays, the very objects."""
        is_ = operator.is_
        if len(values) != self.n or not all(map(is_, values, self.values)):
            return False
        return all(len(new) == self.n and all(map(is_, new, old)) for new, old in zip(slots, self.slots))

    def grad_addresses(self, grads: Sequence) -> tuple[list[int], list] | None:
        """Each gradient's address (checked as the per-tensor path checks it), and the copies
        of non-contiguous ones to keep alive; None when a gradient's dtype is not the one the
        table was built for (a new table is needed)."""
        if len(grads) != self.n:
            raise InvalidArgumentError(f"{self.rule}: {len(grads)} gradients for {self.n} variables")
        nd = _ND
        # The common case in one comprehension: -2 marks a gradient to look at closely.
        out = [address(g) if type(g) is nd and g.dtype is dt and g.shape == sh and direct else -2
               for g, dt, sh, direct in zip(grads, self.gdtypes, self.shapes, self.direct)]
        keep: list = []
        if min(out, default=0) < 0:
            for i, p in enumerate(out):
                if p >= 0:
                    continue
                g = grads[i]
                if not isinstance(g, nd) or g.dtype != self.gdtypes[i]:
                    return None  # another grad dtype is another group: the table is rebuilt (and checks)
                flat = cpu._flat(g, self.shapes[i], self.vdtypes[i], "grad", self.rule, False)
                keep.append(flat)  # a contiguous copy of a strided grad lives until the step ends
                out[i] = int(address(flat))
        return out, keep

    def run(self, grads: Sequence, grad_ptrs: list[int], hargs: tuple, hyper: Mapping[str, Any]) -> None:
        """The step: the grads' addresses into the table, then one call per planned run."""
        groups = self.groups
        if len(groups) == 1:
            groups[0].ptrs[1] = grad_ptrs
        else:
            gp = np.array(grad_ptrs, np.int64)
            for g in groups:
                g.ptrs[1] = gp[g.index]
        fn = MANY[self.kernel]
        split = cpu._threads > 1 and self.big
        for gi, lo, hi in self.plan:
            g = groups[gi]
            buf = cpu._scratch(g.ptrs.shape[0], _BLOCK) if g.half else _NO_SCRATCH
            if not split:
                fn(g.ptrs, g.sizes, lo, hi, *g.tags, *hargs, buf)
                continue
            start = lo
            for k in range(lo, hi):  # big entries through the threaded per-tensor path, in place
                i = int(g.index[k])
                if i in self.big:
                    if start < k:
                        fn(g.ptrs, g.sizes, start, k, *g.tags, *hargs, buf)
                    self._run_big(i, grads[i], hyper)
                    start = k + 1
            if start < hi:
                fn(g.ptrs, g.sizes, start, hi, *g.tags, *hargs, buf)

    def _run_big(self, i: int, grad: np.ndarray, hyper: Mapping[str, Any]) -> None:
        # The per-tensor path, which splits one variable across threads; its checks cost
        # microseconds against the milliseconds of a variable this big.
        cpu.dense_update(self.rule, self.values[i], grad, dict(zip(self.keys, (s[i] for s in self.slots))), hyper)


def slot_lists(rule: str, keys: tuple[str, ...], slots: Mapping[str, Sequence], n: int) -> list[list]:
    """The slot lists in kernel order, each of n arrays; InvalidArgumentError otherwise."""
    lists = rules.check_slots(rule, keys, slots)
    for k, s in zip(keys, lists):
        if len(s) != n:
            raise InvalidArgumentError(f"{rule}: slot {k} has {len(s)} arrays for {n} variables")
    return lists


def apply_dense_many(rule: str, values: Sequence[np.ndarray], grads: Sequence[np.ndarray],
                     slots: Mapping[str, Sequence[np.ndarray]], hyper: Mapping[str, Any],
                     cache: dict | None = None) -> None:
    """Dense steps of ``rule`` for every ``values[i]`` with ``grads[i]`` and ``slots[k][i]``.

    The same result, bit for bit, as ``cpu.dense_update`` on each in turn, and the
    same errors, but every argument is checked before anything is written.
    ``cache``: a dict the caller keeps between steps (one per optimizer, say), where
    the operand table is kept while the arrays stay the same objects.
    """
    kernel, keys, h, flag = rules.parse(rule, hyper)
    n = len(values)
    lists = slot_lists(rule, keys, slots, n) if keys else []
    if len(grads) != n:
        raise InvalidArgumentError(f"{rule}: {len(grads)} gradients for {n} variables")
    if n == 0:
        return
    table = cache.get(kernel) if cache is not None else None
    found = None
    if table is not None and table.holds(values, lists):
        found = table.grad_addresses(grads)
    if found is None:
        table = Table(rule, kernel, keys, values, grads, lists)
        found = table.grad_addresses(grads)
        if found is None:  # pragma: no cover - a table built for these grads accepts them
            raise AssertionError("operand table rejects the gradients it was built for")
        if cache is not None:
            cache[kernel] = table
    grad_ptrs, _keep = found  # _keep: copies of non-contiguous grads, alive until the step is done
    hargs = (*h, flag) if KERNELS[kernel][2] else h
    table.run(grads, grad_ptrs, hargs, hyper)
