"""Two processes save into one directory at the same time, while a third polls the state file.

Promise: the state file is never torn, corrupt or missing; it always names a complete
checkpoint; every checkpoint file is whole (or absent); and the two writers share one
history (``max_to_keep`` holds for the directory, nobody's checkpoint is forgotten
in the state file nor deleted while the state file names it).

Each writer sets every variable of a save to one value that encodes (writer, round),
so a file mixing two saves is detected; every 4th round both writers save the same
path (``model.ckpt-<round>``), racing on the same file name.

Run as a script, this file is the writer and the reader (``writer DIR ID ROUNDS KEEP``,
``reader DIR STOP_FILE``), and the long run (``long RUNS ROUNDS``: the test RUNS times).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time

import numpy as np

SHAPES = [(256, 256), (1000,), (32, 32, 8)]
KEEP = 3


def step_of(wid: int, r: int) -> int:
    """The global step writer ``wid`` saves at round ``r``: shared by both writers every 4th round."""
    return r if r % 4 == 0 else 1000 * wid + r


def check_file(path: str) -> int:
    """Open and verify one checkpoint; every tensor must hold the same (writer, round) value,
    consistent with its global step. Returns that value. Raises AssertionError or OpError."""
    from varstore.checkpoint import CheckpointReader
    with CheckpointReader(path) as r:
        assert all(err is None for _, err in r.verify()), r.verify()
        value = int(r.get_tensor("code"))
        for i, shape in enumerate(SHAPES):
            t = r.get_tensor(f"v{i}")
            assert t.shape == shape and t.min() == t.max() == value, (path, i, t.min(), t.max(), value)
        wid, rnd = divmod(value, 100_000)
        assert r.extra["global_step"] == step_of(wid, rnd), (path, r.extra, value)
        assert path.endswith(f"model.ckpt-{step_of(wid, rnd)}"), (path, value)
        return value


def writer(directory: str, wid: int, rounds: int, keep: int) -> None:
    import varstore as tf
    vs = [tf.Variable(np.zeros(s, np.float32), name=f"v{i}") for i, s in enumerate(SHAPES)]
    code = tf.Variable(np.zeros((), np.int64), name="code")
    tf.global_variables_initializer().run()
    saver = tf.train.Saver(max_to_keep=keep)
    # Start together: each says it is ready and waits for the other.
    open(os.path.join(directory, f".ready-{wid}"), "w").close()
    deadline = time.monotonic() + 60
    while not all(os.path.exists(os.path.join(directory, f".ready-{w}")) for w in (1, 2)):
        assert time.monotonic() < deadline, "the other writer never started"
        time.sleep(0.001)
    for r in range(rounds):
        value = wid * 100_000 + r
        for v, s in zip(vs, SHAPES):  # the values to save: load sets them now, in graph mode too
            v.load(np.full(s, value, np.float32))
        code.load(np.int64(value))
        out = saver.save(None, os.path.join(directory, "model.ckpt"), global_step=step_of(wid, r),
                         async_save=r % 3 == 2)
        if not isinstance(out, str):
            out.result()
    saver.wait()


def reader(directory: str, stop_file: str) -> None:
    """Poll the state file until ``stop_file`` appears; print a JSON summary."""
    from devices.errors import NotFoundError
    from varstore.train import checkpoint_state as cs
    polls = opened = vanished = 0
    failures: list[str] = []
    seen_state = False
    parent = os.getppid()
    while not os.path.exists(stop_file) and len(failures) < 20 and os.getppid() == parent:
        polls += 1
        try:
            st = cs.get_checkpoint_state(directory)
        except Exception as e:  # noqa: BLE001 - every failure is reported
            failures.append(f"state file unreadable: {e!r}")
            continue
        if st is None:
            if seen_state:
                failures.append("state file missing after it existed")
            continue
        seen_state = True
        path = st.model_checkpoint_path
        for attempt in range(3):
            try:
                check_file(path)
                opened += 1
                break
            except NotFoundError:
                # Retention may delete it after a newer state file dropped it: fine only then.
                st2 = cs.get_checkpoint_state(directory)
                if path not in st2.all_model_checkpoint_paths + [st2.model_checkpoint_path]:
                    vanished += 1
                    break
                if attempt == 2:
                    failures.append(f"the state file names {path}, which does not exist")
            except Exception as e:  # noqa: BLE001
                failures.append(f"{path}: {e!r}")
                break
    print(json.dumps({"polls": polls, "opened": opened, "vanished": vanished, "failures": failures}))


def run_two_writers(directory: str, rounds: int, keep: int = KEEP) -> dict:
    """Both writers and the reader; returns the reader's summary plus the final checks' facts."""
    stop = os.path.join(os.path.dirname(directory), "stop-reader")
    here = os.path.abspath(__file__)
    rd = subprocess.Popen([sys.executable, here, "reader", directory, stop], stdout=subprocess.PIPE, text=True)
    try:
        ws = [subprocess.Popen([sys.executable, here, "writer", directory, str(w), str(rounds), str(keep)])
              for w in (1, 2)]
        for w in ws:
            assert w.wait(timeout=300) == 0
    finally:
        open(stop, "w").close()
        out, _ = rd.communicate(timeout=60)
    summary = json.loads(out)
    summary["rounds"] = rounds
    return summary


def final_checks(directory: str, keep: int = KEEP) -> None:
    import varstore as tf
    from varstore.checkpoint.format import is_temp_file
    from varstore.tools import cli
    from varstore.train.meta_graph import read_meta_graph
    st = tf.train.get_checkpoint_state(directory)
    assert st is not None and os.path.isfile(st.model_checkpoint_path)
    listed = st.all_model_checkpoint_paths
    assert len(listed) == keep and st.model_checkpoint_path in listed
    names = sorted(os.listdir(directory))
    assert not [n for n in names if is_temp_file(n)], names
    names = [n for n in names if not n.startswith(".ready-")]
    files = [os.path.join(directory, n) for n in names if n.startswith("model.ckpt-") and "." not in n[11:]]
    for f in files:
        check_file(f)
        read_meta_graph(f + ".meta")
    # One history for the directory: nothing on disk is missing from the state file, nothing
    # it lists is missing on disk.
    assert sorted(files) == sorted(listed), (files, listed)
    assert sorted(n for n in names if n.endswith(".meta")) == sorted(os.path.basename(p) + ".meta" for p in listed)
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert cli.main(["verify", directory]) == 0, out.getvalue()
    # The latest restores, consistently.
    tf.reset_default_graph()
    try:
        vs = [tf.Variable(np.zeros(s, np.float32), name=f"v{i}") for i, s in enumerate(SHAPES)]
        code = tf.Variable(np.zeros((), np.int64), name="code")
        tf.train.Saver().restore(None, tf.train.latest_checkpoint(directory))
        assert all(v.numpy().min() == v.numpy().max() == code.numpy() for v in vs)
    finally:
        tf.reset_default_graph()


def test_two_writers_share_a_directory(tmp_path):
    directory = tmp_path / "run"
    directory.mkdir()
    t0 = time.monotonic()
    summary = run_two_writers(str(directory), rounds=300)
    print(f"two writers: {summary} in {time.monotonic() - t0:.1f} s")
    assert summary["failures"] == [], summary
    assert summary["opened"] > 0
    final_checks(str(directory))


def long_run(runs: int, rounds: int) -> int:
    """``python tests/test_two_writers.py long RUNS ROUNDS``: the CI test, RUNS times, longer."""
    import shutil
    import tempfile
    total = {"runs": 0, "rounds": 0, "polls": 0, "opened": 0, "vanished": 0, "failed_runs": 0}
    for i in range(runs):
        base = tempfile.mkdtemp(prefix="two-writers-")
        directory = os.path.join(base, "run")
        os.mkdir(directory)
        summary = {"polls": 0, "opened": 0, "vanished": 0}
        try:
            summary = run_two_writers(directory, rounds)
            assert summary["failures"] == [], summary["failures"][:3]
            final_checks(directory)
        except AssertionError as e:
            total["failed_runs"] += 1
            print(f"run {i}: FAILED {e} (kept in {base})", flush=True)
        else:
            shutil.rmtree(base)
        total["runs"] += 1
        total["rounds"] += rounds
        for k in ("polls", "opened", "vanished"):
            total[k] += summary[k]
        print(f"run {i + 1}/{runs}: {summary}", flush=True)
    print(json.dumps(total))
    return 1 if total["failed_runs"] else 0


if __name__ == "__main__":
    if sys.argv[1] == "writer":
        writer(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    elif sys.argv[1] == "reader":
        reader(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "long":
        sys.exit(long_run(int(sys.argv[2]), int(sys.argv[3])))
    else:
        sys.exit(f"usage: {sys.argv[0]} writer DIR ID ROUNDS KEEP | reader DIR STOP_FILE | long RUNS ROUNDS")
