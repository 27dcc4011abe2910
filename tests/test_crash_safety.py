"""SIGKILL a process at random moments while it saves checkpoints in a loop.

The driver is ``scripts/crash_kill.py`` (its docstring lists every check made after
each kill); CI makes 30 kills at random moments of 16 MiB checkpoints, the script's
default is the long run (``--kills 500``, 32 MiB). Random moments rarely land in the
small meta and state files, so a second test kills a child at each system call of
a save, one by one, through the write path's seam (``fileio.syscall``).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "crash_kill.py"


def load_driver():
    spec = importlib.util.spec_from_file_location("crash_kill", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sigkill_while_saving_never_leaves_a_partial_checkpoint(tmp_path):
    driver = load_driver()
    stats = driver.run(30, str(tmp_path / "run"), seed=1234, mib=16, max_delay=0.4)
    print(f"crash safety: survived {stats['survived']} of {stats['kills']} kills, "
          f"{stats['saves_completed']} blocking + {stats['saves_queued']} async saves, "
          f"killed while writing: {stats['killed_while_writing']}, {stats['seconds']} s")
    assert stats["problems"] == []
    assert stats["kills"] == stats["survived"] == 30
    assert stats["saves_completed"] > 0 and stats["latest_step"] > 30


def _forked(fn) -> int:
    """Run ``fn`` in a forked child (this process has imported everything: a fork costs ~ms);
    return the child's wait status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            fn()
            code = 0
        finally:
            os._exit(code)
    return os.waitpid(pid, 0)[1]


def _save(driver, directory, step, mib, *, async_save=False, kill_at=None, count_to=None):
    """A child process that saves ``step`` (every variable holds it); with ``kill_at`` it SIGKILLs
    itself at that system call of the write path; with ``count_to`` it writes the number of calls."""
    import varstore as tf
    from varstore.checkpoint import fileio

    def child():
        tf.reset_default_graph()
        vs, gs = driver.build(mib)
        tf.global_variables_initializer().run()
        for v in vs:
            v.load(np.full(v.shape, step, v.dtype))
        gs.load(np.int64(step))
        calls = [0]

        def seam(op, fn, *args):
            calls[0] += 1
            if calls[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return fn(*args)

        fileio.syscall = seam
        out = tf.train.Saver(max_to_keep=2).save(None, os.path.join(directory, "model.ckpt"), global_step=gs,
                                                 async_save=async_save)
        if not isinstance(out, str):
            out.result()
        if count_to:
            Path(count_to).write_text(str(calls[0]))

    return _forked(child)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("async_save", [False, True], ids=["blocking", "async"])
def test_sigkill_at_every_system_call_of_a_save(tmp_path, async_save):
    """Deterministic kills: at each open, write, fsync, close, rename and directory fsync of a
    save (checkpoint, meta file, state file, with retention due), then the same checks."""
    driver = load_driver()
    mib = 1
    base = tmp_path / "base"
    base.mkdir()
    for step in (1, 2):
        assert _save(driver, str(base), step, mib) == 0
    count = tmp_path / "calls"
    shutil.copytree(base, tmp_path / "count")
    assert _save(driver, str(tmp_path / "count"), 3, mib, async_save=async_save, count_to=str(count)) == 0
    calls = int(count.read_text())
    assert calls >= 20
    print(f"crash safety: SIGKILL at each of the {calls} system calls of a{'n async' if async_save else ' blocking'} save")
    for k in range(1, calls + 1):
        d = tmp_path / f"kill-{k}"
        shutil.copytree(base, d)
        pids = set()
        status = _save(driver, str(d), 3, mib, async_save=async_save, kill_at=k)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (k, status)
        state = {"dead_pids": pids, "temps": set(), "saved_since": False, "had_state": True, "latest_step": 2}
        # Every temporary file left belongs to the killed child: its pid is the only one not alive.
        from varstore.checkpoint.format import temp_target
        pids.update(t[1] for t in map(temp_target, os.listdir(d)) if t is not None)
        assert len(pids) <= 1
        problems = driver.check_directory(str(d), mib, state)
        assert problems == [], (k, problems)
        assert state["latest_step"] in (2, 3)
        # The next save cleans up the dead writer's temporary files and goes on.
        assert _save(driver, str(d), 4, mib) == 0
        state["saved_since"] = True
        problems = driver.check_directory(str(d), mib, state)
        assert problems == [] and state["temps"] == set() and state["latest_step"] == 4, (k, problems)
        shutil.rmtree(d)
