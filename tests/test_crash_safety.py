"""SIGKILL a process at random moments while it saves checkpoints in a loop.

The driver is ``scripts/crash_kill.py`` (its docstring lists every check made after
each kill); CI makes 30 kills of 16 MiB checkpoints, the script's default is the long
run (``--kills 500``, 32 MiB).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

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
