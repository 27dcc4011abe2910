"""Disk full (ENOSPC) and I/O errors (EIO) at every system call of the write path.

The seam is ``varstore.checkpoint.fileio.syscall``: every open of a temporary file,
write, fsync, close, rename and directory fsync of ``write_checkpoint``, of the meta
file and of the state file (and the open of the directory's lock file) goes through
it. A test replaces it with an :class:`Injector` that fails the k-th call, for every
k of a whole ``Saver.save`` (checkpoint, meta file, state file, retention).

Promise: the save raises an OSError with the injected errno that names the file;
the checkpoints already there and the state file stay byte-identical; no temporary
file is left (nor the new checkpoint: a failed save leaves nothing). The one
exception is the last call, the directory fsync after the state file's rename: by
then the new state file is in place, so it must name the new, complete checkpoint.
Then the same Saver saves again, and the directory is consistent.
"""
from __future__ import annotations

import collections
import errno
import os
import re
import shutil

import numpy as np
import pytest

import varstore as tf
from varstore.checkpoint import CheckpointReader, fileio, write_checkpoint
from varstore.checkpoint import format as fmt
from varstore.checkpoint.format import is_temp_file
from varstore.train.meta_graph import read_meta_graph

# Faults injected in this module, per (errno name or "short", call kind): printed at the end.
INJECTED: collections.Counter = collections.Counter()


class Injector:
    """Stands in for ``fileio.syscall``: counts the calls and fails the ``fail_at``-th
    (1-based) with OSError(``err``); with ``short=True`` that call, if it is a write,
    writes only part of its data instead (and the writer must carry on)."""

    def __init__(self, fail_at=None, err=errno.ENOSPC, short=False):
        self.fail_at, self.err, self.short = fail_at, err, short
        self.calls: list[str] = []
        self.injected = None

    def __call__(self, op, fn, *args):
        self.calls.append(op)
        if len(self.calls) != self.fail_at:
            return fn(*args)
        self.injected = op
        if self.short:
            if op != "write":
                return fn(*args)
            fd, data = args
            if isinstance(data, list):  # os.writev: half of the first buffer only
                first = memoryview(data[0]).cast("B")
                return fn(fd, [first[:max(1, first.nbytes // 2)]])
            view = memoryview(data).cast("B")
            return fn(fd, view[:max(1, view.nbytes // 2)])
        raise OSError(self.err, os.strerror(self.err))


@pytest.fixture(autouse=True)
def fresh_graph():
    tf.reset_default_graph()
    yield
    tf.reset_default_graph()


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    total = sum(INJECTED.values())
    print(f"\nwrite faults injected: {total}: " + ", ".join(f"{k[0]}@{k[1]}={n}" for k, n in sorted(INJECTED.items())))


def make_vars(step):
    """Tensors big enough for several write calls (over the writer's 256 KiB coalescing
    threshold) and small ones; every value is the step."""
    shapes = {"big/a": (300, 300), "big/b": (80_000,), "small/c": (3, 4), "small/d": ()}
    return [tf.Variable(np.full(s, step, np.float32), name=n) for n, s in shapes.items()]


def snapshot(directory):
    """{file name: bytes} of everything in the directory."""
    return {n: (directory / n).read_bytes() for n in sorted(os.listdir(directory))}


def base_directory(tmp_path):
    """A directory with two checkpoints (1, 2) of a max_to_keep=2 Saver: save 3 would delete 1."""
    base = tmp_path / "base"
    base.mkdir()
    vs = make_vars(0)
    saver = tf.train.Saver(max_to_keep=2)
    for step in (1, 2):
        for v in vs:
            v.load(np.full(v.shape, step, np.float32))
        saver.save(None, str(base / "model.ckpt"), global_step=step)
    for v in vs:
        v.load(np.full(v.shape, 3, np.float32))
    return base, vs


def check_consistent(directory, keep=2):
    """The state file parses, names existing complete checkpoints (all values = their step),
    every checkpoint on disk is listed, and no temporary file is left."""
    names = os.listdir(directory)
    assert not [n for n in names if is_temp_file(n)], names
    st = tf.train.get_checkpoint_state(str(directory))
    assert st is not None
    listed = st.all_model_checkpoint_paths
    assert st.model_checkpoint_path == listed[-1] and len(listed) <= keep
    on_disk = sorted(str(directory / n) for n in names if n.startswith("model.ckpt-") and not n.endswith(".meta"))
    assert on_disk == sorted(listed), (on_disk, listed)
    for p in listed:
        step = int(p.rsplit("-", 1)[1])
        with CheckpointReader(p) as r:
            assert all(e is None for _, e in r.verify())
            assert r.extra["global_step"] == step
            for n in r.names():
                assert (r.get_tensor(n) == step).all(), (p, n)
        read_meta_graph(p + ".meta")


def count_calls(tmp_path, base, vs, **save_args):
    d = tmp_path / "count"
    shutil.copytree(base, d)
    inj = Injector()
    saver = tf.train.Saver(max_to_keep=2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fileio, "syscall", inj)
        out = saver.save(None, str(d / "model.ckpt"), global_step=3, **save_args)
        if not isinstance(out, str):
            out.result()
    shutil.rmtree(d)
    return inj.calls


@pytest.mark.parametrize("async_save", [False, True], ids=["blocking", "async"])
def test_a_fault_at_every_call_of_a_save_leaves_everything_as_it_was(tmp_path, monkeypatch, async_save):
    base, vs = base_directory(tmp_path)
    before = snapshot(base)
    calls = count_calls(tmp_path, base, vs, async_save=async_save)
    # The whole path, in this order: the checkpoint is durable (fsync, rename, directory fsync)
    # before its meta file is written, both before the state file names them, under the lock.
    durable = r"open( write)+ fsync close rename fsync_dir"
    assert re.fullmatch(f"{durable} {durable} lock {durable}", " ".join(calls)), calls
    assert calls.count("write") >= 5, calls
    for err in (errno.ENOSPC, errno.EIO):
        for k in range(1, len(calls) + 1):
            d = tmp_path / f"{errno.errorcode[err]}-{k}"
            shutil.copytree(base, d)
            saver = tf.train.Saver(max_to_keep=2)
            inj = Injector(fail_at=k, err=err)
            with monkeypatch.context() as mp:
                mp.setattr(fileio, "syscall", inj)
                with pytest.raises(OSError) as info:
                    out = saver.save(None, str(d / "model.ckpt"), global_step=3, async_save=async_save)
                    if not isinstance(out, str):
                        out.result(timeout=60)
            INJECTED[(errno.errorcode[err], inj.injected)] += 1
            e = info.value
            assert inj.injected == calls[k - 1]
            assert e.errno == err and os.strerror(err) in str(e), e
            assert str(d) in str(e), f"the error names the file: {e}"
            after = snapshot(d)
            if k < len(calls):
                assert after == before, (k, calls[k - 1], set(after) ^ set(before))
            else:  # the state file was replaced, only its directory fsync failed
                assert not [n for n in after if is_temp_file(n)]
                assert {n: b for n, b in after.items() if n in before and n != "checkpoint"} == \
                    {n: b for n, b in before.items() if n != "checkpoint"}
                assert tf.train.latest_checkpoint(str(d)) == str(d / "model.ckpt-3")
                with CheckpointReader(str(d / "model.ckpt-3")) as r:
                    assert all(e is None for _, e in r.verify())
            # The same Saver goes on: an async failure is raised once more by the next save.
            if async_save:
                with pytest.raises(OSError):
                    saver.save(None, str(d / "model.ckpt"), global_step=4)
            for v in vs:
                v.load(np.full(v.shape, 4, np.float32))
            saver.save(None, str(d / "model.ckpt"), global_step=4)
            check_consistent(d)
            assert tf.train.latest_checkpoint(str(d)) == str(d / "model.ckpt-4")
            for v in vs:
                v.load(np.full(v.shape, 3, np.float32))
            shutil.rmtree(d)


def test_short_writes_are_continued(tmp_path, monkeypatch):
    """A write that moves only part of its data (what a nearly full disk does) is continued:
    the save succeeds with correct files."""
    base, vs = base_directory(tmp_path)
    calls = count_calls(tmp_path, base, vs)
    writes = [k for k, op in enumerate(calls, 1) if op == "write"]
    for k in writes:
        d = tmp_path / f"short-{k}"
        shutil.copytree(base, d)
        inj = Injector(fail_at=k, short=True)
        with monkeypatch.context() as mp:
            mp.setattr(fileio, "syscall", inj)
            tf.train.Saver(max_to_keep=2).save(None, str(d / "model.ckpt"), global_step=3)
        INJECTED[("short", "write")] += 1
        assert inj.calls.count("write") == calls.count("write") + 1  # one more call finished the write
        check_consistent(d)
        shutil.rmtree(d)


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EIO], ids=["ENOSPC", "EIO"])
def test_write_checkpoint_over_an_existing_file(tmp_path, monkeypatch, err):
    """write_checkpoint alone, multi-bin tensors, replacing a file: a fault at any call leaves
    the old file byte-identical and no temporary file."""
    monkeypatch.setattr(fmt, "MAX_BIN_BYTES", 320 << 10)  # pieces over the coalescing size
    rng = np.random.default_rng(0)
    tensors = [("a", rng.random(100_000)), ("b", np.arange(7, dtype=np.int16)), ("c", rng.random((400, 300)))]
    path = tmp_path / "model.ckpt"
    write_checkpoint(path, [("old", np.ones(3))])
    old = path.read_bytes()
    inj = Injector()
    with monkeypatch.context() as mp:
        mp.setattr(fileio, "syscall", inj)
        write_checkpoint(path, tensors)
    calls = inj.calls
    assert calls.count("write") > 5 and calls[-2:] == ["rename", "fsync_dir"]
    for k in range(1, len(calls)):  # all but the directory fsync, after which the new file is in place
        path.write_bytes(old)
        inj = Injector(fail_at=k, err=err)
        with monkeypatch.context() as mp:
            mp.setattr(fileio, "syscall", inj)
            with pytest.raises(OSError, match=os.strerror(err)) as info:
                write_checkpoint(path, tensors)
        INJECTED[(errno.errorcode[err], inj.injected)] += 1
        assert info.value.errno == err and str(path) in str(info.value)
        assert path.read_bytes() == old
        assert sorted(os.listdir(tmp_path)) == ["model.ckpt"]
