"""varstore.tools.convert and `varstore convert`: every format both ways, byte-identical
(bfloat16 included), name maps, hostile input refused, progress bars."""
from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

import varstore.progress as progress_mod
from devices.dtypes import bfloat16
from varstore import errors
from varstore.checkpoint import CheckpointReader, write_checkpoint
from varstore.progress import Progress
from varstore.tools import convert as conv
from varstore.tools.cli import main as cli

try:
    import torch
except ImportError:  # pragma: no cover - optional
    torch = None
try:
    import safetensors
    import safetensors.numpy
except ImportError:  # pragma: no cover - optional
    safetensors = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")
needs_safetensors = pytest.mark.skipif(safetensors is None, reason="safetensors is not installed")

EXT = {"varstore": ".ckpt", "safetensors": ".safetensors", "npz": ".npz", "torch": ".pt"}
ALL = ["varstore", "safetensors", "npz", "torch"]


def _tensors() -> dict[str, np.ndarray]:
    """Every supported dtype, with awkward shapes and bit patterns."""
    rng = np.random.default_rng(7)
    t: dict[str, np.ndarray] = {}
    for name in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"):
        info = np.iinfo(name)
        t[f"ints/{name}"] = np.array([info.min, -1 if info.min else 0, 0, 1, info.max], dtype=name).reshape(5, 1)
    t["floats/float16"] = np.array([1.0, -0.0, np.inf, -np.inf, 6e-8, 65504.0], np.float16)
    t["floats/float32"] = rng.standard_normal((17, 33)).astype(np.float32)
    t["floats/float64"] = np.array([np.pi, -0.0, 1e-310, np.nan], np.float64)
    # bfloat16: normal, negative zero, infinities, a subnormal and a NaN with payload, as raw bits.
    t["floats/bfloat16"] = np.array([0x3F80, 0x8000, 0x7F80, 0xFF80, 0x0001, 0x7FC1, 0x4049],
                                    np.uint16).view(bfloat16).reshape(7, 1)
    t["complex/complex64"] = np.array([1 + 2j, -3.5j], np.complex64)
    t["complex/complex128"] = np.array([1e300 + 1j], np.complex128)
    t["bools"] = np.array([[True, False], [False, True]])
    t["scalar"] = np.array(3.25, np.float32)
    t["empty"] = np.zeros((0, 4), np.float32)
    t["big/w"] = rng.standard_normal((512, 600)).astype(np.float32)  # > 1 MiB
    return t


def _supported(fmt: str, tensors: dict) -> dict:
    if fmt == "safetensors":  # no complex128 in safetensors
        return {k: v for k, v in tensors.items() if v.dtype != np.complex128}
    return tensors


def _assert_identical(path: str, expected: dict, fmt: str | None = None) -> None:
    with conv.open_tensors(path, fmt) as src:
        got = {i.name: np.asarray(src.array(i.name)) for i in src.infos}
    assert sorted(got) == sorted(expected)
    for name, want in expected.items():
        a = got[name]
        assert a.dtype == want.dtype, (name, a.dtype, want.dtype)
        assert a.shape == want.shape, name
        assert np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(want).tobytes(), name


@pytest.fixture
def source(tmp_path):
    t = _tensors()
    path = tmp_path / "model.ckpt"
    write_checkpoint(path, sorted(t.items()), extra={"global_step": 5}, fsync=False)
    return str(path), t


def _skip_missing(*fmts):
    if "torch" in fmts and torch is None:
        pytest.skip("torch is not installed")


# -- round trips -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mid", ["safetensors", "npz", "torch"])
def test_round_trip_through_each_format_is_byte_identical(source, tmp_path, mid):
    _skip_missing(mid)
    src, tensors = source
    want = _supported(mid, tensors)
    mid_path = str(tmp_path / f"mid{EXT[mid]}")
    back = str(tmp_path / "back.ckpt")
    only = {k: k for k in want} if len(want) == len(tensors) else None
    drop = {k: "" for k in tensors if k not in want}
    r = conv.convert(src, mid_path, name_map=drop or only, progress=False)
    assert (r.src_format, r.dst_format, r.tensors) == ("varstore", mid, len(want))
    assert r.nbytes == sum(a.nbytes for a in want.values())
    assert conv.detect_format(mid_path) == mid
    _assert_identical(mid_path, want)
    conv.convert(mid_path, back, progress=False)
    _assert_identical(back, want, "varstore")


@pytest.mark.parametrize("a", ALL)
@pytest.mark.parametrize("b", ALL)
def test_every_pair_of_formats(source, tmp_path, a, b):
    _skip_missing(a, b)
    src, tensors = source
    want = {k: v for k, v in tensors.items() if v.dtype != np.complex128 and k != "big/w"}
    first = str(tmp_path / f"a{EXT[a]}")
    conv.convert(src, first, name_map={k: "" for k in tensors if k not in want}, progress=False)
    second = str(tmp_path / f"b{EXT[b]}")
    conv.convert(first, second, progress=False)
    _assert_identical(second, want, b)


def test_varstore_extra_is_carried_and_source_recorded(source, tmp_path):
    src, _ = source
    out = str(tmp_path / "copy.ckpt")
    conv.convert(src, out, name_map={"big/": ""}, progress=False)
    with CheckpointReader(out) as r:
        assert r.extra["global_step"] == 5
        assert r.extra["converted_from"] == {"format": "varstore", "file": "model.ckpt"}
        assert not any(n.startswith("big/") for n in r.names())


# -- the reference libraries read what we write and we read what they write ------------------------------
@needs_safetensors
@needs_torch
def test_safetensors_library_reads_our_files_and_we_read_theirs(source, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file as torch_save_file
    src, tensors = source
    want = _supported("safetensors", tensors)
    ours = str(tmp_path / "ours.safetensors")
    conv.convert(src, ours, name_map={k: "" for k in tensors if k not in want}, progress=False)
    with safe_open(ours, framework="pt") as f:
        assert sorted(f.keys()) == sorted(want)
        assert f.metadata() == {"format": "pt"}
        for k in want:
            t = f.get_tensor(k)
            raw = t.view(torch.uint16).numpy() if t.dtype == torch.bfloat16 else t.numpy()
            assert raw.tobytes() == want[k].tobytes(), k
    theirs = str(tmp_path / "theirs.safetensors")
    torch_save_file({"w": torch.tensor([1.5, -2.0], dtype=torch.bfloat16), "b": torch.arange(3)}, theirs,
                    metadata={"format": "pt", "note": "x"})
    back = str(tmp_path / "theirs.ckpt")
    conv.convert(theirs, back, progress=False)
    with CheckpointReader(back) as r:
        assert r.dtype("w") == bfloat16 and r.get_tensor("w").tolist() == [1.5, -2.0]
        assert r.get_tensor("b").tolist() == [0, 1, 2]
        assert r.extra["safetensors_metadata"] == {"format": "pt", "note": "x"}
    again = str(tmp_path / "again.safetensors")
    conv.convert(back, again, progress=False)  # the metadata survives the round trip
    with safe_open(again, framework="pt") as f:
        assert f.metadata() == {"format": "pt", "note": "x"}


@needs_safetensors
def test_safetensors_numpy_reads_our_files(source, tmp_path):
    src, tensors = source
    want = {k: v for k, v in tensors.items() if v.dtype not in (np.complex128, bfloat16)}
    out = str(tmp_path / "np.safetensors")
    conv.convert(src, out, name_map={k: "" for k in tensors if k not in want}, progress=False)
    loaded = safetensors.numpy.load_file(out)
    for k, v in want.items():
        assert loaded[k].dtype == v.dtype and loaded[k].tobytes() == v.tobytes(), k


def test_npz_holds_bfloat16_as_uint16_bits_with_a_note(source, tmp_path):
    src, tensors = source
    out = str(tmp_path / "m.npz")
    conv.convert(src, out, progress=False)
    with np.load(out, allow_pickle=False) as z:  # plain numpy, no pickle
        assert z["floats/bfloat16"].dtype == np.uint16
        assert z["floats/bfloat16"].tobytes() == tensors["floats/bfloat16"].tobytes()
        assert json.loads(str(z["__varstore_dtypes__"])) == {"floats/bfloat16": "bfloat16"}
        assert z["floats/float32"].tobytes() == tensors["floats/float32"].tobytes()


def test_numpy_savez_files_convert(tmp_path):
    p = str(tmp_path / "plain.npz")
    big_endian = np.arange(4, dtype=">f4")
    fortran = np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3))
    np.savez(p, a=big_endian, f=fortran)
    out = str(tmp_path / "plain.ckpt")
    conv.convert(p, out, progress=False)
    with CheckpointReader(out) as r:
        assert r.get_tensor("a").tolist() == [0.0, 1.0, 2.0, 3.0]
        assert r.get_tensor("f").tolist() == fortran.tolist()
    out2 = str(tmp_path / "plain.safetensors")
    conv.convert(p, out2, progress=False)
    _assert_identical(out2, {"a": big_endian.astype("<f4"), "f": np.ascontiguousarray(fortran)})


@needs_torch
def test_torch_reads_our_files_and_we_read_state_dicts(source, tmp_path):
    src, tensors = source
    out = str(tmp_path / "m.pt")
    conv.convert(src, out, progress=False)
    sd = torch.load(out, weights_only=True)
    assert sd["floats/bfloat16"].dtype == torch.bfloat16
    assert sd["floats/bfloat16"].view(torch.uint16).numpy().tobytes() == tensors["floats/bfloat16"].tobytes()
    assert sd["ints/uint64"].numpy().tobytes() == tensors["ints/uint64"].tobytes()
    # A real model's state_dict, nested like a training checkpoint, with non-tensor leaves.
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)).to(torch.bfloat16)
    path = str(tmp_path / "train.pth")
    torch.save({"model": model.state_dict(), "epoch": 3, "opt": {"lr": 0.1}}, path)
    back = str(tmp_path / "train.ckpt")
    r = conv.convert(path, back, progress=False)
    assert r.tensors == len(model.state_dict())
    with CheckpointReader(back) as rd:
        for k, t in model.state_dict().items():
            a = rd.get_tensor(f"model/{k}")
            bits = t.view(torch.int16) if t.dtype == torch.bfloat16 else t
            assert a.tobytes() == bits.numpy().tobytes(), k
    # A non-contiguous (transposed) tensor is written in C order.
    tp = str(tmp_path / "t.pt")
    torch.save({"t": torch.arange(6.0).view(2, 3).t()}, tp)
    conv.convert(tp, str(tmp_path / "t.ckpt"), progress=False)
    assert CheckpointReader(str(tmp_path / "t.ckpt")).get_tensor("t").tolist() == [[0, 3], [1, 4], [2, 5]]


def test_dtype_the_destination_cannot_hold_is_refused_naming_the_tensor(source, tmp_path):
    src, _ = source
    out = tmp_path / "x.safetensors"
    with pytest.raises(errors.InvalidArgumentError, match="complex/complex128.*complex128"):
        conv.convert(src, str(out), progress=False)
    assert not out.exists() and not list(tmp_path.glob(".x.safetensors.tmp-*"))


# -- name maps -------------------------------------------------------------------------------------
@pytest.fixture
def small(tmp_path):
    path = str(tmp_path / "small.ckpt")
    t = {"dense/kernel": np.ones((2, 2), np.float32), "dense/bias": np.zeros(2, np.float32),
         "weights": np.arange(3, dtype=np.float32), "global_step": np.array(9, np.int64),
         "dense/kernel/Adam": np.zeros((2, 2), np.float32)}
    write_checkpoint(path, sorted(t.items()), fsync=False)
    return path, t


def _names(path):
    with conv.open_tensors(path) as s:
        return sorted(i.name for i in s.infos)


def test_name_map_exact_scope_drop_and_tf_suffix(small, tmp_path):
    src, _ = small
    out = str(tmp_path / "renamed.ckpt")
    r = conv.convert(src, out, name_map={"weights:0": "params:0", "dense/": "layer1/", "dense/kernel/Adam": "",
                                         "global_step": ""}, progress=False)
    assert _names(out) == ["layer1/bias", "layer1/kernel", "params"]
    assert sorted(r.dropped) == ["dense/kernel/Adam", "global_step"]


def test_name_map_errors(small, tmp_path):
    src, _ = small
    out = str(tmp_path / "x.ckpt")
    with pytest.raises(errors.InvalidArgumentError, match=r"match no tensor.*'weigths'.*closest.*'weights'"):
        conv.convert(src, out, name_map={"weigths": "w"}, progress=False)
    with pytest.raises(errors.InvalidArgumentError, match="would both be named 'w'"):
        conv.convert(src, out, name_map={"weights": "w", "global_step": "w"}, progress=False)
    with pytest.raises(errors.InvalidArgumentError, match="must end with '/'"):
        conv.convert(src, out, name_map={"dense/": "layer1"}, progress=False)
    assert not os.path.exists(out)


def test_parse_name_map_lines():
    assert conv.parse_name_map(["a=b", "", "# c=d", " x / = y/ ", "e=", "k=v=w"]) == \
        {"a": "b", "x /": "y/", "e": "", "k": "v=w"}
    with pytest.raises(errors.InvalidArgumentError, match="line 2: expected old=new"):
        conv.parse_name_map(["a=b", "nonsense"])
    with pytest.raises(errors.InvalidArgumentError, match="mapped twice"):
        conv.parse_name_map(["a=b", "a=c"])


def test_cli_convert_with_map_and_map_file(small, tmp_path, capsys):
    src, _ = small
    mapfile = tmp_path / "names.txt"
    mapfile.write_text("# TF 1.x names -> new names\ndense/ = layer1/\nglobal_step=\n")
    out = str(tmp_path / "cli.safetensors")
    assert cli(["convert", src, out, "--map", "weights=params", "--map-file", str(mapfile)]) == 0
    captured = capsys.readouterr()
    assert "4 tensors" in captured.out and "-> " + out in captured.out
    assert captured.err == ""  # not a terminal: no progress bar
    assert _names(out) == ["layer1/bias", "layer1/kernel", "layer1/kernel/Adam", "params"]
    assert cli(["convert", src, out]) == 2  # exists
    assert "already exists" in capsys.readouterr().err
    assert cli(["convert", src, out, "--force", "--to", "npz"]) == 0
    assert conv.detect_format(out) == "npz"  # content decides, not the extension
    assert cli(["convert", src, out, "--force", "--map-file", str(tmp_path / "missing.txt")]) == 2
    assert "missing.txt" in capsys.readouterr().err


# -- bad input ---------------------------------------------------------------------------------------------
class _Payload:
    """Unpickling this would create a marker file: a stand-in for arbitrary code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_bearing_npz_is_refused_and_never_loaded(tmp_path):
    marker = tmp_path / "PWNED"
    p = str(tmp_path / "evil.npz")
    np.savez(p, w=np.ones(3, np.float32), zz=np.array([_Payload(str(marker))], dtype=object))
    for dst in ("out.ckpt", "out.safetensors"):
        with pytest.raises(errors.InvalidArgumentError, match=r"evil.npz: array 'zz' holds Python objects.*refused"):
            conv.convert(p, str(tmp_path / dst), progress=False)
    with pytest.raises(errors.InvalidArgumentError, match="refused"):
        conv.open_tensors(p)
    assert not marker.exists()
    assert not (tmp_path / "out.ckpt").exists()


def test_npz_with_a_non_array_member_is_refused(tmp_path):
    p = str(tmp_path / "odd.npz")
    with zipfile.ZipFile(p, "w") as z:
        buf = io.BytesIO()
        np.save(buf, np.ones(2))
        z.writestr("a.npy", buf.getvalue())
        z.writestr("payload.pkl", pickle.dumps({"x": 1}))
    with pytest.raises(errors.InvalidArgumentError, match="cannot tell the format of .*odd.npz"):
        conv.convert(p, str(tmp_path / "o.ckpt"), progress=False)
    with pytest.raises(errors.InvalidArgumentError, match="'payload.pkl' is not a .npy array"):
        conv.convert(p, str(tmp_path / "o.ckpt"), src_format="npz", progress=False)


@needs_torch
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
def test_pickle_payload_in_torch_file_is_refused_and_never_executed(tmp_path, legacy):
    marker = tmp_path / "PWNED"
    p = str(tmp_path / "evil.pt")
    payload = {"w": torch.ones(2), "hook": _Payload(str(marker))}
    if legacy:
        with open(p, "wb") as f:
            pickle.dump(payload, f, protocol=2)
    else:
        torch.save(payload, p)
    with pytest.raises(errors.InvalidArgumentError, match=r"evil.pt: refused.*weights_only=True.*nothing in it was executed"):
        conv.convert(p, str(tmp_path / "out.ckpt"), progress=False)
    assert not marker.exists()
    assert not (tmp_path / "out.ckpt").exists()


def test_unknown_format_is_one_clear_error_naming_the_file(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello, not tensors\n")
    with pytest.raises(errors.InvalidArgumentError, match=r"cannot tell the format of .*notes.txt") as e:
        conv.convert(str(p), str(tmp_path / "o.ckpt"), progress=False)
    assert "Traceback" not in str(e.value)
    # The wrong extension does not fool detection, nor does a right one rescue garbage.
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"\x00" * 64)
    with pytest.raises(errors.InvalidArgumentError, match="fake.safetensors"):
        conv.convert(str(fake), str(tmp_path / "o.ckpt"), progress=False)
    with pytest.raises(errors.InvalidArgumentError, match="unknown format 'onnx'"):
        conv.convert(str(p), str(tmp_path / "o.ckpt"), src_format="onnx", progress=False)


def test_missing_source_and_destination_directory(small, tmp_path):
    src, _ = small
    with pytest.raises(errors.NotFoundError, match="nope.safetensors: no such file"):
        conv.convert(str(tmp_path / "nope.safetensors"), str(tmp_path / "o.ckpt"), progress=False)
    with pytest.raises(errors.NotFoundError, match="does not exist"):
        conv.convert(src, str(tmp_path / "no" / "dir" / "o.ckpt"), progress=False)
    with pytest.raises(errors.InvalidArgumentError, match="same file"):
        conv.convert(src, src, overwrite=True, progress=False)


def _safetensors_file(path, header: dict, data: bytes = b"", raw_header: bytes | None = None):
    raw = raw_header if raw_header is not None else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return str(path)


@pytest.mark.parametrize("case, header, data, match", [
    ("offsets outside", {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8, "outside"),
    ("size mismatch", {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, b"\0" * 16, "needs 16"),
    ("overlap", {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                 "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12, "overlap"),
    ("negative", {"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}, b"", "non-negative"),
    ("huge shape", {"w": {"dtype": "F32", "shape": [2**62, 2**62], "data_offsets": [0, 4]}}, b"\0" * 4, "needs"),
    ("not an object", ["w"], b"", "not a JSON object"),
    ("missing fields", {"w": {"dtype": "F32"}}, b"", "needs dtype, shape and data_offsets"),
    ("bad metadata", {"__metadata__": {"k": 1}}, b"", "__metadata__"),
])
def test_hostile_safetensors_is_data_loss(tmp_path, case, header, data, match):
    p = _safetensors_file(tmp_path / "bad.safetensors", header, data)
    with pytest.raises(errors.DataLossError, match=f"bad.safetensors: .*{match}"):
        conv.convert(p, str(tmp_path / "o.ckpt"), progress=False)


def test_safetensors_bad_json_and_unsupported_dtype(tmp_path):
    p = _safetensors_file(tmp_path / "j.safetensors", {}, raw_header=b"{not json" + b" " * 8)
    with pytest.raises(errors.DataLossError, match="not JSON"):
        conv.convert(p, str(tmp_path / "o.ckpt"), progress=False)
    p = _safetensors_file(tmp_path / "f8.safetensors", {"w": {"dtype": "F8_E4M3", "shape": [2],
                                                              "data_offsets": [0, 2]}}, b"\0\0")
    with pytest.raises(errors.InvalidArgumentError, match="'w' has safetensors dtype F8_E4M3"):
        conv.convert(p, str(tmp_path / "o.ckpt"), progress=False)


@needs_torch
def test_truncated_torch_file_is_data_loss(small, tmp_path):
    src, _ = small
    out = tmp_path / "m.pt"
    conv.convert(src, str(out), progress=False)
    data = out.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    with pytest.raises(errors.OpError, match="m.pt"):
        conv.convert(str(out), str(tmp_path / "o.ckpt"), src_format="torch", progress=False)


@pytest.mark.parametrize("dst", ["out.safetensors", "out.npz", "out.ckpt"])
def test_a_failed_conversion_leaves_nothing_behind(small, tmp_path, monkeypatch, dst):
    src, _ = small
    target = tmp_path / dst
    target.write_bytes(b"previous contents")
    calls = []

    def failing(self, name):
        calls.append(name)
        if len(calls) == 3:
            raise errors.DataLossError(f"{self.path}: tensor {name!r}: injected failure")
        return self._reader.get_tensor(name)

    monkeypatch.setattr(conv.VarstoreSource, "array", failing)
    with pytest.raises(errors.DataLossError, match="injected"):
        conv.convert(src, str(target), overwrite=True, progress=False)
    assert target.read_bytes() == b"previous contents"
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


# -- progress --------------------------------------------------------------------------------------------------
class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_disabled_costs_nothing_and_prints_nothing():
    out = _Tty()
    with Progress(100, "x", enabled=False, file=out) as bar:
        bar.update(60)
        bar.update(40)
    assert out.getvalue() == "" and bar.done == 100 and not bar.enabled
    assert not hasattr(bar, "_lock")  # no lock, no clock when disabled


def test_progress_auto_follows_the_terminal(monkeypatch):
    monkeypatch.delenv("VARSTORE_PROGRESS", raising=False)
    assert not Progress(1, file=io.StringIO()).enabled
    assert Progress(1, file=_Tty()).enabled
    monkeypatch.setenv("VARSTORE_PROGRESS", "0")
    assert not Progress(1, file=_Tty()).enabled
    assert Progress(1, file=io.StringIO(), enabled=True).enabled


def test_progress_draws_bytes_rate_and_finishes_the_line():
    out = _Tty()
    with Progress(4 << 20, "save model.ckpt", file=out, delay=0) as bar:
        bar.update(1 << 20)
    text = out.getvalue()
    assert text.startswith("\rsave model.ckpt:  25%") and text.endswith("\n")
    assert "1.0 MiB/4.0 MiB" in text and "/s" in text


def test_progress_waits_for_the_delay():
    out = _Tty()
    with Progress(10, "quick", file=out, delay=60) as bar:
        bar.update(10)
    assert out.getvalue() == ""  # work shorter than the delay shows nothing


def test_convert_shows_a_bar_on_a_terminal_only(small, tmp_path, monkeypatch, capsys):
    src, _ = small
    monkeypatch.setattr(progress_mod, "DEFAULT_DELAY", 0.0)
    monkeypatch.delenv("VARSTORE_PROGRESS", raising=False)
    conv.convert(src, str(tmp_path / "a.npz"))  # stderr is not a terminal under pytest
    assert capsys.readouterr().err == ""
    tty = _Tty()
    monkeypatch.setattr("sys.stderr", tty)
    conv.convert(src, str(tmp_path / "b.npz"))
    assert "convert small.ckpt: 100%" in tty.getvalue()
    tty2 = _Tty()
    monkeypatch.setattr("sys.stderr", tty2)
    conv.convert(src, str(tmp_path / "c.npz"), progress=False)
    assert tty2.getvalue() == ""


def test_npz_header_that_overstates_its_data_is_refused_before_allocating(tmp_path):
    p = str(tmp_path / "liar.npz")
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (1 << 40,)})
    buf.write(np.zeros(4, np.float32).tobytes())  # 16 bytes where the header claims 4 TiB
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("w.npy", buf.getvalue())
    with pytest.raises(errors.DataLossError, match=r"liar.npz: member 'w.npy': its header declares 4398046511104 "
                                                   r"bytes .* holds 16"):
        conv.convert(p, str(tmp_path / "o.ckpt"), progress=False)


def test_compressed_npz_and_a_saver_directory_convert(tmp_path):
    p = str(tmp_path / "c.npz")
    np.savez_compressed(p, w=np.arange(1000, dtype=np.int32))
    conv.convert(p, str(tmp_path / "c.ckpt"), progress=False)
    assert CheckpointReader(str(tmp_path / "c.ckpt")).get_tensor("w").sum() == 499500
    import varstore as tf
    tf.reset_default_graph()
    v = tf.Variable(tf.ones([3]), name="v")
    d = tmp_path / "run"
    d.mkdir()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        saver = tf.train.Saver()
        saver.save(sess, str(d / "model.ckpt"), global_step=1)
        sess.run(v.assign([2.0, 2.0, 2.0]))
        saver.save(sess, str(d / "model.ckpt"), global_step=2)
    r = conv.convert(str(d), str(tmp_path / "latest.npz"), progress=False)
    assert r.src.endswith("model.ckpt-2")
    with np.load(str(tmp_path / "latest.npz")) as z:
        assert z["v"].tolist() == [2.0, 2.0, 2.0]
    tf.reset_default_graph()
