"""Against real TensorFlow: what TF writes, varstore reads; what varstore writes, TF reads.

TensorFlow runs in its own interpreter (``tests/fixtures/tf/oracle.py``), so that it
can live in a separate virtualenv from the one under test: set ``VARSTORE_TF_PYTHON``
to a Python with tensorflow-cpu installed (.ci/run does), or install tensorflow in
the test environment. Without either, every test here is skipped; the committed
fixtures still cover reading (tests/test_tf_bundle.py).
"""
from __future__ import annotations

import base64
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import varstore as tf
from varstore.checkpoint.tf import TFBundleReader, object_names, sstable, write_bundle

FIX = Path(__file__).resolve().parent / "fixtures" / "tf"
ORACLE = FIX / "oracle.py"
_spec = importlib.util.spec_from_file_location("tf_fixture_values", FIX / "values.py")
values = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(values)


def _tf_python() -> str | None:
    env = os.environ.get("VARSTORE_TF_PYTHON")
    if env:
        return env
    return sys.executable if importlib.util.find_spec("tensorflow") is not None else None


TF_PYTHON = _tf_python()
pytestmark = pytest.mark.skipif(TF_PYTHON is None, reason="needs TensorFlow: set VARSTORE_TF_PYTHON or install it")


def oracle(*args: str) -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    r = subprocess.run([TF_PYTHON, str(ORACLE), *args], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]


def _load(dump: dict) -> np.ndarray:
    if dump["dtype"] == "string":
        return np.array([base64.b64decode(x) for x in dump["strings"]], dtype=object).reshape(dump["shape"])
    return np.frombuffer(base64.b64decode(dump["bytes"]), dtype=values.np_dtype(dump["dtype"])).reshape(dump["shape"])


def tf_read(cmd: str, prefix: Path, tmp_path: Path) -> dict[str, np.ndarray]:
    out = tmp_path / f"{cmd}-{prefix.name}.json"
    oracle(cmd, str(prefix), str(out))
    return {n: _load(d) for n, d in json.loads(out.read_text()).items()}


def same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype == object or b.dtype == object:
        return a.shape == b.shape and a.tolist() == b.tolist()
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.fixture(scope="module")
def tf_written(tmp_path_factory):
    """Every fixture kind, written afresh by this TensorFlow."""
    d = tmp_path_factory.mktemp("tf_written")
    oracle("write", str(d))
    return d


def test_fresh_tf_fixtures_read_bit_exactly(tf_written):
    with TFBundleReader(tf_written / "v1_dtypes" / "model.ckpt-7") as r:
        for n, a in {**values.dtype_vars(), **values.STRINGS}.items():
            assert same(r.get_tensor(n), a), n
    with TFBundleReader(tf_written / "v1_partitioned" / "model.ckpt-1") as r:
        for n, a in values.partitioned_vars().items():
            assert same(r.get_tensor(n), a), n
    with TFBundleReader(tf_written / "v1_sharded" / "model.ckpt-2") as r:
        assert len(r.files) == 3
        for n, (_, a) in values.sharded_vars().items():
            assert same(r.get_tensor(n), a), n
    names = object_names(tf_written / "tf2_object" / "ckpt-1", by="full_name")
    with TFBundleReader(tf_written / "tf2_object" / "ckpt-1") as r:
        got = {names[k]: r.get_tensor(k) for k in names}
    for n, a in values.object_vars().items():
        assert same(got[n], a), n


def test_tf_state_files_resolve(tf_written):
    # compat.v1 Saver(save_relative_paths=True) and CheckpointManager both write relative paths.
    for kind, name in (("v1_dtypes", "model.ckpt-7"), ("tf2_object", "ckpt-1")):
        assert tf.train.latest_checkpoint(str(tf_written / kind)) == str(tf_written / kind / name)


def test_committed_fixtures_match_what_this_tf_writes(tf_written):
    """The committed fixtures are what TF writes today (tables equal entry for entry; data equal)."""
    for kind, name in (("v1_dtypes", "model.ckpt-7"), ("v1_partitioned", "model.ckpt-1"),
                       ("v1_sharded", "model.ckpt-2")):
        ours = sstable.read_table((FIX / kind / f"{name}.index").read_bytes())
        fresh = sstable.read_table((tf_written / kind / f"{name}.index").read_bytes())
        assert ours == fresh, kind


def _everything() -> dict[str, np.ndarray]:
    out = {**values.dtype_vars(), **values.STRINGS}
    out["many/big"] = values.bits("float32", (300, 700), seed=31)  # several 1 MiB read/CRC steps
    return out


def test_tf_reads_and_restores_what_varstore_writes(tmp_path):
    want = _everything()
    write_bundle(tmp_path / "ours", list(want.items()))
    read = tf_read("read", tmp_path / "ours", tmp_path)
    assert sorted(read) == sorted(want)
    for n, a in want.items():
        assert same(read[n], a), n  # NewCheckpointReader
    restored = tf_read("restore", tmp_path / "ours", tmp_path)
    for n, a in want.items():
        assert same(restored[n], a), n  # compat.v1 Saver.restore into variables


def test_tf_reads_a_converted_checkpoint_and_a_saver_format_tf_directory(tmp_path):
    from varstore.tools.convert import convert
    tf.reset_default_graph()
    want = values.dtype_vars()
    vs = {n: tf.Variable(tf.zeros(list(a.shape), a.dtype.name), name=n) for n, a in want.items()}
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for n, v in vs.items():
            v.load(want[n], sess)
        # No meta graph: varstore's meta graph cannot hold a complex initial value (msgpack has no complex).
        ours = tf.train.Saver().save(sess, str(tmp_path / "ours.ckpt"), global_step=1, write_meta_graph=False)
        (tmp_path / "tfdir").mkdir()
        saver = tf.train.Saver(format="tf", max_to_keep=2)
        for step in (1, 2, 3):
            saver.save(sess, str(tmp_path / "tfdir" / "model.ckpt"), global_step=step)
    tf.reset_default_graph()
    convert(ours, tmp_path / "converted", dst_format="tf", progress=False)
    for prefix in (tmp_path / "converted", tmp_path / "tfdir" / "model.ckpt-3"):
        got = tf_read("restore", prefix, tmp_path)
        for n, a in want.items():
            assert same(got[n], a), (prefix, n)
    oracle("latest", str(tmp_path / "tfdir"), str(tmp_path / "latest.json"))
    st = json.loads((tmp_path / "latest.json").read_text())
    assert st["latest"] == str(tmp_path / "tfdir" / "model.ckpt-3")
    assert st["all"] == [str(tmp_path / "tfdir" / f"model.ckpt-{s}") for s in (2, 3)]
