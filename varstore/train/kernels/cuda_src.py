"""The CUDA C++ the GPU optimizer kernels are compiled from: complete sources, owned in full.

No cupy: pure string building, so CI tests these exact sources without a card, twice:
``tests/test_nvrtc.py`` compiles each with the real NVRTC against the headers of the
cupy wheels users install (sm_80, sm_90), and ``tests/test_kernels.py`` compiles the
same text with g++ (a few shims for CUDA built-ins, no line removed) and runs it against
the float64 reference.

One source per update rule. Each holds, for every supported dtype combination:
- ``varstore_<rule>_mt_<T>_<G>_<S>``: the multi-tensor update (apex ``multi_tensor_apply``
  style). Block b updates chunk b of the chunk table: ``chunks[2b]`` is a tensor index,
  ``chunks[2b+1]`` the first element of the chunk. Row t of ``tensors`` is
  ``(n, var, s0, s1, s2)`` (element count, then pointers); ``grads[t]`` is the gradient's
  pointer, kept apart because it changes each step while the rest is cached.
- ``varstore_<rule>_sparse_<T>_<G>_<S>``: rows of one var, duplicates summed first.
  Thread i handles element ``col`` of segment ``seg`` (one distinct row): it sums that
  row's values in the order given (deterministic, no atomics), then applies the rule.

Hyperparameters arrive by value (a launch argument costs no sync). Adam's bias
correction is folded on the device from ``beta1_power``/``beta2_power`` when
``pkind`` is 1 (float32 powers) or 2 (float64), so a step never reads them back.

Types: float32 and float64 compute in their own type; float16 and bfloat16 travel as
16-bit structs, load into float32 and round back once (nearest even) - the CPU
kernels' precision. The sources include no header at all: cupy 14's ``carray.cuh``
only forward-declares its ``float16`` (bug 1 of issue 15), and a source that needs
nothing cannot break on a header's change.

>>> srcs = cuda_sources()
>>> sorted(srcs)[:2]
['varstore_adagrad', 'varstore_adam']
>>> "varstore_adam_mt_f32_f32_f32" in srcs["varstore_adam"]
True
"""
from __future__ import annotations

import functools

# Kernel (rule variant) -> (slots, hyperparameters). centered_rmsprop is rmsprop with
# centered=True: a separate kernel, so no per-element branch on the flag.
N_SLOTS = {"sgd": 0, "momentum": 1, "adam": 2, "adagrad": 1, "rmsprop": 2, "centered_rmsprop": 3}
N_HYPER = {"sgd": 1, "momentum": 2, "adam": 4, "adagrad": 1, "rmsprop": 4, "centered_rmsprop": 4}
THREADS = 256          # threads per block, both kinds
CHUNK = 1 << 16        # elements per multi-tensor chunk (apex's default): one block each

# dtype tag -> C type. The half types are 16-bit structs so that overloads pick the
# conversion; the Python side passes raw pointers and never needs their layout.
C_TYPES = {"f16": "vs_f16", "bf16": "vs_bf16", "f32": "float", "f64": "double"}
# (var, grad, slots) combinations every backend accepts (rules.DTYPE_PAIRS): one dtype
# throughout, or float32 gradients and/or slots beside a half-precision var.
COMBOS: tuple[tuple[str, str, str], ...] = (
    ("f32", "f32", "f32"), ("f64", "f64", "f64"),
    *((h, g, s) for h in ("f16", "bf16") for g in (h, "f32") for s in (h, "f32")),
)

PREAMBLE = r"""
// varstore: shared loads, stores and types for the optimizer kernels (no #include).
struct vs_f16 { unsigned short bits; };
struct vs_bf16 { unsigned short bits; };
template <typename T> struct vs_compute { typedef float type; };
template <> struct vs_compute<double> { typedef double type; };

__device__ __forceinline__ float vs_bits_as_float(unsigned int u) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float f; __builtin_memcpy(&f, &u, 4); return f;
#endif
}
__device__ __forceinline__ unsigned int vs_float_as_bits(float f) {
#ifdef __CUDA_ARCH__
    return __float_as_uint(f);
#else
    unsigned int u; __builtin_memcpy(&u, &f, 4); return u;
#endif
}

__device__ __forceinline__ float vs_ld(float x) { return x; }
__device__ __forceinline__ double vs_ld(double x) { return x; }
__device__ __forceinline__ float vs_ld(vs_bf16 b) { return vs_bits_as_float(((unsigned int)b.bits) << 16); }
__device__ __forceinline__ float vs_ld(vs_f16 h) {
#ifdef __CUDA_ARCH__
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h.bits));
    return f;
#else  // the host harness (tests/test_kernels.py): exact integer conversion, as half.py
    unsigned int x = h.bits, sign = (x & 0x8000u) << 16, e = x & 0x7C00u, m = x & 0x03FFu;
    if (e == 0x7C00u) return vs_bits_as_float(sign | 0x7F800000u | (m << 13));
    if (e == 0) { float mag = (float)m * 5.9604644775390625e-08f; return sign ? -mag : mag; }
    return vs_bits_as_float(sign | (((x & 0x7FFFu) << 13) + 0x38000000u));
#endif
}

__device__ __forceinline__ void vs_st(float& d, float x) { d = x; }
__device__ __forceinline__ void vs_st(double& d, double x) { d = x; }
__device__ __forceinline__ void vs_st(vs_bf16& d, float x) {
    unsigned int u = vs_float_as_bits(x);
    d.bits = (x != x) ? (unsigned short)((u >> 16) | 0x40u)
                      : (unsigned short)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}
__device__ __forceinline__ void vs_st(vs_f16& d, float x) {
#ifdef __CUDA_ARCH__
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(d.bits) : "f"(x));
#else  // round to nearest even, overflow to inf, NaN quiet: as numpy and half.py
    unsigned int u = vs_float_as_bits(x), sign = (u >> 16) & 0x8000u, a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) { d.bits = (unsigned short)(sign | 0x7E00u | (a >> 13)); return; }
    if (a >= 0x477FF000u) { d.bits = (unsigned short)(sign | 0x7C00u); return; }
    if (a < 0x38800000u) {  // subnormal or zero in half
        float mag = vs_bits_as_float(a) * 16777216.0f;  // exact: scales by 2^24
        unsigned int q = (unsigned int)mag; float r = mag - (float)q;
        if (r > 0.5f || (r == 0.5f && (q & 1u))) ++q;
        d.bits = (unsigned short)(sign | q); return;
    }
    unsigned int r = a - 0x38000000u;
    r = (r + 0x0FFFu + ((r >> 13) & 1u)) >> 13;
    d.bits = (unsigned short)(sign | r);
#endif
}

// Adam's bias correction on the device: lr * sqrt(1 - beta2^t) / (1 - beta1^t), in double
// (what the host computed from the same float32 powers before: the same bits).
__device__ __forceinline__ double vs_lr(double lr, const void* p1, const void* p2, int pkind) {
    if (pkind == 1) return lr * sqrt(1.0 - (double)*(const float*)p2) / (1.0 - (double)*(const float*)p1);
    if (pkind == 2) return lr * sqrt(1.0 - *(const double*)p2) / (1.0 - *(const double*)p1);
    return lr;
}
"""

# Rule arithmetic in TF 1.x form, on element j: gi is the (summed) gradient in the compute
# type C; lr the step size (bias-corrected for Adam); h1.. the other hyperparameters.
BODIES = {
    "sgd": "vs_st(var[j], vs_ld(var[j]) - (C)lr * gi);",
    "momentum": """
        C acc = (C)h1 * vs_ld(s0[j]) + gi;
        vs_st(s0[j], acc);
        if (flag) vs_st(var[j], vs_ld(var[j]) - (gi * (C)lr + acc * (C)h1 * (C)lr));
        else vs_st(var[j], vs_ld(var[j]) - (C)lr * acc);""",
    "adam": """
        C m = (C)h1 * vs_ld(s0[j]) + (C)(1.0 - h1) * gi;
        C v = (C)h2 * vs_ld(s1[j]) + (C)(1.0 - h2) * gi * gi;
        vs_st(s0[j], m);
        vs_st(s1[j], v);
        vs_st(var[j], vs_ld(var[j]) - (C)lr * m / (sqrt(v) + (C)h3));""",
    "adagrad": """
        C acc = vs_ld(s0[j]) + gi * gi;
        vs_st(s0[j], acc);
        vs_st(var[j], vs_ld(var[j]) - (C)lr * gi / sqrt(acc));""",
    "rmsprop": """
        C ms = (C)h1 * vs_ld(s0[j]) + (C)(1.0 - h1) * gi * gi;
        C mom = (C)h2 * vs_ld(s1[j]) + (C)lr * gi / sqrt(ms + (C)h3);
        vs_st(s0[j], ms);
        vs_st(s1[j], mom);
        vs_st(var[j], vs_ld(var[j]) - mom);""",
    "centered_rmsprop": """
        C ms = (C)h1 * vs_ld(s0[j]) + (C)(1.0 - h1) * gi * gi;
        C mg = (C)h1 * vs_ld(s2[j]) + (C)(1.0 - h1) * gi;
        C mom = (C)h2 * vs_ld(s1[j]) + (C)lr * gi / sqrt(ms - mg * mg + (C)h3);
        vs_st(s0[j], ms);
        vs_st(s2[j], mg);
        vs_st(s1[j], mom);
        vs_st(var[j], vs_ld(var[j]) - mom);""",
}

_TEMPLATES = r"""
template <typename T, typename S>
__device__ __forceinline__ void vs_apply_{kernel}(T* var, S* s0, S* s1, S* s2, long long j,
        typename vs_compute<T>::type gi, double lr, double h1, double h2, double h3, int flag) {{
    typedef typename vs_compute<T>::type C;
    (void)s0; (void)s1; (void)s2; (void)h1; (void)h2; (void)h3; (void)flag;
    {body}
}}

template <typename T, typename G, typename S>
__device__ __forceinline__ void vs_mt_{kernel}(const long long* tensors, const long long* grads,
        const long long* chunks, long long chunk_size, double h0, double h1, double h2, double h3,
        int flag, const void* p1, const void* p2, int pkind) {{
    typedef typename vs_compute<T>::type C;
    const long long t = chunks[2 * (long long)blockIdx.x], start = chunks[2 * (long long)blockIdx.x + 1];
    const long long* row = tensors + 5 * t;
    const long long n = row[0];
    T* var = (T*)row[1];
    S* s0 = (S*)row[2];
    S* s1 = (S*)row[3];
    S* s2 = (S*)row[4];
    const G* g = (const G*)grads[t];
    const long long end = start + chunk_size < n ? start + chunk_size : n;
    const double lr = vs_lr(h0, p1, p2, pkind);
    for (long long j = start + threadIdx.x; j < end; j += blockDim.x) {{
        vs_apply_{kernel}(var, s0, s1, s2, j, (C)vs_ld(g[j]), lr, h1, h2, h3, flag);
    }}
}}

template <typename T, typename G, typename S>
__device__ __forceinline__ void vs_sparse_{kernel}(T* var, S* s0, S* s1, S* s2, const G* vals,
        const long long* order, const long long* starts, const long long* rows, long long d,
        long long total, double h0, double h1, double h2, double h3, int flag,
        const void* p1, const void* p2, int pkind) {{
    typedef typename vs_compute<T>::type C;
    const double lr = vs_lr(h0, p1, p2, pkind);
    const long long step = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += step) {{
        const long long seg = i / d, col = i - seg * d;
        C gi = 0;
        for (long long k = starts[seg]; k < starts[seg + 1]; ++k) gi += (C)vs_ld(vals[order[k] * d + col]);
        vs_apply_{kernel}(var, s0, s1, s2, rows[seg] * d + col, gi, lr, h1, h2, h3, flag);
    }}
}}
"""

_INSTANCE = r"""
extern "C" __global__ void __launch_bounds__({threads}) varstore_{kernel}_mt_{tag}(
        const long long* tensors, const long long* grads, const long long* chunks, long long chunk_size,
        double h0, double h1, double h2, double h3, int flag, const void* p1, const void* p2, int pkind) {{
    vs_mt_{kernel}<{T}, {G}, {S}>(tensors, grads, chunks, chunk_size, h0, h1, h2, h3, flag, p1, p2, pkind);
}}
extern "C" __global__ void __launch_bounds__({threads}) varstore_{kernel}_sparse_{tag}(
        {T}* var, {S}* s0, {S}* s1, {S}* s2, const {G}* vals, const long long* order,
        const long long* starts, const long long* rows, long long d, long long total,
        double h0, double h1, double h2, double h3, int flag, const void* p1, const void* p2, int pkind) {{
    vs_sparse_{kernel}<{T}, {G}, {S}>(var, s0, s1, s2, vals, order, starts, rows, d, total,
                                      h0, h1, h2, h3, flag, p1, p2, pkind);
}}
"""


def combo_tag(t: str, g: str, s: str) -> str:
    """The suffix of a kernel's name for dtype tags (var, grad, slots): ``f16_f32_f16``."""
    return f"{t}_{g}_{s}"


def kernel_names(kernel: str) -> list[str]:
    """Every ``extern "C"`` kernel in the source of ``kernel`` (both kinds, every combination)."""
    return [f"varstore_{kernel}_{kind}_{combo_tag(*c)}" for c in COMBOS for kind in ("mt", "sparse")]


@functools.cache
def source(kernel: str) -> str:
    """The complete CUDA C++ source for one rule variant (see the module docstring)."""
    parts = [f"// varstore optimizer kernel '{kernel}': generated by varstore/train/kernels/cuda_src.py\n",
             PREAMBLE, _TEMPLATES.format(kernel=kernel, body=BODIES[kernel])]
    for t, g, s in COMBOS:
        parts.append(_INSTANCE.format(threads=THREADS, kernel=kernel, tag=combo_tag(t, g, s),
                                      T=C_TYPES[t], G=C_TYPES[g], S=C_TYPES[s]))
    return "".join(parts)


def cuda_sources() -> dict[str, str]:
    """{name: complete CUDA C++ source} of every kernel module the GPU path compiles."""
    return {f"varstore_{k}": source(k) for k in BODIES}


def chunk_table(sizes: list[int], chunk: int = CHUNK) -> list[int]:
    """The flat chunk table for tensors of ``sizes`` elements: (tensor, first element) pairs,
    one per block, covering every element once; empty tensors get none.

    >>> chunk_table([3, 0, 5], chunk=4)
    [0, 0, 2, 0, 2, 4]
    """
    out: list[int] = []
    for t, n in enumerate(sizes):
        for start in range(0, n, chunk):
            out += (t, start)
    return out
