"""mypy accepts user code written against the public API (the package ships py.typed),
and catches misuse of it. Skipped when mypy is not installed.

mypy checks a small program that uses the public API; the library's own modules
are followed silently (their internals are not what this checks), and torch's
large stubs are skipped to keep a cold run at a few seconds.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIG = """\
[mypy]
follow_imports = silent
warn_unused_ignores = True
[mypy-torch.*,safetensors.*,cupy.*,ray.*,numba.*,msgpack.*,xxhash.*]
follow_imports = skip
follow_imports_for_stubs = True
ignore_missing_imports = True
"""

GOOD = """\
from typing import Optional

import numpy as np

import devices
import varstore as tf
from varstore.checkpoint import CheckpointReader
from varstore.progress import Progress
from varstore.tools.convert import ConvertResult, convert
from varstore.tools.inspect_checkpoint import print_tensors_in_checkpoint_file

weights = tf.Variable(tf.random_normal([784, 200], stddev=0.35), name="weights")
biases = tf.Variable(tf.zeros([200]), name="biases")
w2 = tf.Variable(weights.initialized_value() * 2.0, name="w2")
with tf.device("/gpu:0"):
    v = tf.Variable(tf.ones([3]), name="v")
init_op = tf.global_variables_initializer()
saver = tf.train.Saver({"my_v": v})
with tf.Session() as sess:
    sess.run(init_op)
    path: str = saver.save(sess, "/tmp/model.ckpt", global_step=1)
    saver.restore(sess, path)
latest: Optional[str] = tf.train.latest_checkpoint("/tmp")
shape: tuple[int, ...] = weights.shape
name: str = weights.name
device: str = weights.device
live: np.ndarray = np.asarray(weights)
host: np.ndarray = weights.numpy()
v.assign(np.zeros(3, np.float32)).assign_add([1.0, 1.0, 1.0])
tf.train.AdamOptimizer(0.001).apply_gradients([(np.ones(3, np.float32), v)])
with CheckpointReader(path) as reader:
    names: list[str] = reader.names()
print_tensors_in_checkpoint_file(path, tensor_name="", all_tensors=False)
result: ConvertResult = convert(path, "/tmp/model.safetensors", name_map={"my_v": "v"}, progress=False)
count: int = result.tensors
with Progress(10, "work", enabled=False) as bar:
    bar.update(5)
tf.summary()
tf.summary([v], print_fn=lambda text: None)
table: str = devices.memory_summary()
spec = devices.DeviceSpec.from_string("/job:ps/task:0")
places: list[str] = devices.list_devices()
"""

# Each line is a misuse the public annotations must reject.
BAD = """\
import varstore as tf
from varstore.progress import Progress
from varstore.tools.convert import convert

v = tf.Variable(tf.zeros([2]), name="v")
n: int = v.name
convert("a.ckpt", "b.npz", name_map=["not", "a", "dict"])
Progress("ten")
tf.summary(print_fn=3)
"""


def test_mypy_accepts_the_public_api_and_rejects_misuse(tmp_path):
    (tmp_path / "mypy.ini").write_text(CONFIG)
    (tmp_path / "good.py").write_text(GOOD)
    (tmp_path / "bad.py").write_text(BAD)
    env = dict(os.environ, MYPYPATH=ROOT)  # the editable install's import hook is invisible to mypy
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--cache-dir", str(tmp_path / "cache"),
         "--python-executable", sys.executable, "--no-error-summary", "--hide-error-context", "good.py", "bad.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert not [e for e in errors if e.startswith("good.py")], textwrap.indent(out, "  ")
    bad_lines = sorted({int(m.group(1)) for e in errors if (m := re.match(r"bad\.py:(\d+):", e))})
    assert bad_lines == [6, 7, 8, 9], textwrap.indent(out, "  ")
