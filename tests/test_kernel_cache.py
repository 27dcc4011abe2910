"""The CPU kernels work where numba has nowhere to cache them.

A non-root user in a container often can write neither to site-packages (the
``__pycache__`` beside the kernels) nor to ``$HOME`` (numba's user-wide cache).
``njit(cache=True)`` then raises ``RuntimeError: cannot cache function ...: no
locator available`` and every optimizer update failed. The kernels now compile
in memory instead.

Here numba is told, through its own NUMBA_CACHE_LOCATOR_CLASSES setting, to
use only the locator for zip imports, which finds no place for files on disk:
the same "no locator" numba reports for a read-only site-packages and $HOME.
(scripts/release-check runs the real thing: an installed wheel, run by a user
who cannot write either place.)
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

numba = pytest.importorskip("numba")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROGRAM = textwrap.dedent("""\
    import numpy as np
    import varstore as tf
    from varstore.train.kernels import _jit

    v = tf.Variable(tf.ones([4]), name="v")
    h = tf.Variable(tf.ones([4], dtype=tf.float16), name="h")
    opt = tf.train.AdamOptimizer(0.1)
    train = opt.apply_gradients([(np.ones(4, np.float32), v), (np.ones(4, np.float16), h)])
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())  # the slots too
        sess.run(train)
        print(_jit.JIT["cache"], *sess.run(v).astype(float), *sess.run(h).astype(float))
""")


def _run(**env: str) -> tuple[str, list[float]]:
    proc = subprocess.run([sys.executable, "-c", PROGRAM], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, **env))
    assert proc.returncode == 0, proc.stderr
    cache, *values = proc.stdout.split()
    return cache, [float(x) for x in values]


@pytest.mark.skipif(not hasattr(numba.config, "CACHE_LOCATOR_CLASSES"),
                    reason="this numba has no NUMBA_CACHE_LOCATOR_CLASSES to take the cache away with")
def test_an_optimizer_step_runs_when_numba_cannot_cache():
    cache, values = _run(NUMBA_CACHE_LOCATOR_CLASSES="ZipCacheLocator")
    assert cache == "False"
    # Adam's first step moves each element by the learning rate, float16 included.
    assert values == pytest.approx([0.9] * 8, abs=1e-3)


def test_the_kernels_cache_where_numba_can_write(tmp_path):
    # NUMBA_CACHE_DIR is numba's first choice: the kernels' machine code goes there.
    cache, _ = _run(NUMBA_CACHE_DIR=str(tmp_path))
    assert cache == "True"
    assert any(name.endswith(".nbi") for _, _, files in os.walk(tmp_path) for name in files)
