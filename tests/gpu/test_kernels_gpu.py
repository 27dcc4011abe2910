"""The cupy optimizer kernels on a real card, against the float64 reference and the CPU kernels.

Skipped without cupy or a CUDA device (see conftest.py). The tolerances are
the CPU tests' (tests/test_kernels.py): normwise error per array, 1e-6 for
float32, half an ulp (with 2x margin) for float16/bfloat16. nvrtc contracts
a*b+c into FMAs, so GPU and CPU results agree to those tolerances, not
bitwise.
"""
from __future__ import annotations

import numpy as np
import pytest

cp = pytest.importorskip("cupy")
if not cp.cuda.is_available():  # pragma: no cover - conftest skips these anyway
    pytest.skip("cupy sees no CUDA device", allow_module_level=True)

import devices  # noqa: E402
from devices.dtypes import bfloat16  # noqa: E402
from devices.errors import InvalidArgumentError  # noqa: E402
from varstore.train import kernels  # noqa: E402
from varstore.train.kernels import reference  # noqa: E402

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
RTOL = {F32: 1e-6, F64: 1e-13, F16: 2.0 ** -10, bfloat16: 2.0 ** -7}
VARIANTS = [("sgd", {}), ("momentum", {}), ("momentum", {"use_nesterov": True}), ("adam", {}),
            ("adagrad", {}), ("rmsprop", {}), ("rmsprop", {"centered": True})]
VARIANT_IDS = ["sgd", "momentum", "nesterov", "adam", "adagrad", "rmsprop", "centered_rmsprop"]
HYPER = {"sgd": {"lr": 0.1}, "momentum": {"lr": 0.1, "momentum": 0.9},
         "adam": {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
         "adagrad": {"lr": 0.1}, "rmsprop": {"lr": 0.01, "decay": 0.9, "momentum": 0.5, "epsilon": 1e-10}}


@pytest.fixture(scope="module")
def gpu():
    d = devices.get_device("/gpu:0")
    assert d.kind == "gpu"
    return d


def _bf16_supported() -> bool:
    try:
        return cp.asarray(np.zeros(2, bfloat16)).dtype == bfloat16
    except Exception:
        return False


DTYPES = [F32, F64, F16, pytest.param(bfloat16, marks=pytest.mark.skipif(
    not _bf16_supported(), reason="this cupy cannot hold ml_dtypes.bfloat16 arrays (cupy < 14)"))]


def host_slots(rule, flags, shape, dtype, rng, slot_dtype=None):
    keys = kernels.slot_names(rule, centered=flags.get("centered", False))
    out = {k: rng.normal(size=shape) for k in keys}
    for k in ("accumulator", "v", "rms"):
        if k in out:
            out[k] = np.abs(out[k]) + 0.1
    if "mg" in out:
        out["rms"] = out["rms"] + out["mg"] ** 2
    return {k: np.array(v, dtype=slot_dtype or dtype) for k, v in out.items()}


def normwise(out, ref) -> float:
    out, ref = np.asarray(out).astype(np.float64), np.asarray(ref, dtype=np.float64)
    return 0.0 if ref.size == 0 else float(np.max(np.abs(out - ref)) / max(np.max(np.abs(ref)), 1e-30))


def to_gpu(a: np.ndarray):
    return cp.asarray(a)


def to_host(a) -> np.ndarray:
    return cp.asnumpy(a)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("rule,flags", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("shape", [(), (7,), (1000, 33), (1 << 20,)], ids=["scalar", "7", "1000x33", "1M"])
def test_dense_matches_reference_and_cpu(gpu, rule, flags, dtype, shape):
    rng = np.random.default_rng(1)
    h = {**HYPER[rule], **flags}
    var = np.array(rng.normal(size=shape), dtype=dtype)
    grad = np.array(rng.normal(size=shape), dtype=dtype)
    slots = host_slots(rule, flags, shape, dtype, rng)
    ref_var, ref_slots = reference.apply_dense(rule, var, grad, slots, **h)
    g_var, g_slots = to_gpu(var), {k: to_gpu(v) for k, v in slots.items()}
    kernels.apply_dense(rule, gpu, g_var, to_gpu(grad), g_slots, **h)
    assert g_var.dtype == dtype
    assert normwise(to_host(g_var), ref_var) <= RTOL[dtype]
    for k in slots:
        assert normwise(to_host(g_slots[k]), ref_slots[k]) <= RTOL[dtype], k
    kernels.apply_dense(rule, devices.get_device("/cpu:0"), var, grad, slots, **h)
    assert normwise(to_host(g_var), var.astype(np.float64)) <= 2 * RTOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("rule,flags", VARIANTS, ids=VARIANT_IDS)
def test_sparse_with_duplicates_matches_reference(gpu, rule, flags, dtype):
    rng = np.random.default_rng(2)
    h = {**HYPER[rule], **flags}
    shape = (300, 17)
    var = rng.normal(size=shape).astype(dtype)
    slots = host_slots(rule, flags, shape, dtype, rng)
    idx = rng.integers(0, 300, 1000)  # many duplicates, many untouched rows
    values = rng.normal(size=(1000, 17)).astype(dtype)
    ref_var, ref_slots = reference.apply_sparse(rule, var, idx, values, slots, **h)
    g_var, g_slots = to_gpu(var), {k: to_gpu(v) for k, v in slots.items()}
    kernels.apply_sparse(rule, gpu, g_var, to_gpu(idx), to_gpu(values), g_slots, **h)
    assert normwise(to_host(g_var), ref_var) <= RTOL[dtype]
    for k in slots:
        assert normwise(to_host(g_slots[k]), ref_slots[k]) <= RTOL[dtype], k
    untouched = np.setdiff1d(np.arange(300), idx)
    assert np.array_equal(to_host(g_var)[untouched].view(np.uint8), var[untouched].view(np.uint8))


def test_sparse_is_deterministic(gpu):
    rng = np.random.default_rng(3)
    idx = to_gpu(rng.integers(0, 50, 20_000))
    values = to_gpu(rng.normal(size=(20_000, 64)).astype(np.float32))
    runs = []
    for _ in range(3):
        var = cp.zeros((50, 64), cp.float32)
        slots = {"m": cp.zeros_like(var), "v": cp.zeros_like(var)}
        kernels.apply_sparse("adam", gpu, var, idx, values, slots, **HYPER["adam"])
        runs.append(to_host(var))
    assert all(np.array_equal(runs[0].view(np.uint32), r.view(np.uint32)) for r in runs[1:])


@pytest.mark.parametrize("dtype", [F16, pytest.param(bfloat16, marks=DTYPES[-1].marks)], ids=["float16", "bfloat16"])
def test_half_var_with_float32_grad_and_slots(gpu, dtype):
    rng = np.random.default_rng(4)
    var = rng.normal(size=(4096,)).astype(dtype)
    grad = rng.normal(size=(4096,)).astype(np.float32)
    slots = host_slots("adam", {}, var.shape, dtype, rng, slot_dtype=np.float32)
    ref_var, ref_slots = reference.apply_dense("adam", var, grad, slots, **HYPER["adam"])
    g_var, g_slots = to_gpu(var), {k: to_gpu(v) for k, v in slots.items()}
    kernels.apply_dense("adam", gpu, g_var, to_gpu(grad), g_slots, **HYPER["adam"])
    assert normwise(to_host(g_var), ref_var) <= RTOL[dtype]
    assert normwise(to_host(g_slots["v"]), ref_slots["v"]) <= 1e-6


def test_bad_input_raises_before_writing(gpu):
    var = cp.ones((4, 3), cp.float32)
    slots = {"m": cp.zeros_like(var), "v": cp.zeros_like(var)}
    with pytest.raises(InvalidArgumentError, match=r"indices\[1\] = 9 is not in \[0, 4\)"):
        kernels.apply_sparse("adam", gpu, var, cp.asarray([0, 9]), cp.ones((2, 3), cp.float32), slots,
                             **HYPER["adam"])
    with pytest.raises(InvalidArgumentError, match=r"grad has shape \(3,\)"):
        kernels.apply_dense("adam", gpu, var, cp.ones(3, cp.float32), slots, **HYPER["adam"])
    with pytest.raises(InvalidArgumentError, match="must be a cupy array"):
        kernels.apply_dense("adam", gpu, var, np.ones((4, 3), np.float32), slots, **HYPER["adam"])
    assert bool((var == 1).all()) and bool((slots["m"] == 0).all())
