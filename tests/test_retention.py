"""Retention: the pure rules (tables), and the sweep of what killed saves left, across restarts."""
import os

import pytest

import varstore as tf
from varstore.train import retention

H = 3600.0


@pytest.mark.parametrize("history, max_to_keep, keep_hours, next_keep, keep, delete, preserved, next_after", [
    # fewer than max_to_keep: nothing goes
    ([("a", 1), ("b", 2)], 5, 10000, 1e12, ["a", "b"], [], [], 1e12),
    # the oldest go first, whatever order the history came in
    ([("c", 3), ("a", 1), ("b", 2)], 2, 10000, 1e12, ["b", "c"], ["a"], [], 1e12),
    ([("a", 1), ("b", 2), ("c", 3), ("d", 4)], 1, 10000, 1e12, ["d"], ["a", "b", "c"], [], 1e12),
    # None and 0 keep everything
    ([("a", 1), ("b", 2), ("c", 3)], None, 10000, 1e12, ["a", "b", "c"], [], [], 1e12),
    ([("a", 1), ("b", 2), ("c", 3)], 0, 10000, 1e12, ["a", "b", "c"], [], [], 1e12),
    # keep_checkpoint_every_n_hours: a dropped one past next_keep is preserved, next_keep moves on
    ([("a", 0), ("b", 2 * H), ("c", 3 * H)], 1, 1, 1 * H, ["c"], ["a"], ["b"], 2 * H),
    ([("a", 1.5 * H), ("b", 1.8 * H), ("c", 4 * H), ("d", 5 * H)], 1, 1, 1 * H, ["d"], ["b"], ["a", "c"], 3 * H),
])
def test_plan_table(history, max_to_keep, keep_hours, next_keep, keep, delete, preserved, next_after):
    p = retention.plan(history, max_to_keep, keep_hours, next_keep)
    assert p.keep == keep
    assert p.delete == delete
    assert p.preserved == preserved
    assert p.next_keep_time == next_after
    # every checkpoint ends up in exactly one place
    assert sorted(p.keep + p.delete + p.preserved) == sorted(n for n, _ in history)


@pytest.mark.parametrize("names, orphans", [
    (["m-1", "m-1.meta"], []),
    (["m-1.meta"], ["m-1.meta"]),
    (["m-1", "m-1.meta", "m-2.meta", "m-10.meta", "m-10"], ["m-2.meta"]),
    # not a numbered save of this prefix: never touched (a meta graph the user exported, another run's)
    (["m.meta", "m-x.meta", "mm-1.meta", "other-3.meta", "m-1.meta.bak"], []),
    # a checkpoint with its shards but no meta is not an orphan; a meta needs its main file
    (["m-4.shard-0-of-2.0123abcd", "m-4.meta"], ["m-4.meta"]),
])
def test_orphan_metas_table(names, orphans):
    assert retention.orphan_metas(names, "m", "meta") == orphans


def _vars():
    tf.reset_default_graph()
    v = tf.Variable(tf.ones([3]), name="v")
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
    return v


def test_a_new_saver_sweeps_orphaned_meta_files_and_dead_writers_temp_files(tmp_path):
    v = _vars()
    prefix = str(tmp_path / "model.ckpt")
    saver = tf.train.Saver(max_to_keep=2)
    for step in range(1, 4):
        saver.save(None, prefix, global_step=step)
    # What killed saves leave: meta files whose checkpoint was deleted (killed between the two
    # deletes of retention) or never kept, and a temporary file of a writer that is gone.
    for step in (1, 7):
        (tmp_path / f"model.ckpt-{step}.meta").write_bytes(b"left by a killed save")
    dead = tmp_path / ".model.ckpt-8.tmp-999999999-0123456789abcdef"
    dead.write_bytes(b"partial")
    exported = tmp_path / "model.ckpt.meta"  # exported by the user: not a numbered save
    exported.write_bytes(b"mine")
    unrelated = tmp_path / "other-5.meta"
    unrelated.write_bytes(b"not ours")
    # A restart: a new Saver, its first save into the directory.
    v.assign([5.0, 5.0, 5.0])
    tf.train.Saver(max_to_keep=2).save(None, prefix, global_step=4)
    names = sorted(os.listdir(tmp_path))
    assert "model.ckpt-1.meta" not in names and "model.ckpt-7.meta" not in names
    assert dead.name not in names
    assert exported.read_bytes() == b"mine" and unrelated.read_bytes() == b"not ours"
    # retention held across the restart: the two newest, each with its meta file
    assert [n for n in names if n.startswith("model.ckpt-")] == [
        "model.ckpt-3", "model.ckpt-3.meta", "model.ckpt-4", "model.ckpt-4.meta"]
    assert tf.train.latest_checkpoint(str(tmp_path)) == prefix + "-4"


def test_the_sweep_keeps_every_retained_checkpoint_and_its_meta(tmp_path):
    _vars()
    prefix = str(tmp_path / "model.ckpt")
    tf.train.Saver(max_to_keep=3).save(None, prefix, global_step=1)
    tf.train.Saver(max_to_keep=3).save(None, prefix, global_step=2)
    tf.train.Saver(max_to_keep=3).save(None, prefix, global_step=3)
    assert sorted(n for n in os.listdir(tmp_path) if not n.startswith(".")) == ["checkpoint", "model.ckpt-1", "model.ckpt-1.meta", "model.ckpt-2",
                                            "model.ckpt-2.meta", "model.ckpt-3", "model.ckpt-3.meta"]
