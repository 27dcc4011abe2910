"""The real CUDA compiler, no card: every source of ``kernels.gpu.cuda_sources()`` through NVRTC.

NVRTC (pip ``nvidia-cuda-nvrtc``, through ``cuda-bindings``) needs no driver and no GPU.
Each source is compiled with the options cupy's ``RawModule`` uses (``-ftz=true``, cupy's
include directories) against the headers of the cupy wheels users install
(``scripts/cupy-headers`` extracts them: cupy-cuda12x 13.x and cupy-cuda13x 14.x), for
sm_80 and sm_90: PTX for every header set, and full cubins (ptxas: registers, resources)
for the newest. A source that fails here would fail on the first card (issue 15, bug 1).

Where NVRTC or the headers are missing these tests skip, unless ``VARSTORE_REQUIRE_NVRTC=1``
(set by ``.ci/run``), which makes a missing compiler a failure rather than a silent skip.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from varstore.train.kernels import cuda_src, gpu

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = os.environ.get("VARSTORE_REQUIRE_NVRTC") == "1"
ARCHS = ("80", "90")


def _unavailable(why: str):
    if REQUIRED:
        pytest.fail(f"VARSTORE_REQUIRE_NVRTC=1 but {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def nvrtc():
    try:
        from cuda.bindings import nvrtc as mod
        err, major, minor = mod.nvrtcVersion()
    except Exception as e:  # not installed, or libnvrtc not found  # noqa: BLE001
        _unavailable(f"NVRTC is not available ({type(e).__name__}: {e}); pip install 'varstore[nvrtc]'")
    return mod


def header_sets() -> dict[str, Path]:
    """{wheel name: include dir} from VARSTORE_CUPY_HEADERS (default .venv/cupy-headers)."""
    base = Path(os.environ.get("VARSTORE_CUPY_HEADERS", ROOT / ".venv" / "cupy-headers"))
    return {p.name: p / "include" for p in sorted(base.glob("cupy_cuda*")) if (p / "include" / "cupy").is_dir()}


@pytest.fixture(scope="module")
def headers():
    sets = header_sets()
    majors = {name.split("-")[1].split(".")[0] for name in sets}
    if not {"13", "14"} <= majors:
        _unavailable(f"cupy 13.x and 14.x headers are needed, found {sorted(sets) or 'none'}; "
                     f"run scripts/cupy-headers .venv/cupy-headers")
    return sets


def cupy_options(include: Path, arch: str) -> list[str]:
    """What cupy passes NVRTC for a RawModule (compiler.py: -arch, -ftz=true, its include
    dirs; cupy 13 adds its bundled cuda_fp16.h), plus the module's own --std=c++17."""
    opts = [f"-arch={arch}", "-ftz=true", "--std=c++17", f"-I{include}"]
    for sub in ("cupy/_cccl/libcudacxx", "cupy/_cccl/cub", "cupy/_cccl/thrust", "cupy/_cuda/cuda-12"):
        if (include / sub).is_dir():
            opts.append(f"-I{include / sub}")
    return opts


def compile_source(nvrtc, source: str, name: str, options: list[str]) -> tuple[bool, str]:
    """(success, log) of one NVRTC compile; the binary is produced, then dropped."""
    err, prog = nvrtc.nvrtcCreateProgram(source.encode(), f"{name}.cu".encode(), 0, [], [])
    assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS, err
    try:
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(options), [o.encode() for o in options])
        _, n = nvrtc.nvrtcGetProgramLogSize(prog)
        # A fresh, mutable buffer: NVRTC writes into it. (b" " * n is the interned b" " itself
        # when n == 1, an empty log: writing its NUL there turned every b" " in the process
        # into b"\x00".)
        log = bytearray(n)
        nvrtc.nvrtcGetProgramLog(prog, log)
        ok = err == nvrtc.nvrtcResult.NVRTC_SUCCESS
        if ok:  # the compile really produced code of the requested kind
            cubin = options[0].startswith("-arch=sm_")
            size_fn = nvrtc.nvrtcGetCUBINSize if cubin else nvrtc.nvrtcGetPTXSize
            _, size = size_fn(prog)
            ok = size > 0
        return ok, bytes(log).decode(errors="replace").rstrip("\x00 ")
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def test_every_kernel_compiles_with_nvrtc_against_every_cupy_header_set(nvrtc, headers):
    sources = gpu.cuda_sources()
    assert sources == cuda_src.cuda_sources() and set(sources) == {f"varstore_{k}" for k in cuda_src.BODIES}
    newest = max(headers, key=lambda n: tuple(int(x) for x in n.split("-")[1].split(".")))
    jobs = []
    for hname, inc in headers.items():
        for arch in ARCHS:
            kinds = ("compute", "sm") if hname == newest else ("compute",)
            for kind in kinds:
                for name, src in sources.items():
                    jobs.append((hname, f"{kind}_{arch}", name, src, cupy_options(inc, f"{kind}_{arch}")))
    t0 = time.perf_counter()
    # NVRTC is thread-safe; two workers keep CI's two cores busy.
    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
        results = list(pool.map(lambda j: (j, compile_source(nvrtc, j[3], j[2], j[4])), jobs))
    seconds = time.perf_counter() - t0
    assert b" ".decode() == " ", "a compile wrote into an immutable bytes object"
    failed = [f"{h} {arch} {name}:\n{log[:3000]}" for (h, arch, name, _, _), (ok, log) in results if not ok]
    assert not failed, "NVRTC rejected:\n" + "\n\n".join(failed)
    print(f"\nNVRTC {'.'.join(map(str, nvrtc.nvrtcVersion()[1:]))}: {len(sources)} sources "
          f"({sum(len(cuda_src.kernel_names(k)) for k in cuda_src.BODIES)} kernels) x {len(ARCHS)} archs x "
          f"{len(headers)} cupy header sets ({', '.join(headers)}): {len(jobs)} compiles in {seconds:.1f} s")


def test_nvrtc_sees_the_cupy_14_float16_break(nvrtc, headers):
    """The oracle catches bug 1: the old ElementwiseKernel preamble (overloads on cupy's
    ``float16`` after ``#include <cupy/carray.cuh>``, as cupy prepends it) compiles against
    cupy 13's headers and fails against cupy 14's, where ``float16`` is only declared."""
    # The pre-fix preamble's float16 overloads (varstore/train/kernels/gpu.py before issue 15).
    pre = """
__device__ __forceinline__ float vs_ld(float x) { return x; }
__device__ __forceinline__ float vs_ld(float16 x) { return (float)x; }
__device__ __forceinline__ void vs_st(float& d, float x) { d = x; }
__device__ __forceinline__ void vs_st(float16& d, float x) { d = float16(x); }
"""
    src = ("#include <cupy/carray.cuh>\n" + pre
           + 'extern "C" __global__ void k(float* x) { vs_st(x[0], vs_ld(x[0])); }\n')
    by_major = {name.split("-")[1].split(".")[0]: inc for name, inc in headers.items()}
    ok13, log13 = compile_source(nvrtc, src, "old", cupy_options(by_major["13"], "compute_80"))
    ok14, log14 = compile_source(nvrtc, src, "old", cupy_options(by_major["14"], "compute_80"))
    assert ok13, log13
    assert not ok14 and 'incomplete type "float16"' in log14, log14
    # The sources that replace it never name cupy's float16.
    assert all("float16" not in s for s in gpu.cuda_sources().values())
