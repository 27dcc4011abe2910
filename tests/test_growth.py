"""Per-variable paths stay linear: the work at 4n variables is at most ~4.5x the work at n.

Work is counted, not timed: every Python function call and builtin call made while
the operation runs (``sys.setprofile``). A loop over the variables nested in another
loop over them (the Saver once rebuilt its variable map for every key; the meta graph
once scanned every collection for every variable) multiplies that count by 16 when n
grows 4x, far above the bound, whatever the machine's speed.
"""
from __future__ import annotations

import io
import os
import sys
from contextlib import redirect_stdout

import numpy as np
import pytest

import varstore as tf

N = 150
BOUND = 4.5


def count_calls(fn) -> int:
    calls = 0

    def hook(frame, event, arg):
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    sys.setprofile(hook)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return calls


def model(n: int, sess) -> list:
    tf.reset_default_graph()
    vs = [tf.Variable(np.full(16, i, np.float32), name=f"layer{i // 10}/v{i}") for i in range(n)]
    sess.run(tf.global_variables_initializer())
    return vs


def ratio(setup, op) -> float:
    """Calls of ``op`` at 4N variables over calls at N (``setup(n)`` builds its inputs)."""
    counts = []
    for n in (N, 4 * N):
        args = setup(n)
        op(*args)  # warm: first-use imports and caches are not per-variable work
        args = setup(n)
        counts.append(count_calls(lambda args=args: op(*args)))
    return counts[1] / counts[0]


@pytest.fixture
def sess():
    with tf.Session() as s:
        yield s


def _dir(tmp_path, n):
    d = tmp_path / f"n{n}"
    d.mkdir(exist_ok=True)
    return d


def _saver(tmp_path, sess, n):
    model(n, sess)
    return tf.train.Saver(max_to_keep=None), str(_dir(tmp_path, n) / "model.ckpt"), sess


def _saved(tmp_path, sess, n, meta=False):
    saver, path, _ = _saver(tmp_path, sess, n)
    return saver, saver.save(sess, path, write_meta_graph=meta)


# name: (setup(tmp_path, sess, n) -> args, op(*args))
CASES = {
    "Saver()": (lambda tp, s, n: (model(n, s),), lambda vs: tf.train.Saver()),
    "save": (_saver, lambda saver, p, s: saver.save(s, p, write_meta_graph=False)),
    "save with meta graph": (_saver, lambda saver, p, s: saver.save(s, p)),
    "async save": (_saver, lambda saver, p, s: saver.save(s, p, write_meta_graph=False, async_save=True).result()),
    "restore": (lambda tp, s, n: (*_saved(tp, s, n), s), lambda saver, p, s: saver.restore(s, p)),
    "global_variables_initializer": (lambda tp, s, n: (model(n, s), s),
                                     lambda vs, s: s.run(tf.global_variables_initializer())),
    "report_uninitialized_variables": (lambda tp, s, n: (model(n, s), s),
                                       lambda vs, s: s.run(tf.report_uninitialized_variables())),
    "export_meta_graph": (lambda tp, s, n: (model(n, s), str(_dir(tp, n) / "g.meta")),
                          lambda vs, p: tf.train.export_meta_graph(p)),
    "import_meta_graph": (lambda tp, s, n: (_saved(tp, s, n, meta=True)[1] + ".meta",),
                          lambda p: (tf.reset_default_graph(), tf.train.import_meta_graph(p))),
    "CheckpointReader + list_variables": (lambda tp, s, n: (_saved(tp, s, n)[1],),
                                          lambda p: tf.train.list_variables(p)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_per_variable_paths_are_linear(case, tmp_path, sess):
    setup, op = CASES[case]
    r = ratio(lambda n: setup(tmp_path, sess, n), op)
    assert r <= BOUND, f"{case}: {r:.2f}x the calls at 4x the variables (linear is ~4x)"


def test_apply_gradients_is_linear(sess):
    def setup(n):
        vs = model(n, sess)
        opt = tf.train.AdamOptimizer(0.01)
        grads = [(np.ones(16, np.float32), v) for v in vs]
        opt.apply_gradients(grads)  # slots exist: the steps after the first are the loop to measure
        return opt, grads

    assert ratio(setup, lambda opt, grads: opt.apply_gradients(grads)) <= BOUND


@pytest.mark.parametrize("command", ["inspect", "verify", "summary"])
def test_commands_are_linear(command, tmp_path, sess):
    from varstore.tools.cli import main

    def setup(n):
        _, path = _saved(tmp_path, sess, n, meta=True)
        return (path if command != "verify" else os.path.dirname(path)),

    def run(path):
        with redirect_stdout(io.StringIO()):
            main([command, path])

    assert ratio(setup, run) <= BOUND
