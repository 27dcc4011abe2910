"""Disk full (ENOSPC) at every system call of ``varstore convert``'s write path.

``convert`` writes its destination through ``varstore.checkpoint.store.AtomicFile``
(safetensors, .npz, PyTorch) or ``write_checkpoint`` (varstore), so every open,
write, fsync, close, rename and directory fsync goes through the seam
``varstore.checkpoint.fileio.syscall`` (see tests/test_write_faults.py). Here the
k-th call of a conversion fails, for every k. Promise: ``convert`` raises an
OSError with the injected errno that names the destination; the previous
destination file is byte-identical and no temporary file is left. The one
exception is the directory fsync after the rename: the new file is then in place
and complete, and the error says so.
"""
from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from devices.dtypes import bfloat16
from varstore.checkpoint import fileio, write_checkpoint
from varstore.checkpoint.format import is_temp_file
from varstore.tools import convert as conv
from varstore.tools.cli import main as cli

try:
    import torch
except ImportError:  # pragma: no cover - optional
    torch = None

PREVIOUS = b"previous contents of the destination"


class Injector:
    """Stands in for ``fileio.syscall``: records each call and fails the ``fail_at``-th
    (1-based) with OSError(ENOSPC). ``image`` rebuilds the file from what the writes
    moved, at the offsets they moved it to (zipfile seeks back to rewrite headers)."""

    def __init__(self, fail_at: int | None = None):
        self.fail_at = fail_at
        self.calls: list[str] = []
        self.image = bytearray()

    def __call__(self, op, fn, *args):
        self.calls.append(op)
        if len(self.calls) == self.fail_at:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if op != "write":
            return fn(*args)
        fd, data = args
        pos = os.lseek(fd, 0, os.SEEK_CUR)
        n = fn(*args)
        views = data if isinstance(data, list) else [data]  # os.writev or os.write
        moved = b"".join(bytes(memoryview(v).cast("B")) for v in views)[:n]
        self.image[pos:pos + n] = moved
        return n


@pytest.fixture
def source(tmp_path):
    """A small checkpoint: several tensors (one over the 8 KiB buffer of the .npz writer), bfloat16 included."""
    rng = np.random.default_rng(3)
    tensors = [("dense/kernel", rng.standard_normal((64, 48)).astype(np.float32)),
               ("dense/bias", np.arange(48, dtype=np.float32)),
               ("emb", np.array([[0x3F80, 0x8000], [0x7FC1, 0x0001]], np.uint16).view(bfloat16)),
               ("step", np.array(7, np.int64))]
    path = str(tmp_path / "src" / "model.ckpt")
    os.makedirs(os.path.dirname(path))
    write_checkpoint(path, tensors, fsync=False)
    return path


def _dst_dir(tmp_path):
    d = tmp_path / "out"
    d.mkdir(exist_ok=True)
    return d


def _temp_files(directory) -> list[str]:
    return [p.name for p in directory.iterdir() if is_temp_file(p.name)]


def _contents(path: str) -> dict:
    """Each tensor's dtype, shape and bytes (not the file's bytes: a .npz member written by
    zipfile's writestr carries the time it was written)."""
    with conv.open_tensors(path) as src:
        return {i.name: (str(i.dtype), i.shape, np.asarray(src.array(i.name)).tobytes()) for i in src.infos}


FORMATS = ["safetensors", "npz", "varstore",
           pytest.param("torch", marks=pytest.mark.skipif(torch is None, reason="torch is not installed"))]
EXT = {"varstore": ".ckpt", "safetensors": ".safetensors", "npz": ".npz", "torch": ".pt"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_byte_of_a_conversion_goes_through_the_seam(source, tmp_path, monkeypatch, fmt):
    d = _dst_dir(tmp_path)
    dst = d / f"model{EXT[fmt]}"
    spy = Injector()
    monkeypatch.setattr(fileio, "syscall", spy)
    conv.convert(source, str(dst), progress=False)
    assert spy.calls[0] == "open" and spy.calls[-3:] == ["close", "rename", "fsync_dir"]
    assert "fsync" in spy.calls
    assert bytes(spy.image) == dst.read_bytes()  # every byte went through the seam
    assert _temp_files(d) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_full_disk_at_any_call_leaves_the_previous_file(source, tmp_path, monkeypatch, fmt):
    d = _dst_dir(tmp_path)
    dst = d / f"model{EXT[fmt]}"
    spy = Injector()
    monkeypatch.setattr(fileio, "syscall", spy)
    conv.convert(source, str(d / f"clean{EXT[fmt]}"), progress=False)
    expected = _contents(str(d / f"clean{EXT[fmt]}"))
    calls = spy.calls
    for k, op in enumerate(calls, 1):
        dst.write_bytes(PREVIOUS)
        monkeypatch.setattr(fileio, "syscall", Injector(fail_at=k))
        # torch.save may report a failed write as its own RuntimeError ("unexpected pos"):
        # the file is still left alone.
        torch_write = fmt == "torch" and op == "write"
        with pytest.raises((OSError, RuntimeError) if torch_write else OSError) as raised:
            conv.convert(source, str(dst), overwrite=True, progress=False)
        e = raised.value
        if not (torch_write and isinstance(e, RuntimeError)):
            assert e.errno == errno.ENOSPC, (k, op, e)
            assert str(dst) in str(e), (k, op, e)
        assert _temp_files(d) == [], (k, op)
        if op == "fsync_dir":  # after the rename: the new file is in place, whole
            assert _contents(str(dst)) == expected
            assert "renamed into place" in str(e)
        else:
            assert dst.read_bytes() == PREVIOUS, (k, op)


@pytest.mark.parametrize("fmt, when", [("safetensors", "fsync"), ("safetensors", "rename"),
                                       ("npz", "fsync"), ("npz", "rename")])
def test_varstore_convert_command_fails_cleanly_on_a_full_disk(source, tmp_path, monkeypatch, capsys, fmt, when):
    """The command line: ``varstore convert --force`` over an existing file, the fsync or rename failing."""
    d = _dst_dir(tmp_path)
    dst = d / f"model{EXT[fmt]}"
    dst.write_bytes(PREVIOUS)

    def failing(op, fn, *args):
        if op == when:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return fn(*args)

    monkeypatch.setattr(fileio, "syscall", failing)
    try:
        rc = cli(["convert", source, str(dst), "--force", "--no-progress"])
    except OSError as e:  # main() may let an OSError through, or report it and return non-zero
        assert e.errno == errno.ENOSPC and str(dst) in str(e)
    else:
        assert rc != 0
        err = capsys.readouterr().err
        assert str(dst) in err and os.strerror(errno.ENOSPC) in err, err
    assert dst.read_bytes() == PREVIOUS
    assert _temp_files(d) == []
