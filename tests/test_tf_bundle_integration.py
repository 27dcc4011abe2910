"""TF bundles wherever varstore takes a checkpoint, without TensorFlow: Saver.restore (into
existing buffers), tf.train's readers and the state file, the command line, conversion,
URLs, and ``Saver(format="tf")``. Values are TF's fixtures (tests/fixtures/tf), bit-exact."""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import varstore as tf
from devices.errors import DataLossError, FailedPreconditionError, InvalidArgumentError, NotFoundError
from varstore.checkpoint.tf import TFBundleReader, is_bundle, object_names, write_bundle
from varstore.tools.cli import main as cli

FIX = Path(__file__).resolve().parent / "fixtures" / "tf"
_spec = importlib.util.spec_from_file_location("tf_fixture_values", FIX / "values.py")
values = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(values)


def same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.fixture(autouse=True)
def fresh_graph():
    tf.reset_default_graph()
    yield
    tf.reset_default_graph()


def _vars_like(arrays: dict) -> dict:
    return {n: tf.Variable(tf.zeros(list(a.shape), a.dtype.name), name=n) for n, a in arrays.items()}


def test_saver_restores_every_dtype_into_existing_buffers():
    want = values.dtype_vars()
    vs = _vars_like(want)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        buffers = {n: v.storage.array for n, v in vs.items()}
        tf.train.Saver().restore(sess, tf.train.latest_checkpoint(str(FIX / "v1_dtypes")))
        for n, v in vs.items():
            assert v.storage.array is buffers[n], n  # read straight into the variable's memory
            assert same(sess.run(v), want[n]), n


def test_partitioned_tensors_restore_into_unpartitioned_variables():
    full = values.partitioned_vars()
    vs = _vars_like(full)
    with tf.Session() as sess:
        tf.train.Saver().restore(sess, str(FIX / "v1_partitioned" / "model.ckpt-1"))
        for n, v in vs.items():
            assert same(sess.run(v), full[n])


def test_partitioned_tensor_restores_into_other_partitions():
    """Rows saved as 3 partitions (4, 3, 3), restored into two variables of 5 rows each."""
    full = values.partitioned_vars()["part/rows"]
    halves = [tf.Variable(tf.zeros([5, 4]), name=f"rows_{i}") for i in range(2)]
    with tf.Session() as sess, TFBundleReader(FIX / "v1_partitioned" / "model.ckpt-1") as r:
        for i, v in enumerate(halves):
            v.load(r.read_slice("part/rows", [5 * i, 0], [5, 4]), sess)
        assert same(np.concatenate([sess.run(v) for v in halves]), full)


def test_train_readers_and_state_file_relative_paths():
    d = str(FIX / "v1_sharded")
    st = tf.train.get_checkpoint_state(d)
    assert st.model_checkpoint_path == os.path.join(d, "model.ckpt-2")
    assert tf.train.latest_checkpoint(d) == os.path.join(d, "model.ckpt-2")
    assert tf.train.list_variables(d) == [(n, list(a.shape)) for n, (_, a) in sorted(values.sharded_vars().items())]
    assert same(tf.train.load_variable(d, "dev1/d"), values.sharded_vars()["dev1/d"][1])
    with tf.train.NewCheckpointReader(d) as r:
        assert r.get_variable_to_shape_map()["dev0/a"] == [4, 4]


def test_state_file_absolute_paths_as_tf1_writes_them(tmp_path):
    for f in (FIX / "v1_dtypes").iterdir():
        shutil.copy(f, tmp_path / f.name)
    p = tmp_path / "model.ckpt-7"
    (tmp_path / "checkpoint").write_text(f'model_checkpoint_path: "{p}"\nall_model_checkpoint_paths: "{p}"\n')
    assert tf.train.latest_checkpoint(str(tmp_path)) == str(p)
    (tmp_path / "model.ckpt-7.index").unlink()  # gone: no checkpoint to name
    assert tf.train.latest_checkpoint(str(tmp_path)) is None


def test_tf2_object_checkpoint_restores_through_the_name_helper():
    v = values.object_vars()
    ws = _vars_like(v)
    prefix = str(FIX / "tf2_object" / "ckpt-1")
    names = object_names(prefix, by="full_name")
    var_list = {k: ws[n] for k, n in names.items() if n in ws}
    assert len(var_list) == 3
    with tf.Session() as sess:
        tf.train.Saver(var_list).restore(sess, prefix)
        for n, w in ws.items():
            assert same(sess.run(w), v[n])


def test_string_tensor_restore_is_refused_by_name():
    s = tf.Variable(tf.zeros([4]), name="strings/vector")
    with tf.Session() as sess, pytest.raises(InvalidArgumentError, match="strings/vector"):
        tf.train.Saver([s]).restore(sess, str(FIX / "v1_dtypes" / "model.ckpt-7"))


def test_failed_restore_leaves_touched_variables_uninitialized(tmp_path):
    prefix = tmp_path / "m"
    write_bundle(prefix, [("a", np.ones(3, np.float32)), ("b", np.full(3, 2, np.float32))], fsync=False)
    data = tmp_path / "m.data-00000-of-00001"
    with TFBundleReader(prefix) as r:
        off = r._index.tensors["b"].pieces[0].offset
    raw = bytearray(data.read_bytes())
    raw[off] ^= 1
    data.write_bytes(bytes(raw))
    a, b = tf.Variable(tf.zeros([3]), name="a"), tf.Variable(tf.zeros([3]), name="b")
    with tf.Session() as sess:
        with pytest.raises(DataLossError, match=r"tensor 'b'"):
            tf.train.Saver().restore(sess, str(prefix))
        for v in (a, b):
            with pytest.raises(FailedPreconditionError):
                sess.run(v)


def test_cli_inspect_verify_summary_convert(tmp_path, capsys):
    prefix = str(FIX / "v1_partitioned" / "model.ckpt-1")
    assert cli(["inspect", prefix]) == 0
    assert "part/rows  float32  [10, 4]" in capsys.readouterr().out
    assert cli(["verify", str(FIX / "v1_dtypes")]) == 0
    assert cli(["summary", prefix]) == 0
    assert "4 tensors" in capsys.readouterr().out
    out = str(tmp_path / "back")
    assert cli(["convert", prefix, str(tmp_path / "m.safetensors")]) == 0
    assert cli(["convert", str(tmp_path / "m.safetensors"), out, "--to", "tf"]) == 0
    assert cli(["convert", out, str(tmp_path / "m.ckpt"), "--from", "tf"]) == 0
    with tf.train.NewCheckpointReader(str(tmp_path / "m.ckpt")) as r:
        for n, a in values.partitioned_vars().items():
            assert same(r.get_tensor(n), a)
    assert cli(["convert", prefix, out, "--to", "tf"]) == 2  # exists
    assert cli(["convert", prefix, out, "--to", "tf", "--force"]) == 0
    # A TF 2 checkpoint's object graph is a string: refused by name unless dropped.
    obj = str(FIX / "tf2_object" / "ckpt-1")
    assert cli(["convert", obj, str(tmp_path / "o.ckpt")]) == 2
    assert "_CHECKPOINTABLE_OBJECT_GRAPH" in capsys.readouterr().err
    assert cli(["convert", obj, str(tmp_path / "o.ckpt"), "--map", "_CHECKPOINTABLE_OBJECT_GRAPH="]) == 0
    # Corruption: exit 1, the tensor named.
    data = tmp_path / "back.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[-1] ^= 1
    data.write_bytes(bytes(raw))
    assert cli(["verify", out]) == 1
    assert "CRC32C" in capsys.readouterr().out


def test_saver_format_tf_round_trip_and_retention(tmp_path):
    want = {k: a for k, a in values.dtype_vars().items() if k.startswith("dtypes/")}
    vs = _vars_like(want)
    saver = tf.train.Saver(format="tf", max_to_keep=2)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for n, v in vs.items():
            v.load(want[n], sess)
        paths = [saver.save(sess, str(tmp_path / "model.ckpt"), global_step=s) for s in (1, 2, 3)]
    assert [is_bundle(p) for p in paths] == [False, True, True]  # the oldest went with retention
    assert not list(tmp_path.glob("model.ckpt-1.*")) and not list(tmp_path.glob("*.meta"))
    st = tf.train.get_checkpoint_state(str(tmp_path))
    assert st.model_checkpoint_path == paths[-1] and st.all_model_checkpoint_paths == paths[1:]
    assert 'model_checkpoint_path: "model.ckpt-3"' in (tmp_path / "checkpoint").read_text()  # relative, as TF's
    tf.reset_default_graph()
    vs = _vars_like(want)
    with tf.Session() as sess:
        tf.train.Saver().restore(sess, tf.train.latest_checkpoint(str(tmp_path)))
        for n, v in vs.items():
            assert same(sess.run(v), want[n]), n
    with pytest.raises(InvalidArgumentError, match="format"):
        tf.train.Saver(format="onnx")


def test_saver_format_tf_retention_across_restarts_and_formats(tmp_path):
    # A TF-format Saver records through the same history as a varstore one: a new Saver adopts
    # what the state file lists (bundles and varstore checkpoints alike) and retires the oldest.
    tf.Variable(tf.zeros([2]), name="v")
    prefix = str(tmp_path / "model.ckpt")
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        first = tf.train.Saver(max_to_keep=5).save(sess, prefix, global_step=1)
        tf.train.Saver(format="tf", max_to_keep=5).save(sess, prefix, global_step=2)
        saver = tf.train.Saver(format="tf", max_to_keep=2)  # a restart
        paths = [saver.save(sess, prefix, global_step=s) for s in (3, 4)]
    st = tf.train.get_checkpoint_state(str(tmp_path))
    assert st.all_model_checkpoint_paths == paths
    assert not os.path.exists(first) and not os.path.exists(first + ".meta")
    assert not is_bundle(prefix + "-2") and all(is_bundle(p) for p in paths)


def test_bundles_at_urls():
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    base = "memory://tfbundles/run"
    for f in (FIX / "v1_sharded").iterdir():
        fs.pipe(f"/tfbundles/run/{f.name}", f.read_bytes())
    try:
        assert tf.train.latest_checkpoint(base) == f"{base}/model.ckpt-2"
        assert same(tf.train.load_variable(base, "dev0/a"), values.sharded_vars()["dev0/a"][1])
        with TFBundleReader(f"{base}/model.ckpt-2") as r:
            assert all(e is None for _, e in r.verify())
        write_bundle(f"{base}/ours", [("x", np.arange(5, dtype=np.int16))])
        with TFBundleReader(f"{base}/ours") as r:
            assert r.get_tensor("x").tolist() == [0, 1, 2, 3, 4]
        with pytest.raises(NotFoundError):
            TFBundleReader(f"{base}/nothing")
    finally:
        fs.rm("/tfbundles", recursive=True)
