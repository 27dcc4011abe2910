"""Meta graphs: data only, rebuilt without the model's code, validated on read."""
from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import varstore as tf
from varstore.train.meta_graph import read_meta_graph


@pytest.fixture(autouse=True)
def fresh_graph():
    tf.reset_default_graph()
    yield
    tf.reset_default_graph()


def build_model():
    tf.set_random_seed(3)
    with tf.device("/cpu:0"), tf.name_scope("layer1"):
        w = tf.Variable(tf.random_normal([4, 3], stddev=0.5), name="weights")
        b = tf.Variable(tf.zeros([3], dtype=tf.float64), name="biases")
    twice = tf.Variable(w.initialized_value() * 2.0, name="twice")
    frozen = tf.Variable(tf.constant([1, 2, 3], dtype=tf.int32), trainable=False, name="frozen")
    return w, b, twice, frozen


def test_round_trip_rebuilds_names_shapes_dtypes_devices_flags(tmp_path):
    build_model()
    before = [(v.name, v.shape, v.dtype, v.requested_device, v.trainable) for v in tf.global_variables()]
    trainable = [v.name for v in tf.trainable_variables()]
    tf.train.export_meta_graph(str(tmp_path / "m.meta"))
    tf.reset_default_graph()
    tf.train.import_meta_graph(str(tmp_path / "m.meta"))
    after = [(v.name, v.shape, v.dtype, v.requested_device, v.trainable) for v in tf.global_variables()]
    assert after == before
    assert [v.name for v in tf.trainable_variables()] == trainable


def test_rebuilt_initializers_reproduce_seeded_values_and_dependencies(tmp_path):
    w, b, twice, frozen = build_model()
    tf.global_variables_initializer().run()
    want = {v.name: v.numpy() for v in tf.global_variables()}
    tf.train.export_meta_graph(str(tmp_path / "m.meta"))
    tf.reset_default_graph()
    tf.train.import_meta_graph(str(tmp_path / "m.meta"))
    tf.global_variables_initializer().run()
    for v in tf.global_variables():
        np.testing.assert_array_equal(v.numpy(), want[v.name])


def test_import_scope_and_clear_devices(tmp_path):
    with tf.device("/job:ps/task:3"):
        tf.Variable(tf.ones([2]), name="v")
    tf.train.export_meta_graph(str(tmp_path / "m.meta"))
    tf.reset_default_graph()
    tf.train.import_meta_graph(str(tmp_path / "m.meta"), import_scope="imported")
    (v,) = tf.global_variables()
    assert (v.name, v.op.name) == ("imported/v:0", "imported/v") and v.requested_device == "/job:ps/task:3"
    tf.reset_default_graph()
    tf.train.import_meta_graph(str(tmp_path / "m.meta"), clear_devices=True)
    assert tf.global_variables()[0].requested_device == ""


def test_saver_from_meta_graph_restores_without_the_models_code(tmp_path):
    w, b, twice, frozen = build_model()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(b.assign([1.0, 2.0, 3.0]))
        path = tf.train.Saver({"renamed_w": w, "layer1/biases": b}).save(sess, str(tmp_path / "model.ckpt"),
                                                                        global_step=4)
    tf.reset_default_graph()
    saver = tf.train.import_meta_graph(path + ".meta")
    with tf.Session() as sess:  # made after the import: it runs the imported graph
        saver.restore(sess, path)
    got = {v.op.name: v for v in tf.global_variables()}
    np.testing.assert_array_equal(got["layer1/biases"].numpy(), [1, 2, 3])
    np.testing.assert_array_equal(got["layer1/weights"].numpy(), w.numpy())
    assert not got["twice"].is_initialized  # not in that saver


def test_undescribable_initializer_waits_for_restore(tmp_path):
    big = np.random.default_rng(0).standard_normal((200, 200)).astype(np.float32)  # 160 KB literal
    v = tf.Variable(big, name="big")
    v.initializer.run()
    path = tf.train.Saver().save(None, str(tmp_path / "m.ckpt"))
    tf.reset_default_graph()
    saver = tf.train.import_meta_graph(path + ".meta")
    (v2,) = tf.global_variables()
    with pytest.raises(tf.errors.FailedPreconditionError, match="restore"):
        v2.initializer.run()
    saver.restore(None, path)
    np.testing.assert_array_equal(v2.numpy(), big)


def _meta_with(tmp_path, **changes) -> str:
    tf.Variable(tf.zeros([2]), name="v")
    meta = tf.train.export_meta_graph()
    for k, val in changes.items():
        meta["variables"][0][k] = val
    path = tmp_path / "m.meta"
    path.write_bytes(msgpack.packb(meta, use_bin_type=True))
    return str(path)


def test_unknown_initializer_kind_is_data_loss_naming_the_file(tmp_path):
    path = _meta_with(tmp_path, initializer={"kind": "run_this_code", "src": "import os"})
    tf.reset_default_graph()
    with pytest.raises(tf.errors.DataLossError, match="m.meta.*run_this_code|run_this_code.*"):
        tf.train.import_meta_graph(path)


@pytest.mark.parametrize("field,value", [("dtype", "object"), ("shape", [-1]), ("device", "/gpu:x"),
                                         ("trainable", "yes"), ("name", 7)])
def test_bad_variable_fields_are_data_loss(tmp_path, field, value):
    path = _meta_with(tmp_path, **{field: value})
    with pytest.raises(tf.errors.DataLossError):
        read_meta_graph(path)


def test_missing_garbage_and_deeply_nested_meta_files(tmp_path):
    with pytest.raises(tf.errors.NotFoundError):
        tf.train.import_meta_graph(str(tmp_path / "missing.meta"))
    (tmp_path / "g.meta").write_bytes(b"\x00garbage\xff" * 10)
    with pytest.raises(tf.errors.DataLossError):
        tf.train.import_meta_graph(str(tmp_path / "g.meta"))
    (tmp_path / "deep.meta").write_bytes(b"\x91" * 200_000 + b"\xc0")
    with pytest.raises(tf.errors.DataLossError):
        tf.train.import_meta_graph(str(tmp_path / "deep.meta"))
    (tmp_path / "v.meta").write_bytes(msgpack.packb({"format": "varstore.meta", "version": 99, "variables": []}))
    with pytest.raises(tf.errors.DataLossError, match="version"):
        tf.train.import_meta_graph(str(tmp_path / "v.meta"))


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_mutated_meta_files_give_only_varstore_errors(tmp_path_factory, data):
    tf.reset_default_graph()
    build_model()
    raw = bytearray(msgpack.packb(tf.train.export_meta_graph(), use_bin_type=True))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    path = tmp_path_factory.mktemp("meta") / "m.meta"
    path.write_bytes(bytes(raw))
    tf.reset_default_graph()
    try:
        tf.train.import_meta_graph(str(path))
    except tf.errors.OpError:
        pass


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
def test_a_complex_fill_round_trips_through_the_meta_graph(tmp_path, dtype):
    # msgpack has no complex type: a save with its meta graph must not fail on one.
    tf.reset_default_graph()
    tf.Variable(tf.fill([3], np.dtype(dtype).type(1.5 - 2j)), name="c")
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        path = tf.train.Saver().save(sess, str(tmp_path / "model.ckpt"), global_step=1)
    tf.reset_default_graph()
    tf.train.import_meta_graph(path + ".meta")
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        [v] = tf.global_variables()
        assert v.dtype == np.dtype(dtype)
        assert v.numpy().tolist() == [1.5 - 2j] * 3
