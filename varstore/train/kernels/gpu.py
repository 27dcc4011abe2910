"""Fused optimizer updates on CUDA GPUs: one multi-tensor launch per (rule, dtype) group.

Imported only when a GPU variable is updated, so CPU-only installs never import
cupy. The kernels are ``RawModule`` sources the project owns in full
(:mod:`.cuda_src`, exposed as :func:`cuda_sources`): the text compiled on a card
is the text CI compiles with the real NVRTC (``tests/test_nvrtc.py``) and runs
as C++ against the float64 reference (``tests/test_kernels.py``).

Dense updates (:func:`apply_group`, and :func:`apply_dense` for one tensor) work
like apex's ``multi_tensor_apply``: every variable of a group is cut into chunks
of ``CHUNK`` elements, a table of pointers and chunks lives on the device, and one
launch updates them all. The table is cached while the variables and slots are
unchanged (same pointers); only the gradients' pointers are uploaded when they
change, from pinned memory, asynchronously. Hyperparameters are launch arguments
and Adam's beta powers are read by the kernel from device memory: a step makes
no host sync.

Precision: float32 and float64 compute in their own type; float16 and bfloat16
load into float32 and round back once (nearest even), as the CPU kernels do.

Sparse updates (:func:`apply_sparse`) are deterministic: indices are sorted
stably, each output element sums its duplicates in the order given, in one
thread, with no atomics, then applies the rule. One device-to-host read per
update (the out-of-range check and the segment count together), before anything
is written.

Every allocation, launch and copy happens with the variables' own device
current (``with cp.cuda.Device(id)``), on the current stream: a ``/gpu:1``
variable is updated on GPU 1 whatever device the caller's thread has current.

>>> # On a machine with a card (see tests/gpu/test_kernels_gpu.py):
>>> # import cupy as cp
>>> # var, g = cp.ones(4, cp.float32), cp.ones(4, cp.float32)
>>> # apply_dense("sgd", var, g, {}, lr=0.5)   # var is now 0.5 everywhere
"""
from __future__ import annotations

import collections
import functools
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from devices.backends.arrays import cupy_module
from devices.dtypes import bfloat16
from devices.errors import InvalidArgumentError

from . import rules
from .cuda_src import CHUNK, N_SLOTS, THREADS, chunk_table, combo_tag, cuda_sources, source

__all__ = ["apply_dense", "apply_sparse", "apply_group", "cuda_sources", "compile_all", "CHUNK"]

_TAGS = {np.dtype(np.float16): "f16", bfloat16: "bf16", np.dtype(np.float32): "f32",
         np.dtype(np.float64): "f64"}
_NULL = np.uint64(0)  # a null pointer argument (slots a rule does not have, no beta powers)
_MAX_PLANS = 32       # cached tables (one per group of variables); old ones are dropped


def _cupy():
    cp = cupy_module()
    if cp is None:
        raise InvalidArgumentError("GPU optimizer kernels need cupy (pip install 'varstore[gpu]')")
    return cp


@functools.cache
def _module(kernel: str, device_id: int):
    """The compiled RawModule of ``kernel`` on one device (cupy caches the binary on disk)."""
    cp = _cupy()
    with cp.cuda.Device(device_id):
        return cp.RawModule(code=source(kernel), options=("--std=c++17",))


@functools.cache
def _function(kernel: str, kind: str, tag: str, device_id: int):
    cp = _cupy()
    with cp.cuda.Device(device_id):
        return _module(kernel, device_id).get_function(f"varstore_{kernel}_{kind}_{tag}")


def compile_all(device_id: int = 0) -> int:
    """Compile and load every kernel of every rule and dtype on ``device_id`` (the card
    check's pre-flight: a compile error shows in seconds, before any test). Returns the
    number of kernels loaded."""
    from .cuda_src import kernel_names
    cp = _cupy()
    n = 0
    with cp.cuda.Device(device_id):
        for kernel in N_SLOTS:
            for name in kernel_names(kernel):
                _module(kernel, device_id).get_function(name)
                n += 1
    return n


# -- checks ---------------------------------------------------------------------------------------
def _check(cp, a: Any, shape: tuple, dtype: np.dtype, what: str, rule: str, out: bool, device_id: int):
    """``a`` checked against var; a non-contiguous input becomes a contiguous copy (made on
    ``device_id``: the caller has it current)."""
    if not isinstance(a, cp.ndarray):
        raise InvalidArgumentError(f"{rule}: {what} must be a cupy array on the GPU, got {type(a).__name__}")
    rules.check_operand(rule, what, shape, dtype, tuple(a.shape), a.dtype)
    if a.device.id != device_id:
        raise InvalidArgumentError(f"{rule}: {what} is on GPU {a.device.id}, var on GPU {device_id}")
    if not a.flags.c_contiguous:
        if out:
            raise InvalidArgumentError(f"{rule}: {what} must be C-contiguous (it is updated in place)")
        a = cp.ascontiguousarray(a)
    return a


def _slots_of(cp, rule: str, keys: tuple, var: Any, slots: Mapping[str, Any], device_id: int) -> list:
    arrays = rules.check_slots(rule, keys, slots)
    s = [_check(cp, a, tuple(var.shape), var.dtype, f"slot {k}", rule, True, device_id)
         for k, a in zip(keys, arrays)]
    if len({a.dtype for a in s}) > 1:
        raise InvalidArgumentError(f"{rule}: slots must share one dtype, got {[str(a.dtype) for a in s]}")
    return s


def _var_of(cp, rule: str, var: Any):
    if not isinstance(var, cp.ndarray):
        raise InvalidArgumentError(f"{rule}: var must be a cupy array on the GPU, got {type(var).__name__}")
    rules.check_operand(rule, "var", tuple(var.shape), var.dtype, tuple(var.shape), var.dtype)
    if not var.flags.c_contiguous:
        raise InvalidArgumentError(f"{rule}: var must be C-contiguous (it is updated in place)")
    return var


def _powers(cp, powers: Sequence[Any] | None, device_id: int, rule: str):
    """(p1, p2, pkind) launch arguments for Adam's beta powers on the device (or none)."""
    if powers is None:
        return _NULL, _NULL, np.int32(0)
    p1, p2 = powers
    for p in (p1, p2):
        if not isinstance(p, cp.ndarray) or p.size != 1 or p.dtype not in (np.float32, np.float64):
            raise InvalidArgumentError(f"{rule}: beta powers must be one-element float32/float64 cupy arrays")
        if p.device.id != device_id:
            raise InvalidArgumentError(f"{rule}: beta powers are on GPU {p.device.id}, the variables on GPU "
                                       f"{device_id}")
    if p1.dtype != p2.dtype:
        raise InvalidArgumentError(f"{rule}: beta powers differ in dtype ({p1.dtype}, {p2.dtype})")
    return p1, p2, np.int32(1 if p1.dtype == np.float32 else 2)


def _hyper_args(kernel: str, h: tuple, flag: bool, rule: str, powers: Any) -> tuple:
    if powers is not None and kernel != "adam":
        raise InvalidArgumentError(f"{rule}: beta powers are Adam's; {rule} takes none")
    hs = (tuple(h) + (0.0, 0.0, 0.0, 0.0))[:4]
    return tuple(np.float64(x) for x in hs) + (np.int32(bool(flag)),)


# -- the cached multi-tensor tables ---------------------------------------------------------------
class _Plan:
    """One group's device tables: rows (n, var, s0, s1, s2) and the chunk list, fixed; the
    gradient pointers, uploaded from two alternating pinned buffers when they change."""

    def __init__(self, cp, rows: list[tuple[int, ...]], sizes: list[int]):
        self.cp = cp
        self.tensors = cp.asarray(np.array(rows, dtype=np.int64).reshape(-1))
        chunks = chunk_table(sizes)
        self.n_chunks = len(chunks) // 2
        self.chunks = cp.asarray(np.array(chunks or [0, 0], dtype=np.int64))
        n = len(rows)
        self.grads = cp.empty(n, dtype=np.int64)
        self._pinned = [np.frombuffer(cp.cuda.alloc_pinned_memory(8 * n), np.int64, n) for _ in range(2)]
        self._uploaded: list[Any] = [None, None]  # the event after each buffer's last copy
        self._turn = 0
        self.last_grads: tuple = ()
        self.done: Any = None       # event after the last launch that read self.grads
        self.stream_ptr: int | None = None

    def upload_grads(self, ptrs: tuple, stream: Any) -> None:
        cp = self.cp
        if self.done is not None and self.stream_ptr != stream.ptr:
            # Another stream than the last launch's: the copy below must not overwrite the table
            # while that launch may still read it.
            stream.wait_event(self.done)
        if ptrs == self.last_grads:
            return
        k = self._turn
        self._turn ^= 1
        if self._uploaded[k] is not None:
            self._uploaded[k].synchronize()  # that buffer's previous copy must have left it
        buf = self._pinned[k]
        buf[:] = ptrs
        cp.cuda.runtime.memcpyAsync(self.grads.data.ptr, buf.ctypes.data, buf.nbytes,
                                    cp.cuda.runtime.memcpyHostToDevice, stream.ptr)
        ev = self._uploaded[k] = cp.cuda.Event(disable_timing=True)
        ev.record(stream)
        self.last_grads = ptrs

    def launched(self, stream: Any) -> None:
        if self.done is None:
            self.done = self.cp.cuda.Event(disable_timing=True)
        self.done.record(stream)
        self.stream_ptr = stream.ptr


_plans: collections.OrderedDict = collections.OrderedDict()
_plans_lock = threading.Lock()


def _plan(cp, key: tuple, rows: list, sizes: list) -> _Plan:
    with _plans_lock:
        plan = _plans.get(key)
        if plan is not None:
            _plans.move_to_end(key)
            return plan
    plan = _Plan(cp, rows, sizes)
    with _plans_lock:
        _plans[key] = plan
        while len(_plans) > _MAX_PLANS:
            _plans.popitem(last=False)
    return plan


def clear_cache() -> None:
    """Drop every cached table (they hold device and pinned memory)."""
    with _plans_lock:
        _plans.clear()


# -- the updates ----------------------------------------------------------------------------------
def apply_group(rule: str, items: Sequence[tuple[Any, Any, Mapping[str, Any]]],
                powers: Sequence[Any] | None = None, **hyper: Any) -> None:
    """Update every ``(var, grad, slots)`` of ``items`` (cupy arrays, one device) in place:
    one launch per dtype combination, whatever the number of variables.

    ``powers``: Adam's ``(beta1_power, beta2_power)`` as one-element device arrays; the
    kernel then folds ``lr * sqrt(1 - beta2_power) / (1 - beta1_power)`` itself (no host
    read). Same contract otherwise as :func:`varstore.train.kernels.cpu.apply_dense`.
    Nothing is written when any item is invalid.
    """
    cp = _cupy()
    kernel, keys, h, flag = rules.parse(rule, hyper)
    if not items:
        return
    first = items[0][0]
    if not isinstance(first, cp.ndarray):
        raise InvalidArgumentError(f"{rule}: var must be a cupy array on the GPU, got {type(first).__name__}")
    dev = first.device.id
    args = _hyper_args(kernel, h, flag, rule, powers)
    groups: dict[str, list] = {}
    with cp.cuda.Device(dev):
        p1, p2, pkind = _powers(cp, powers, dev, rule)
        for var, grad, slots in items:
            v = _var_of(cp, rule, var)
            if v.device.id != dev:
                raise InvalidArgumentError(f"{rule}: one group spans GPU {dev} and GPU {v.device.id}")
            g = _check(cp, grad, tuple(v.shape), v.dtype, "grad", rule, False, dev)
            s = _slots_of(cp, rule, keys, v, slots, dev)
            if v.size == 0:
                continue
            tag = combo_tag(_TAGS[v.dtype], _TAGS[g.dtype], _TAGS[s[0].dtype] if s else _TAGS[v.dtype])
            groups.setdefault(tag, []).append((v, g, s))
        stream = cp.cuda.get_current_stream()
        for tag, members in groups.items():
            rows, sizes, ptrs = [], [], []
            for v, g, s in members:
                sp = [a.data.ptr for a in s] + [0] * (3 - len(s))
                rows.append((v.size, v.data.ptr, *sp))
                sizes.append(v.size)
                ptrs.append(g.data.ptr)
            plan = _plan(cp, (kernel, tag, dev, tuple(rows)), rows, sizes)
            plan.upload_grads(tuple(ptrs), stream)
            fn = _function(kernel, "mt", tag, dev)
            fn((plan.n_chunks,), (THREADS,),
               (plan.tensors, plan.grads, plan.chunks, np.int64(CHUNK), *args, p1, p2, pkind))
            plan.launched(stream)


def apply_dense(rule: str, var: Any, grad: Any, slots: Mapping[str, Any], powers: Sequence[Any] | None = None,
                **hyper: Any) -> None:
    """Update ``var`` and ``slots`` (cupy arrays) in place: one fused kernel launch.

    Same contract as :func:`varstore.train.kernels.cpu.apply_dense`.
    """
    apply_group(rule, [(var, grad, slots)], powers=powers, **hyper)


def apply_sparse(rule: str, var: Any, indices: Any, values: Any, slots: Mapping[str, Any],
                 powers: Sequence[Any] | None = None, **hyper: Any) -> None:
    """Update rows ``indices`` of ``var`` and ``slots`` (duplicates summed first) in one launch.

    Same contract as :func:`varstore.train.kernels.cpu.apply_sparse`.
    """
    cp = _cupy()
    kernel, keys, h, flag = rules.parse(rule, hyper)
    v = _var_of(cp, rule, var)
    if v.ndim == 0:
        raise InvalidArgumentError(f"{rule}: a sparse update needs a var with at least one dimension")
    dev = v.device.id
    args = _hyper_args(kernel, h, flag, rule, powers)
    with cp.cuda.Device(dev):
        p1, p2, pkind = _powers(cp, powers, dev, rule)
        s = _slots_of(cp, rule, keys, v, slots, dev)
        if isinstance(indices, cp.ndarray) and indices.device.id != dev:
            raise InvalidArgumentError(f"{rule}: indices are on GPU {indices.device.id}, var on GPU {dev}")
        idx = cp.asarray(indices)
        if idx.dtype.kind not in "iu":
            raise InvalidArgumentError(f"{rule}: indices must be integers, got dtype {idx.dtype}")
        vals = _check(cp, values, tuple(idx.shape) + tuple(v.shape[1:]), v.dtype, "values", rule, False, dev)
        first_dim = v.shape[0]
        d = v.size // first_dim if first_dim else 0
        if idx.size == 0 or d == 0:
            return
        n = idx.size
        idx = idx.reshape(-1).astype(cp.int64, copy=False)
        order = cp.argsort(idx)  # stable: duplicates keep their order, sums repeat exactly
        sidx = idx[order]
        first = cp.empty(n, dtype=cp.bool_)
        first[0] = True
        cp.not_equal(sidx[1:], sidx[:-1], out=first[1:])
        seg = cp.cumsum(first, dtype=cp.int64) - 1  # segment of each sorted position
        bad = (sidx[0] < 0) | (sidx[-1] >= first_dim)  # sorted: the extremes decide
        # The one sync: the error must name the index, and the segment count sizes the tables.
        bad_h, n_seg = (int(x) for x in cp.stack([bad.astype(cp.int64), seg[-1] + 1]).get())
        if bad_h:
            out_of_range = (idx < 0) | (idx >= first_dim)
            k = int(cp.argmax(out_of_range))
            raise InvalidArgumentError(f"{rule}: indices[{k}] = {int(idx[k])} is not in [0, {first_dim})")
        # starts[s] = first sorted position of segment s (scattered without a boolean mask,
        # which would sync again); positions that start no segment write to the spare slot.
        starts = cp.empty(n_seg + 1, dtype=cp.int64)
        target = cp.where(first, seg, n_seg)
        starts[target] = cp.arange(n, dtype=cp.int64)
        starts[n_seg] = n
        rows = sidx[starts[:-1]]
        sp = list(s) + [_NULL] * (3 - len(s))
        tag = combo_tag(_TAGS[v.dtype], _TAGS[vals.dtype], _TAGS[s[0].dtype] if s else _TAGS[v.dtype])
        total = n_seg * d
        blocks = max(1, min(-(-total // THREADS), 65535))
        _function(kernel, "sparse", tag, dev)(
            (blocks,), (THREADS,),
            (v, *sp, vals, order.astype(cp.int64, copy=False), starts, rows, np.int64(d), np.int64(total),
             *args, p1, p2, pkind))


def apply_variables(rule: str, items: Sequence[tuple[Any, Any]], slot_names: Sequence[str], get_slot: Any,
                    hyper: Mapping[str, Any], powers: Sequence[Any] | None = None) -> None:
    """The optimizer's GPU step for one device: ``items`` are ``(gradient, Variable)`` with the
    gradient already on the device (an array, or IndexedSlices with ``indices``/``values``).

    Dense updates go in one :func:`apply_group` call (one launch per dtype combination);
    the variables' locks are taken together, in name order (so two optimizers cannot
    deadlock), only while the launch is queued. Sparse updates run one by one.
    ``powers``: Adam's beta power Variables, read on the device by the kernel.
    """
    import contextlib
    dense = [(g, v) for g, v in items if not hasattr(g, "indices")]
    sparse = [(g, v) for g, v in items if hasattr(g, "indices")]
    with contextlib.ExitStack() as stack:
        locked = sorted({id(v): v for _, v in dense}.values(), key=lambda v: v._name)
        if powers is not None:
            locked += [p for p in powers if all(p is not v for v in locked)]
        for v in locked:
            stack.enter_context(v.storage.lock)
        p_arrays = None if powers is None else [p.storage.require() for p in powers]
        group = [(v.storage.require(), g, {s: get_slot(v, s).storage.require() for s in slot_names})
                 for g, v in dense]
        if group:
            apply_group(rule, group, powers=p_arrays, **hyper)
    for g, v in sparse:
        with v.storage.lock:
            p_arrays = None if powers is None else [p.storage.require() for p in powers]
            apply_sparse(rule, v.storage.require(), g.indices, g.values,
                         {s: get_slot(v, s).storage.require() for s in slot_names}, powers=p_arrays, **hyper)
