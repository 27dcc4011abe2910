"""tf.train.checkpoint_exists and get_checkpoint_mtimes: TF 1.x's rules (``prefix.index`` first,
then the prefix itself; globs; missing prefixes skipped), for our checkpoints and TF bundles."""
from __future__ import annotations

import os

import pytest

import varstore as tf


@pytest.fixture(autouse=True)
def fresh_graph():
    tf.reset_default_graph()
    yield
    tf.reset_default_graph()


@pytest.fixture(params=["varstore", "tf"])
def saved(request, tmp_path):
    v = tf.Variable(1.0, name="v")
    saver = tf.train.Saver(format=request.param)
    with tf.Session() as sess:
        sess.run(v.initializer)
        paths = [saver.save(sess, str(tmp_path / "m.ckpt"), global_step=s) for s in (1, 2)]
    return tmp_path, paths


def test_checkpoint_exists(saved):
    d, (p1, p2) = saved
    assert tf.train.checkpoint_exists(p1) and tf.train.checkpoint_exists(p2)
    assert not tf.train.checkpoint_exists(str(d / "m.ckpt-9"))
    assert tf.train.checkpoint_exists(str(d / "m.ckpt-*"))  # a glob, as TF
    assert not tf.train.checkpoint_exists(str(d / "zz-*"))
    # Like TF it checks that a file is there, not what it holds: any path that exists counts.
    assert tf.train.checkpoint_exists(str(d))


def test_get_checkpoint_mtimes(saved):
    d, (p1, p2) = saved
    times = tf.train.get_checkpoint_mtimes([p1, str(d / "missing"), p2])
    assert len(times) == 2  # TF skips what matches nothing
    index_or_file = [p + ".index" if os.path.exists(p + ".index") else p for p in (p1, p2)]
    assert times == [float(int(os.path.getmtime(p))) for p in index_or_file]  # whole seconds, as TF
    assert tf.train.get_checkpoint_mtimes([]) == []
    assert len(tf.train.get_checkpoint_mtimes([str(d / "m.ckpt-*")])) == 1
    assert tf.train.get_checkpoint_mtimes(p1) == times[:1]  # one string is one prefix
