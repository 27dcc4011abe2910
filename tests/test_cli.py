"""The ``varstore`` command: inspect and verify, with exit status 2 and one line for bad input."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import varstore as tf
from varstore.tools.cli import main


@pytest.fixture
def ckpt(tmp_path):
    tf.reset_default_graph()
    tf.Variable(np.arange(6, dtype=np.float32).reshape(2, 3), name="layer1/weights")
    tf.Variable(tf.zeros([3], dtype=tf.bfloat16), name="layer1/biases")
    tf.global_variables_initializer().run()
    saver = tf.train.Saver()
    paths = [saver.save(None, str(tmp_path / "model.ckpt"), global_step=s) for s in (1, 2)]
    tf.reset_default_graph()
    return paths


def corrupt_tensor(path: str, name: str) -> None:
    from varstore.checkpoint import CheckpointReader
    with CheckpointReader(path) as r:
        offset = r._index.offsets[r._pos(name)]
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x01]))


def test_inspect_prints_a_table(ckpt, capsys):
    assert main(["inspect", ckpt[-1]]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["name", "dtype", "shape", "bytes", "checksum"]
    rows = {line.split()[0]: line.split() for line in out[1:3]}
    assert rows["layer1/weights"][1] == "float32" and rows["layer1/weights"][-1] == "ok"
    assert rows["layer1/biases"][1] == "bfloat16"
    assert out[3].startswith("2 tensors")


def test_inspect_names_and_one_tensor(ckpt, capsys):
    assert main(["inspect", ckpt[-1], "--names"]) == 0
    assert capsys.readouterr().out.split() == ["layer1/biases", "layer1/weights"]
    assert main(["inspect", ckpt[-1], "--tensor", "layer1/weights"]) == 0
    out = capsys.readouterr().out
    assert "tensor_name:  layer1/weights" in out and "[3. 4. 5.]" in out


def test_inspect_marks_a_corrupt_tensor(ckpt, capsys):
    corrupt_tensor(ckpt[-1], "layer1/weights")
    assert main(["inspect", ckpt[-1]]) == 1
    captured = capsys.readouterr()
    assert "BAD" in captured.out and "layer1/weights" in captured.err


def test_verify_file_and_directory(ckpt, tmp_path, capsys):
    assert main(["verify", ckpt[-1]]) == 0
    assert main(["verify", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("ok ") >= 3
    corrupt_tensor(ckpt[0], "layer1/biases")
    assert main(["verify", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "CORRUPT" in out and "layer1/biases" in out


def test_verify_catches_a_corrupt_meta_file(ckpt, capsys):
    with open(ckpt[-1] + ".meta", "r+b") as f:
        f.write(b"\xc1\xc1\xc1")
    assert main(["verify", ckpt[-1]]) == 1
    assert "meta" in capsys.readouterr().out


@pytest.mark.parametrize("cmd", ["inspect", "verify"])
def test_missing_and_non_checkpoint_files_exit_2_with_one_line(tmp_path, cmd):
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    for target in (tmp_path / "missing.ckpt", tmp_path / "notes.txt"):
        r = subprocess.run([sys.executable, "-m", "varstore.tools.cli", cmd, str(target)],
                           capture_output=True, text=True)
        assert r.returncode == 2, (r.stdout, r.stderr)
        assert "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and str(target) in r.stderr


def test_console_script_is_installed():
    r = subprocess.run([sys.executable, "-c", "from importlib.metadata import entry_points;"
                        "print([e.value for e in entry_points(group='console_scripts') if e.name == 'varstore'])"],
                       capture_output=True, text=True)
    assert "varstore.tools.cli:main" in r.stdout


def test_inspect_and_verify_follow_a_sharded_checkpoints_shards(tmp_path, capsys):
    from tests.test_ps import _write_sharded
    path, tensors = _write_sharded(tmp_path)
    assert main(["inspect", path, "--names"]) == 0
    assert capsys.readouterr().out.split() == ["b", "step", "w"]
    shard = next(p for p in tmp_path.iterdir() if ".shard-1-" in p.name)
    raw = bytearray(shard.read_bytes())
    from varstore.checkpoint import CheckpointReader
    with CheckpointReader(str(shard)) as r:
        raw[r._index.offsets[r._pos("b")]] ^= 1
    shard.write_bytes(bytes(raw))
    assert main(["verify", path]) == 1
    out = capsys.readouterr().out
    assert "CORRUPT" in out and "'b'" in out


def test_verify_directory_reports_a_listed_non_checkpoint_and_goes_on(ckpt, tmp_path, capsys):
    with open(ckpt[0], "wb") as f:
        f.write(b"this is not a checkpoint at all\n")
    assert main(["verify", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "CORRUPT" in out and ckpt[0] in out
    assert f"ok       {ckpt[1]}" in out
