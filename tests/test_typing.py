"""mypy, run as a user runs it, accepts a program written against the public API and rejects
misuse of it. Skipped when mypy is not installed.

As a user runs it: the package is installed the README's way (``pip install -e``, into a
fresh venv) and mypy runs from a directory outside the checkout with no MYPYPATH. It must
find the package there (an editable install that is a plain .pth path, which mypy follows,
not an import hook, which it cannot), and the package ships py.typed.

The accepted program is the guide's code end to end (creation, device placement,
initialization, initialization from another variable, saving and restoring, choosing what
to save), then what a training program adds (optimizers, the global step, checkpoint
reading, the command-line tools' functions). The rejected one holds one misuse per line;
among them misspelled names of ``varstore``, ``varstore.train`` and ``devices``, which
must be errors rather than ``Any`` (their lazily loaded attributes are typed).

The library's own modules are followed silently (their internals are not what this
checks), and torch's, ray's and cupy's large stubs are skipped to keep a cold run short.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed"),
    pytest.mark.skipif(os.name != "posix", reason="the venv layout below is POSIX's"),
]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIG = """\
[mypy]
follow_imports = silent
warn_unused_ignores = True
[mypy-torch.*,safetensors.*,cupy.*,ray.*,numba.*,msgpack.*,xxhash.*,llvmlite.*]
follow_imports = skip
follow_imports_for_stubs = True
ignore_missing_imports = True
"""

GOOD = """\
import os
import tempfile
from typing import Optional

import numpy as np

import devices
import varstore as tf
from varstore.checkpoint import CheckpointReader
from varstore.progress import Progress
from varstore.tools.convert import ConvertResult, convert
from varstore.tools.inspect_checkpoint import print_tensors_in_checkpoint_file

directory = tempfile.mkdtemp()

# The guide: creation.
weights = tf.Variable(tf.random_normal([784, 200], stddev=0.35), name="weights")
biases = tf.Variable(tf.zeros([200]), name="biases")

# Device placement.
with tf.device("/cpu:0"):
    v = tf.Variable(tf.zeros([3]))
with tf.device("/gpu:0"):
    v = tf.Variable(tf.zeros([3]))
with tf.device("/job:ps/task:7"):
    v = tf.Variable(tf.zeros([3]))
with tf.device(tf.train.replica_device_setter(ps_tasks=2)):
    sharded = tf.Variable(tf.ones([3]), name="sharded")

# Initialization, and from another variable.
w2 = tf.Variable(weights.initialized_value(), name="w2")
w_twice = tf.Variable(weights.initialized_value() * 2.0, name="w_twice")
init_op = tf.global_variables_initializer()
ready = tf.is_variable_initialized(weights)
missing = tf.report_uninitialized_variables()

# Saving and restoring, and choosing which variables.
v1 = tf.Variable(tf.random_normal([3, 4]), name="v1")
v2 = tf.Variable(tf.zeros([5]), name="v2")
saver = tf.train.Saver()
only_v2 = tf.train.Saver({"my_v2": v2})
with tf.Session() as sess:
    sess.run(init_op)
    sess.run(tf.variables_initializer([v1, v2]))
    v2.assign_add([1.0, 2.0, 3.0, 4.0, 5.0])
    save_path: str = saver.save(sess, os.path.join(directory, "model.ckpt"), global_step=1)
    print("Model saved in file: %s" % save_path)
    saver.restore(sess, save_path)
    only_v2.save(sess, os.path.join(directory, "v2.ckpt"))
    initialized = sess.run(ready)

# What a training program adds.
step = tf.train.get_or_create_global_step()
opt = tf.train.AdamOptimizer(0.001)
opt.apply_gradients([(np.ones(5, np.float32), v2)], global_step=step)
tf.train.GradientDescentOptimizer(0.1).apply_gradients([(np.ones(5, np.float32), v2)])
latest: Optional[str] = tf.train.latest_checkpoint(directory)
state = tf.train.get_checkpoint_state(directory)
names_shapes: list = tf.train.list_variables(save_path)
value: np.ndarray = tf.train.load_variable(save_path, "v2")
shape: tuple[int, ...] = weights.shape
name: str = weights.name
device: str = weights.device
requested: str = weights.requested_device
live: np.ndarray = np.asarray(weights)
host: np.ndarray = weights.numpy()
half = tf.Variable(tf.zeros([2], dtype=tf.bfloat16), name="half")
dt: tf.DType = tf.as_dtype("bfloat16")
zs: np.ndarray = np.zeros(3, dtype=tf.float32)  # numpy takes a DType (its .dtype)
partial: tf.TensorShape = tf.TensorShape([None, 3])
first: Optional[int] = tf.dimension_value(partial[0])
same: bool = tf.bfloat16 == devices.bfloat16 == dt
with CheckpointReader(save_path) as reader:
    names: list[str] = reader.names()
print_tensors_in_checkpoint_file(save_path, tensor_name="", all_tensors=False)
result: ConvertResult = convert(save_path, os.path.join(directory, "m.safetensors"), progress=False)
count: int = result.tensors
with Progress(10, "work", enabled=False) as bar:
    bar.update(5)
tf.summary()
tf.summary([v], print_fn=lambda text: None)
version: str = tf.__version__
table: str = devices.memory_summary()
spec = devices.DeviceSpec.from_string("/job:ps/task:0")
places: list[str] = devices.list_devices()
try:
    tf.Session().run(tf.Variable(tf.zeros([1]), name="never_initialized"))
except tf.errors.FailedPreconditionError as e:
    message: str = e.message
"""

# Each line from the 7th on is a misuse the public annotations must reject.
BAD = """\
import devices
import varstore as tf
from varstore.progress import Progress
from varstore.tools.convert import convert

v = tf.Variable(tf.zeros([2]), name="v")
n: int = v.name
convert("a.ckpt", "b.npz", name_map=["not", "a", "dict"])
Progress("ten")
tf.summary(print_fn=3)
tf.Varible(1.0)
tf.train.Savr()
devices.list_device()
saver: int = tf.train.Saver()
tf.train.AdamOptimizer(0.1).apply_gradient([])
tf.checkpoint.CheckpointReadr("a.ckpt")
devices.cluster.strat(ps_tasks=2)
dt: str = tf.bfloat16
"""
BAD_LINES = list(range(7, 19))


def _editable_install(tmp_path: Path) -> Path:
    """A fresh venv with the checkout installed the README's way (``pip install -e``); its
    python. The dependencies come from this venv, by path: a .pth line naming its
    site-packages, which (unlike an import hook) mypy follows as any user's would."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    target = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            check=True, capture_output=True, text=True).stdout.strip()
    here = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(target, "_deps.pth").write_text("\n".join(sorted(here)) + "\n")
    # No build isolation: setuptools comes from the test extra, so this needs no network.
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                           "--no-build-isolation", "--disable-pip-version-check", "-e", ROOT],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return python


def test_mypy_finds_the_editable_install_accepts_the_api_and_rejects_misuse(tmp_path):
    python = _editable_install(tmp_path)
    work = tmp_path / "user"  # outside the checkout: nothing is found by accident of the cwd
    work.mkdir()
    (work / "mypy.ini").write_text(CONFIG)
    (work / "good.py").write_text(GOOD)
    (work / "bad.py").write_text(BAD)
    env = {k: val for k, val in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")}
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--cache-dir", str(tmp_path / "cache"),
         "--python-executable", str(python), "--no-error-summary", "--hide-error-context", "good.py", "bad.py"],
        cwd=work, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert not [e for e in errors if e.startswith("good.py")], textwrap.indent(out, "  ")
    bad_lines = sorted({int(m.group(1)) for e in errors if (m := re.match(r"bad\.py:(\d+):", e))})
    assert bad_lines == BAD_LINES, textwrap.indent(out, "  ")
    # The misspellings are reported as what they are, not as some other error on the line.
    for line, word in ((11, "Varible"), (12, "Savr"), (13, "list_device"), (17, "strat")):
        assert any(e.startswith(f"bad.py:{line}:") and word in e for e in errors), textwrap.indent(out, "  ")
