"""The oracle's machinery: the program registry, the result encoding, the comparison and the
runner that real TensorFlow executes.

A program is an ordinary TF 1.x function ``def prog(tf): ... return {...}`` (or
``def prog(tf, tmp)`` for a scratch directory), registered with :func:`program`. It is written
once and run twice: under real TensorFlow (``tf`` = ``tensorflow.compat.v1`` with TF 1.x
behaviour, in a subprocess: ``python oracle_harness.py graph|eager OUT.json TMPDIR``) and under
varstore (``tf`` = ``varstore``, in the test process). Both runs start from a fresh default
graph. The results are compared by :func:`compare`.

Adding a program: write it in the ``oracle_progs_<group>.py`` of its group as a TF 1.x user
would (from TF's documentation and idioms, not from varstore's code)::

    @program
    def assign_add_built_once(tf):
        counter = tf.Variable(0, name="counter")
        inc = counter.assign_add(1)
        with tf.Session() as sess:
            sess.run(counter.initializer)
            return {"fetched": [sess.run(inc) for _ in range(3)], "name": counter.name}

Return plain values: numpy arrays and scalars (dtype and shape are compared; floats with
allclose, ``rtol``/``atol`` per program), str, int, float, bool, None, lists, tuples and dicts
with str keys. Turn TF objects into such values (``v.dtype.base_dtype.name``,
``v.get_shape().as_list()``); paths relative to ``tmp``. An exception is a result too: record
one with ``raises(lambda: ...)``; it compares by class (varstore's must be an instance of
varstore.errors.<TF's class name>, else builtins.<name>). Random values differ between the two
RNGs: return statistics (bools of range checks), not values. ``@program(mode="eager")`` runs
in the eager subprocess. Check the TF side first: ``python oracle_harness.py graph out.json
/tmp/x`` with TF's interpreter, then read out.json.

Declaring a kept difference: ``@program(kept={"device": "<first cell of a row>"})`` — the row
in the "Kept differences" table of docs/coming-from-tf1.md. That result key is then not
compared; instead the test asserts that it still differs (and test_kept_differences_are_documented
that the row exists), so a difference that goes away is noticed.

This module imports neither TensorFlow nor varstore at module level: it is imported by both
interpreters. It needs numpy only.
"""
from __future__ import annotations

import base64
import builtins
import importlib
import inspect
import json
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

try:
    import numpy as np
except ImportError as _e:  # the TF runner in an interpreter without numpy has no TensorFlow either
    if __name__ == "__main__":
        print(f"no tensorflow: {_e}", file=sys.stderr)
        sys.exit(3)
    raise

HERE = os.path.dirname(os.path.abspath(__file__))
# The modules that hold programs, one per group of the brief (issue 13, part 4).
PROGRAM_MODULES = ("oracle_progs_guide", "oracle_progs_graph", "oracle_progs_optim", "oracle_progs_variable",
                   "oracle_progs_train", "oracle_progs_errors", "oracle_progs_eager")


@dataclass
class Program:
    name: str  # "<group>.<function>"
    fn: Callable
    mode: str = "graph"  # "graph" or "eager": which TF subprocess runs it
    kept: dict[str, str] = field(default_factory=dict)  # result key -> row in coming-from-tf1.md
    rtol: float = 1e-5
    atol: float = 1e-6

    @property
    def wants_tmp(self) -> bool:
        return "tmp" in inspect.signature(self.fn).parameters

    def __call__(self, tf, tmp: str | None = None):
        return self.fn(tf, tmp) if self.wants_tmp else self.fn(tf)


REGISTRY: dict[str, Program] = {}


def program(fn=None, *, mode: str = "graph", kept: dict[str, str] | None = None,
            rtol: float = 1e-5, atol: float = 1e-6):
    """Register a program. ``kept`` maps a result key to the first cell of its row in the
    "Kept differences" table of docs/coming-from-tf1.md: that key is not compared, and a test
    asserts the row exists and that the results still differ there."""
    def register(f):
        group = f.__module__.rsplit("_", 1)[-1]
        p = Program(f"{group}.{f.__name__}", f, mode, dict(kept or {}), rtol, atol)
        assert p.name not in REGISTRY, p.name
        REGISTRY[p.name] = p
        return f
    return register(fn) if fn is not None else register


def load_programs() -> dict[str, Program]:
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    for m in PROGRAM_MODULES:
        importlib.import_module(m)
    return REGISTRY


# ---------------------------------------------------------------------------------------------
# Helpers programs use (they behave the same whichever `tf` runs them).

def raises(fn: Callable[[], Any]):
    """Call ``fn``; return the exception it raised (encoded by its class), or a marker."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - recording the class is the point
        return e
    return "<no exception>"


# ---------------------------------------------------------------------------------------------
# Encoding: JSON with arrays as dtype/shape/base64 bytes. Exceptions become their class names.

@dataclass
class Raised:
    """An exception in a result: its class name (TF side) or the exception itself (varstore side)."""
    name: str
    classes: list[str]
    message: str
    exc: BaseException | None = None

    def __repr__(self):
        return f"<raised {self.name}: {self.message[:200]}>"


def encode(x: Any) -> Any:
    """A JSON-able tree for ``x`` (numpy arrays and scalars keep dtype and shape)."""
    if isinstance(x, BaseException):
        return {"__error__": type(x).__name__, "mro": [c.__name__ for c in type(x).__mro__],
                "message": str(x)[:500]}
    if isinstance(x, Raised):
        return {"__error__": x.name, "mro": x.classes, "message": x.message}
    if isinstance(x, (np.ndarray, np.generic)):  # first: np.float64 is a float too
        a = np.asarray(x)
        if a.dtype == object or a.dtype.kind in "SU":
            return {"__nd_obj__": list(a.shape), "items": [encode(i) for i in a.ravel().tolist()]}
        a = a.copy(order="C")  # not ascontiguousarray: it makes a 0-d array 1-d
        return {"__nd__": a.dtype.name, "shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode()}
    if isinstance(x, (bool, type(None), str)):
        return x
    if isinstance(x, int):
        return {"__int__": str(x)} if abs(x) > 2**53 else x
    if isinstance(x, float):
        return x if np.isfinite(x) else {"__float__": repr(x)}
    if isinstance(x, bytes):
        return {"__bytes__": base64.b64encode(x).decode()}
    if isinstance(x, tuple):
        return {"__tuple__": [encode(i) for i in x]}
    if isinstance(x, list):
        return [encode(i) for i in x]
    if isinstance(x, dict):
        for k in x:
            if not isinstance(k, str):
                raise TypeError(f"result keys must be str, got {k!r}")
        return {"__dict__": {k: encode(v) for k, v in x.items()}}
    raise TypeError(f"a program returned a {type(x).__module__}.{type(x).__qualname__} ({x!r:.80}); "
                    "return plain values (str, int, float, numpy, lists, dicts) or exceptions")


def _np_dtype(name: str) -> np.dtype:
    try:
        return np.dtype(name)
    except TypeError:
        import ml_dtypes
        return np.dtype(getattr(ml_dtypes, name))


def decode(x: Any) -> Any:
    if isinstance(x, list):
        return [decode(i) for i in x]
    if not isinstance(x, dict):
        return x
    if "__error__" in x:
        return Raised(x["__error__"], x["mro"], x["message"])
    if "__int__" in x:
        return int(x["__int__"])
    if "__float__" in x:
        return float(x["__float__"])
    if "__bytes__" in x:
        return base64.b64decode(x["__bytes__"])
    if "__nd__" in x:
        a = np.frombuffer(base64.b64decode(x["b64"]), dtype=_np_dtype(x["__nd__"])).reshape(x["shape"])
        return a.copy()
    if "__nd_obj__" in x:
        a = np.empty(len(x["items"]), dtype=object)
        a[:] = [decode(i) for i in x["items"]]
        return a.reshape(x["__nd_obj__"])
    if "__tuple__" in x:
        return tuple(decode(i) for i in x["__tuple__"])
    if "__dict__" in x:
        return {k: decode(v) for k, v in x["__dict__"].items()}
    raise ValueError(f"not an encoded value: {x!r:.200}")


def normalize(x: Any) -> Any:
    """The varstore side's result in the shape :func:`decode` gives (exceptions kept as objects)."""
    if isinstance(x, BaseException):
        return Raised(type(x).__name__, [c.__name__ for c in type(x).__mro__], str(x), x)
    if isinstance(x, tuple):
        return tuple(normalize(i) for i in x)
    if isinstance(x, list):
        return [normalize(i) for i in x]
    if isinstance(x, dict):
        return {k: normalize(v) for k, v in x.items()}
    return decode(encode(x))


# ---------------------------------------------------------------------------------------------
# Comparison.

def error_class(name: str):
    """The class a varstore error must be an instance of: varstore.errors.<name>, else builtins.<name>."""
    import varstore.errors as vs_errors
    cls = getattr(vs_errors, name, None) or getattr(builtins, name, None)
    return cls if isinstance(cls, type) and issubclass(cls, BaseException) else None


def compare(want: Any, got: Any, path: str = "", rtol: float = 1e-5, atol: float = 1e-6) -> list[str]:
    """Differences between TF's result ``want`` (decoded) and varstore's ``got`` (normalized)."""
    where = path or "<result>"
    if isinstance(want, Raised):
        if not isinstance(got, Raised):
            return [f"{where}: TF raised {want.name} ({want.message[:160]}), varstore gave {got!r:.200}"]
        cls = error_class(want.name)
        if cls is None:
            return [f"{where}: TF raised {want.name}; there is no class of that name in varstore.errors or "
                    f"builtins (varstore raised {got.name}: {got.message[:160]})"]
        if got.exc is not None and not isinstance(got.exc, cls):
            return [f"{where}: TF raised {want.name}, varstore raised {got.name} ({got.message[:200]})"]
        return []
    if isinstance(got, Raised):
        return [f"{where}: TF gave {want!r:.200}, varstore raised {got.name} ({got.message[:300]})"]
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return [f"{where}: TF gave a dict, varstore a {type(got).__name__}"]
        out = []
        if set(want) != set(got):
            out.append(f"{where}: keys differ: TF only {sorted(set(want) - set(got))}, "
                       f"varstore only {sorted(set(got) - set(want))}")
        for k in want:
            if k in got:
                out += compare(want[k], got[k], f"{path}.{k}" if path else k, rtol, atol)
        return out
    if isinstance(want, (list, tuple)):
        if type(want) is not type(got):
            return [f"{where}: TF gave a {type(want).__name__}, varstore {type(got).__name__} ({got!r:.120})"]
        if len(want) != len(got):
            return [f"{where}: TF gave {len(want)} items, varstore {len(got)}: {want!r:.200} vs {got!r:.200}"]
        out = []
        for i, (a, b) in enumerate(zip(want, got)):
            out += compare(a, b, f"{path}[{i}]", rtol, atol)
        return out
    if isinstance(want, np.ndarray):
        if not isinstance(got, np.ndarray):
            return [f"{where}: TF gave a numpy {want.dtype} {want.shape} ({want!r:.120}), "
                    f"varstore a {type(got).__name__} ({got!r:.120})"]
        if want.dtype != got.dtype or want.shape != got.shape:
            return [f"{where}: TF gave {want.dtype}{list(want.shape)}, varstore {got.dtype}{list(got.shape)} "
                    f"({want!r:.120} vs {got!r:.120})"]
        if want.dtype == object:
            return [] if want.tolist() == got.tolist() else [f"{where}: {want!r:.200} != {got!r:.200}"]
        if want.dtype.kind in "fc":
            ok = np.allclose(got.astype(np.complex128 if want.dtype.kind == "c" else np.float64),
                             want.astype(np.complex128 if want.dtype.kind == "c" else np.float64),
                             rtol=rtol, atol=atol, equal_nan=True)
        else:
            ok = np.array_equal(want, got)
        return [] if ok else [f"{where}: values differ: TF {want!r:.300} vs varstore {got!r:.300}"]
    # Python scalars and strings: same type (bool is not int), float within tolerance.
    if type(want) is not type(got):
        return [f"{where}: TF gave {type(want).__name__} {want!r:.120}, varstore {type(got).__name__} {got!r:.120}"]
    if isinstance(want, float):
        ok = np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
        return [] if ok else [f"{where}: {want!r} (TF) vs {got!r} (varstore)"]
    return [] if want == got else [f"{where}: TF {want!r:.200} vs varstore {got!r:.200}"]


# ---------------------------------------------------------------------------------------------
# Launching the TF side from the test process: started once (tests/tf_oracle/conftest.py starts it
# right after collection, so TF imports while the rest of the suite runs), awaited by the fixture.

_RUNS: dict = {}


def tf_python() -> str | None:
    """The interpreter with TensorFlow: $VARSTORE_TF_PYTHON, else this one if it has tensorflow."""
    import importlib.util
    env = os.environ.get("VARSTORE_TF_PYTHON")
    if env:
        return env
    return sys.executable if importlib.util.find_spec("tensorflow") is not None else None


def start_tf() -> None:
    """Start one TF subprocess per mode (graph, eager), both at once; idempotent."""
    import subprocess
    import tempfile
    python = tf_python()
    if _RUNS or python is None:
        return
    import atexit
    root = tempfile.mkdtemp(prefix="varstore-tf-oracle-")
    atexit.register(_cleanup)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "TF_ENABLE_ONEDNN_OPTS": "0"}
    _RUNS["root"] = root
    for mode in ("graph", "eager"):
        os.makedirs(os.path.join(root, mode))
        try:
            _RUNS[mode] = subprocess.Popen(
                [python, os.path.join(HERE, "oracle_harness.py"), mode, os.path.join(root, f"{mode}.json"),
                 os.path.join(root, mode)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        except OSError as e:  # VARSTORE_TF_PYTHON names no interpreter
            _RUNS["results"], _RUNS["why"] = {}, f"cannot run {python}: {e}"
            return


def _cleanup() -> None:
    """At exit: stop the runs this process started that nobody awaited, remove their files."""
    import shutil
    for mode in ("graph", "eager"):
        p = _RUNS.get(mode)
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()
    if "root" in _RUNS:
        shutil.rmtree(_RUNS["root"], ignore_errors=True)


def tf_results(timeout: float = 600) -> tuple[dict, str | None]:
    """(results by program name, None) or ({}, why TF could not run). Waits for start_tf's runs."""
    import shutil
    import subprocess
    start_tf()
    if not _RUNS:
        return {}, "needs TensorFlow: set VARSTORE_TF_PYTHON or install it"
    if "results" in _RUNS:
        return _RUNS["results"], _RUNS["why"]
    results, why = {}, None
    for mode in ("graph", "eager"):
        p = _RUNS[mode]
        try:
            _, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        if p.returncode == 3:
            why = f"no tensorflow in {tf_python()}: {err.strip()[-300:]}"
            break
        if p.returncode != 0:
            raise RuntimeError(f"the TF {mode} runner failed (exit {p.returncode}):\n{err[-4000:]}")
        with open(os.path.join(_RUNS["root"], f"{mode}.json")) as f:
            results.update(json.load(f)["results"])
    shutil.rmtree(_RUNS["root"], ignore_errors=True)
    _RUNS["results"], _RUNS["why"] = results, why
    return results, why


# ---------------------------------------------------------------------------------------------
# The TF side: one subprocess runs every program of one mode.

def _run_tf(mode: str, out_path: str, tmp_root: str) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import tensorflow.compat.v1 as tf
    except ImportError as e:
        print(f"no tensorflow: {e}", file=sys.stderr)
        sys.exit(3)
    tf.disable_v2_behavior()  # TF 1.x: graph mode, ref variables, Dimension shapes
    if mode == "eager":
        tf.enable_eager_execution()
    tf.get_logger().setLevel("ERROR")
    results = {}
    for name, p in sorted(load_programs().items()):
        if p.mode != mode:
            continue
        tf.reset_default_graph()
        tmp = os.path.join(tmp_root, name)
        os.makedirs(tmp, exist_ok=True)
        try:
            r = encode(p(tf, tmp))
        except Exception as e:  # noqa: BLE001 - the error is a result
            r = encode(e)
            r["traceback"] = traceback.format_exc()[-3000:]
        results[name] = r
        sess = tf.get_default_session()
        if sess is not None:  # a program that left an InteractiveSession open
            sess.close()
    with open(out_path, "w") as f:
        json.dump({"tf_version": tf.__version__, "mode": mode, "results": results}, f)


if __name__ == "__main__":
    # Programs register with the module `oracle_harness`, not with this `__main__` copy of it.
    sys.path.insert(0, HERE)
    importlib.import_module("oracle_harness")._run_tf(*sys.argv[1:4])
