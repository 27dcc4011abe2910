#!/usr/bin/env python3
"""Kill (SIGKILL) a process that saves checkpoints in a loop, at random moments, and check
the directory after every kill.

    python scripts/crash_kill.py --kills 500            # the long run
    python scripts/crash_kill.py --kills 30 --mib 16    # about what CI runs (tests/test_crash_safety.py)

The child restores the latest checkpoint (if any), then saves in a tight loop,
alternating blocking and ``async_save=True`` saves, into one directory with
``max_to_keep=3``. Every variable (float32, float64, int32, int64; some tensors span
several msgpack bins) holds the step number, so a checkpoint mixing two saves is
caught. The parent kills it after a random delay and checks:

- ``latest_checkpoint`` names the state file's newest checkpoint, which exists and
  restores (a real ``Saver.restore``) with every variable, the global step and the
  index's ``global_step`` equal; the latest step never goes back;
- every path the state file lists exists; every file named like a checkpoint
  (``model.ckpt-N``) passes ``CheckpointReader.verify()`` and is consistent, every
  meta file reads; ``varstore verify DIR`` exits 0;
- temporary files left by the kill belong to dead writers and are gone once the
  next child's first save is done (its Saver removes them).

Exit status 0 when every kill was survived. Prints one line per kill with ``-v``.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

DTYPES = ("float32", "float32", "float64", "int32", "int64", "float32")
CKPT = re.compile(r"\Amodel\.ckpt-([0-9]+)\Z")
META = re.compile(r"\Amodel\.ckpt-([0-9]+)\.meta\Z")


def shapes_for(mib: float) -> list[tuple[int, ...]]:
    """Shapes of the variables: about ``mib`` MiB in all."""
    per = max(1, int(mib * (1 << 20) / len(DTYPES)))
    out = []
    for i, dt in enumerate(DTYPES):
        n = max(1, per // np.dtype(dt).itemsize)
        out.append((n // 64, 64) if i % 2 == 0 and n >= 64 else (n,))
    return out


def build(mib: float):
    """The variables and the global step, in the default graph."""
    import varstore as tf
    vs = [tf.Variable(np.zeros(s, dt), name=f"layer{i}/w") for i, (s, dt) in enumerate(zip(shapes_for(mib), DTYPES))]
    return vs, tf.train.get_or_create_global_step()


# -- the child: save in a loop until killed ------------------------------------------------------
def child(directory: str, mib: float, bin_kib: int, saves: int) -> None:
    import varstore as tf
    from varstore.checkpoint import format as fmt
    if bin_kib:
        fmt.MAX_BIN_BYTES = bin_kib << 10  # tensors span several bins
    vs, gs = build(mib)
    saver = tf.train.Saver(max_to_keep=3)
    latest = tf.train.latest_checkpoint(directory)
    if latest:
        saver.restore(None, latest)
        step = int(gs.numpy())
        for v in vs:
            a = v.numpy()
            if not (a == step).all():
                print(f"inconsistent restore of {latest}: {v.name} holds {a.min()}..{a.max()}, step {step}", flush=True)
                sys.exit(3)
    else:
        tf.global_variables_initializer().run()
        step = 0
    print(f"ready {step}", flush=True)
    life = 0
    while saves <= 0 or life < saves:
        step += 1
        for v in vs:
            v.load(np.full(v.shape, step, v.dtype))
        gs.load(np.int64(step))
        out = saver.save(None, os.path.join(directory, "model.ckpt"), global_step=gs, async_save=life % 2 == 1)
        print(f"{'saved' if isinstance(out, str) else 'queued'} {step}", flush=True)
        life += 1
    saver.wait()


# -- the parent: kill and check ------------------------------------------------------------------
def check_directory(directory: str, mib: float, state: dict) -> list[str]:
    """Every check after a kill; returns the problems found (empty: the kill was survived)."""
    import varstore as tf
    from varstore.checkpoint import CheckpointReader
    from varstore.checkpoint.format import temp_target
    from varstore.tools import cli
    from varstore.train.meta_graph import read_meta_graph
    problems = []
    names = sorted(os.listdir(directory))
    # Temporary files: only dead writers', and last kill's are gone once a save ran since.
    temps = {n for n in names if temp_target(n) is not None}
    for n in temps:
        pid = temp_target(n)[1]
        if pid not in state["dead_pids"]:
            problems.append(f"temporary file {n} of a writer that is not one we killed")
    if state["saved_since"]:
        left = temps & state["temps"]
        if left:
            problems.append(f"stale temporary files survived the next Saver: {sorted(left)}")
    state["temps"] = temps
    # The state file and the latest checkpoint.
    try:
        st = tf.train.get_checkpoint_state(directory)
    except Exception as e:  # noqa: BLE001
        return problems + [f"state file unreadable: {e!r}"]
    if st is None:
        if state["had_state"]:
            problems.append("the state file disappeared")
        return problems
    state["had_state"] = True
    for p in st.all_model_checkpoint_paths:
        if not os.path.isfile(p):
            problems.append(f"the state file lists {p}, which does not exist")
    latest = tf.train.latest_checkpoint(directory)
    if latest is None or latest != st.model_checkpoint_path:
        problems.append(f"latest_checkpoint is {latest}, the state file names {st.model_checkpoint_path}")
    else:
        tf.reset_default_graph()
        try:
            vs, gs = build(mib)
            tf.train.Saver().restore(None, latest)
            step = int(gs.numpy())
            if not latest.endswith(f"-{step}"):
                problems.append(f"{latest} restores global step {step}")
            for v in vs:
                if not (v.numpy() == step).all():
                    problems.append(f"{latest}: {v.name} is not all {step}")
            if step < state["latest_step"]:
                problems.append(f"the latest step went back from {state['latest_step']} to {step}")
            state["latest_step"] = step
        except Exception as e:  # noqa: BLE001
            problems.append(f"restoring {latest}: {e!r}")
        finally:
            tf.reset_default_graph()
    # Every file under a checkpoint's name is whole.
    for n in names:
        path = os.path.join(directory, n)
        m = CKPT.match(n)
        if m:
            try:
                with CheckpointReader(path) as r:
                    bad = [(t, e) for t, e in r.verify() if e is not None]
                    if bad:
                        problems.append(f"{n} fails verify: {bad[:2]}")
                    elif r.extra.get("global_step") != int(m.group(1)):
                        problems.append(f"{n} holds global step {r.extra.get('global_step')}")
                    elif not all((r.get_tensor(t) == int(m.group(1))).all() for t in r.names()):
                        problems.append(f"{n} mixes values of several steps")
            except Exception as e:  # noqa: BLE001
                problems.append(f"{n}: {e!r}")
        elif META.match(n):
            try:
                read_meta_graph(path)
            except Exception as e:  # noqa: BLE001
                problems.append(f"{n}: {e!r}")
    with contextlib.redirect_stdout(io.StringIO()) as out:
        rc = cli.main(["verify", directory])
    if rc != 0:
        problems.append(f"varstore verify exits {rc}: {out.getvalue()[-500:]}")
    return problems


def leftover_kind(name: str) -> str:
    """What a temporary file was going to be: the kill's phase."""
    from varstore.checkpoint.format import temp_target
    target = temp_target(name)[0]
    return "state file" if target == "checkpoint" else "meta file" if target.endswith(".meta") else "checkpoint"


def run(kills: int, directory: str, *, seed: int = 0, mib: float = 16, bin_kib: int = 1024,
        max_delay: float = 0.4, verbose: bool = False, log=print) -> dict:
    """Make ``kills`` kills; return counts and every problem found."""
    rng = random.Random(seed)
    os.makedirs(directory, exist_ok=True)
    here = os.path.abspath(__file__)
    state = {"dead_pids": set(), "temps": set(), "saved_since": False, "had_state": False, "latest_step": 0}
    stats = {"kills": 0, "survived": 0, "saves_completed": 0, "saves_queued": 0, "problems": [],
             "killed_while_writing": collections.Counter(), "seconds": 0.0}
    t0 = time.monotonic()
    cmd = [sys.executable, here, "--child", directory, "--mib", str(mib), "--bin-kib", str(bin_kib)]
    for k in range(kills):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        first = proc.stdout.readline()
        if not first.startswith("ready"):
            proc.kill()
            rest = proc.communicate()[0]
            stats["problems"].append(f"kill {k}: the child did not start: {first}{rest}")
            break
        time.sleep(rng.choice([0.0, rng.uniform(0, max_delay), rng.uniform(0, max_delay)]))
        os.kill(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate()
        stats["kills"] += 1
        state["dead_pids"].add(proc.pid)
        lines = rest.splitlines()
        saved = sum(1 for ln in lines if ln.startswith("saved"))
        stats["saves_completed"] += saved
        stats["saves_queued"] += sum(1 for ln in lines if ln.startswith("queued"))
        state["saved_since"] = saved > 0  # the first save of a life is a blocking one
        problems = check_directory(directory, mib, state)
        for n in state["temps"]:
            if temp_target_pid(n) == proc.pid:
                stats["killed_while_writing"][leftover_kind(n)] += 1
        if problems:
            stats["problems"].append({"kill": k, "pid": proc.pid, "problems": problems})
        else:
            stats["survived"] += 1
        if verbose:
            log(f"kill {k + 1}/{kills}: pid {proc.pid} after {saved} saves, step {state['latest_step']}, "
                f"{problems or 'OK'}")
    # A last child saves twice and exits normally: it cleans up every temporary file left.
    proc = subprocess.run(cmd + ["--saves", "2"], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        stats["problems"].append(f"final child failed: {proc.stdout[-500:]} {proc.stderr[-2000:]}")
    state["saved_since"] = True
    final = check_directory(directory, mib, state)
    if state["temps"]:
        final.append(f"temporary files left after a clean save: {sorted(state['temps'])}")
    names = set(os.listdir(directory))
    orphans = sorted(n for n in names if n.endswith(".meta") and n[:-len(".meta")] not in names)
    if orphans:  # meta files whose checkpoint a killed save deleted: the next Saver sweeps them
        final.append(f"meta files without their checkpoint after a clean save: {orphans}")
    if final:
        stats["problems"].append({"kill": "final", "problems": final})
    # Whole checkpoints the state file does not list (a kill between the state file's update and
    # retention's deletion, or between a checkpoint's rename and the state update): not partial,
    # but never deleted by retention later.
    import varstore as tf
    st = tf.train.get_checkpoint_state(directory)
    listed = {os.path.basename(p) for p in (st.all_model_checkpoint_paths if st else [])}
    stats["unlisted_whole_checkpoints"] = sorted(n for n in os.listdir(directory) if CKPT.match(n) and n not in listed)
    stats["latest_step"] = state["latest_step"]
    stats["seconds"] = round(time.monotonic() - t0, 1)
    stats["killed_while_writing"] = dict(stats["killed_while_writing"])
    return stats


def temp_target_pid(name: str):
    from varstore.checkpoint.format import temp_target
    t = temp_target(name)
    return t[1] if t else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mib", type=float, default=32, help="checkpoint size (MiB)")
    ap.add_argument("--bin-kib", type=int, default=1024, help="msgpack bin size, so tensors span several (0: default)")
    ap.add_argument("--max-delay", type=float, default=0.5, help="longest wait before a kill (s)")
    ap.add_argument("--dir", help="directory to save into (default: a new temporary one)")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--child", metavar="DIR", help=argparse.SUPPRESS)
    ap.add_argument("--saves", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.mib, args.bin_kib, args.saves)
        return 0
    directory = args.dir or tempfile.mkdtemp(prefix="crash-kill-")
    stats = run(args.kills, directory, seed=args.seed, mib=args.mib, bin_kib=args.bin_kib,
                max_delay=args.max_delay, verbose=args.verbose)
    print(json.dumps(stats, indent=1, default=str))
    print(f"survived {stats['survived']} of {stats['kills']} kills ({stats['saves_completed']} blocking saves "
          f"completed, {stats['saves_queued']} async saves queued, latest step {stats['latest_step']}) "
          f"in {stats['seconds']} s; directory {directory}")
    return 0 if not stats["problems"] and stats["survived"] == stats["kills"] == args.kills else 1


if __name__ == "__main__":
    sys.exit(main())
