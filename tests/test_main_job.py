"""The main job (examples/train_digits.py): reaches >= 95% held-out accuracy, checkpoints,
and when stopped and run again resumes from the latest checkpoint."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("sklearn")

SCRIPT = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "train_digits.py")


def run(logdir, *args, timeout=180):
    return subprocess.run([sys.executable, SCRIPT, "--logdir", str(logdir), *args],
                          capture_output=True, text=True, timeout=timeout)


def test_trains_to_95_percent_and_inspects_its_checkpoint(tmp_path):
    r = run(tmp_path / "run")
    assert r.returncode == 0, r.stdout + r.stderr
    acc = float(r.stdout.split("final held-out accuracy:")[1].split()[0])
    assert acc >= 0.95
    assert "$ varstore inspect" in r.stdout and "layer1/weights/Adam" in r.stdout
    ckpts = sorted(p.name for p in (tmp_path / "run").glob("model.ckpt-*") if not p.name.endswith(".meta"))
    assert len(ckpts) == 3  # --keep 3 (max_to_keep)


def test_killed_and_rerun_it_resumes(tmp_path):
    logdir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, SCRIPT, "--logdir", str(logdir), "--steps", "100000",
                             "--save-every", "20", "--no-inspect"], stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:  # wait for a few checkpoints, then kill it mid-run
            if "saved model.ckpt-100" in line:
                break
        time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    r = run(logdir, "--steps", "600", "--save-every", "50", "--no-inspect")
    assert r.returncode == 0, r.stdout + r.stderr
    resumed = [line for line in r.stdout.splitlines() if line.startswith("resumed from")]
    assert resumed, r.stdout
    assert int(resumed[0].rsplit("step", 1)[1]) >= 100
