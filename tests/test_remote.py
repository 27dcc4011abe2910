"""Checkpoints at fsspec URLs: memory:// in this process, and a real S3 API (moto's server,
on 127.0.0.1) for s3://. Saves killed before their commit run in a child process."""
from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import uuid

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import varstore as tf
from varstore.checkpoint import CheckpointReader, is_checkpoint, remote, write_checkpoint

fsspec = pytest.importorskip("fsspec")


@pytest.fixture(autouse=True)
def fresh_graph():
    tf.reset_default_graph()
    yield
    tf.reset_default_graph()


def listing(root: str) -> dict[str, bytes]:
    """Every object under the URL ``root``: relative name -> bytes, read afresh."""
    fs, path = fsspec.core.url_to_fs(root)
    fs.invalidate_cache()
    if not fs.exists(path):
        return {}
    return {p[len(path.rstrip("/")) + 1:]: fs.cat_file(p) for p in fs.find(path)}


def names(objects) -> list[str]:
    """Object names with each save's random data id written as ``*``."""
    return sorted(re.sub(r"\.data-[0-9a-f]{16}\Z", ".data-*", n) for n in objects)


def data_of(objects: dict, name: str) -> str:
    """The one data object of checkpoint ``name`` in a listing."""
    [found] = [n for n in objects if re.fullmatch(re.escape(name) + r"\.data-[0-9a-f]{16}", n)]
    return found


def new_memory_root() -> str:
    return f"memory://varstore-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def mem():
    root = new_memory_root()
    yield root
    fs, path = fsspec.core.url_to_fs(root)
    if fs.exists(path):
        fs.rm(path, recursive=True)


@pytest.fixture(scope="module")
def s3_endpoint():
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def s3_options(endpoint: str, **more) -> dict:
    return {"endpoint_url": endpoint, "key": "testing", "secret": "testing",
            "config_kwargs": {"retries": {"max_attempts": 2}}, **more}


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    """A new bucket on the loopback S3 server; yields ``s3://bucket/run``."""
    monkeypatch.setitem(fsspec.config.conf, "s3", s3_options(s3_endpoint))
    bucket = f"varstore-{uuid.uuid4().hex[:12]}"
    fsspec.filesystem("s3").mkdir(bucket)
    return f"s3://{bucket}/run"


@pytest.fixture(params=["memory", "s3"])
def store(request):
    return request.getfixturevalue("mem" if request.param == "memory" else "s3")


TENSORS = [
    ("dense/kernel", np.arange(24, dtype=np.float32).reshape(4, 6)),
    ("dense/bias", np.array([-1.5, 0.0, 2.25], dtype=np.float64)),
    ("emb", np.arange(10, dtype=np.float32).astype(tf.bfloat16).reshape(2, 5)),
    ("step", np.array(7, dtype=np.int64)),
    ("empty", np.zeros((0, 3), dtype=np.int8)),
    ("mask", np.array([True, False, True])),
]


# -- the file itself ----------------------------------------------------------------------
def test_an_object_holds_the_same_bytes_as_a_local_file_and_reads_back(store, tmp_path):
    url = f"{store}/model.ckpt"
    n = write_checkpoint(url, TENSORS, extra={"global_step": 7})
    write_checkpoint(tmp_path / "model.ckpt", TENSORS, extra={"global_step": 7}, fsync=False)
    objects = listing(store)
    assert names(objects) == ["model.ckpt", "model.ckpt.data-*"]  # the commit, and the save's data
    data = objects[data_of(objects, "model.ckpt")]
    assert data == (tmp_path / "model.ckpt").read_bytes()  # the same bytes as a local file
    assert n == len(data)
    assert is_checkpoint(url) and remote.is_committed(url)
    with CheckpointReader(url) as r:
        assert r.extra["global_step"] == 7
        assert r.names() == sorted(name for name, _ in TENSORS)
        for name, value in TENSORS:
            got = r.get_tensor(name)
            assert got.dtype == value.dtype and got.shape == value.shape
            assert got.tobytes() == value.tobytes()
            assert not got.flags.writeable
        assert all(err is None for _, err in r.verify())


_DTYPES = ["float32", "float64", "float16", "int8", "int32", "uint16", "bool", "bfloat16"]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_DTYPES),
                          st.lists(st.integers(0, 5), max_size=3),
                          st.integers(0, 2**31 - 1)), min_size=1, max_size=6))
def test_any_tensors_round_trip_through_memory(specs):
    root = new_memory_root()
    rng_values = []
    for i, (dtype, shape, seed) in enumerate(specs):
        dt = tf.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
        raw = np.random.default_rng(seed).integers(0, 256, size=int(np.prod(shape)) * np.dtype(dt).itemsize,
                                                   dtype=np.uint8)
        rng_values.append((f"t{i}", raw.view(dt).reshape(shape) if dt != np.bool_ else (raw % 2).astype(bool)
                           .reshape(shape)))
    try:
        write_checkpoint(f"{root}/c", rng_values)
        with CheckpointReader(f"{root}/c") as r:
            for name, value in rng_values:
                assert r.read_tensor(name).tobytes() == value.tobytes()
    finally:
        fs, path = fsspec.core.url_to_fs(root)
        fs.rm(path, recursive=True)


def test_a_local_checkpoint_copied_to_a_url_whole_reads_as_is(store, tmp_path):
    write_checkpoint(tmp_path / "model.ckpt", TENSORS, fsync=False)
    remote.write_small(f"{store}/copied.ckpt", (tmp_path / "model.ckpt").read_bytes())  # as `aws s3 cp` does
    assert remote.is_committed(f"{store}/copied.ckpt")
    with CheckpointReader(f"{store}/copied.ckpt") as r:
        assert r.read_tensor("dense/kernel").tobytes() == TENSORS[0][1].tobytes()


def test_many_small_tensors_are_read_in_few_requests(mem, monkeypatch):
    tensors = [(f"t{i:04d}", np.full(16, i, np.float32)) for i in range(2000)]
    write_checkpoint(f"{mem}/many", tensors)
    calls = []
    fs, _ = fsspec.core.url_to_fs(mem)
    original = type(fs).cat_file
    monkeypatch.setattr(type(fs), "cat_file", lambda self, *a, **k: calls.append(k) or original(self, *a, **k))
    with CheckpointReader(f"{mem}/many") as r:
        for name, value in tensors:
            assert np.array_equal(r.get_tensor(name), value)
    assert len(calls) < 10  # one window holds every tensor; not one request per tensor


# -- the Saver ----------------------------------------------------------------------------
def make_vars():
    a = tf.Variable(np.arange(12, dtype=np.float32).reshape(3, 4), name="a")
    b = tf.Variable(np.array([1, 2, 3], dtype=np.int64), name="layer/b")
    tf.global_variables_initializer().run()
    return a, b


def test_save_restore_latest_and_retention(store):
    a, b = make_vars()
    saver = tf.train.Saver(max_to_keep=2)
    with tf.Session() as sess:
        for step in range(1, 5):
            sess.run(a.assign(np.full((3, 4), step, np.float32)))
            assert saver.save(sess, f"{store}/model.ckpt", global_step=step) == f"{store}/model.ckpt-{step}"
        objects = listing(store)
        assert names(objects) == ["checkpoint", "model.ckpt-3", "model.ckpt-3.data-*", "model.ckpt-3.meta",
                                  "model.ckpt-4", "model.ckpt-4.data-*", "model.ckpt-4.meta"]
        assert objects["checkpoint"].decode().splitlines()[:3] == [
            'model_checkpoint_path: "model.ckpt-4"', 'all_model_checkpoint_paths: "model.ckpt-3"',
            'all_model_checkpoint_paths: "model.ckpt-4"']
        assert tf.train.latest_checkpoint(store) == f"{store}/model.ckpt-4"
        assert saver.last_checkpoints == [f"{store}/model.ckpt-3", f"{store}/model.ckpt-4"]
        sess.run(a.assign(np.zeros((3, 4), np.float32)))
        saver.restore(sess, f"{store}/model.ckpt-3")
        assert np.array_equal(sess.run(a), np.full((3, 4), 3, np.float32))
        assert np.array_equal(sess.run(b), [1, 2, 3])
    assert tf.train.list_variables(store) == [("a", [3, 4]), ("layer/b", [3])]
    assert np.array_equal(tf.train.load_variable(store, "a"), np.full((3, 4), 4, np.float32))
    tf.reset_default_graph()
    restorer = tf.train.import_meta_graph(f"{store}/model.ckpt-4.meta")
    with tf.Session() as sess:
        restorer.restore(sess, tf.train.latest_checkpoint(store))
        assert np.array_equal(sess.run(tf.global_variables()[0]), np.full((3, 4), 4, np.float32))


def test_retention_holds_across_restarts(store):
    make_vars()
    first = tf.train.Saver(max_to_keep=2)
    for step in (1, 2):
        first.save(None, f"{store}/model.ckpt", global_step=step)
    tf.reset_default_graph()
    make_vars()
    tf.train.Saver(max_to_keep=2).save(None, f"{store}/model.ckpt", global_step=3)
    assert sorted(n for n in listing(store) if n.startswith("model.ckpt-") and "." not in n[11:]) == [
        "model.ckpt-2", "model.ckpt-3"]


def test_async_save_to_a_url_commits_the_values_of_the_call(mem):
    a, _ = make_vars()
    saver = tf.train.Saver()
    handle = saver.save(None, f"{mem}/model.ckpt", global_step=1, async_save=True)
    a.load(np.zeros((3, 4), np.float32))  # changed now, while the save runs
    assert handle.result(timeout=60) == f"{mem}/model.ckpt-1"
    assert remote.is_committed(f"{mem}/model.ckpt-1")
    assert np.array_equal(tf.train.load_variable(f"{mem}/model.ckpt-1", "a"),
                          np.arange(12, dtype=np.float32).reshape(3, 4))


# -- the commit marker --------------------------------------------------------------------
def test_a_checkpoint_without_its_marker_is_not_taken(store):
    make_vars()
    saver = tf.train.Saver()
    saver.save(None, f"{store}/model.ckpt", global_step=1)
    saver.save(None, f"{store}/model.ckpt", global_step=2)
    remote.remove(f"{store}/model.ckpt-2")  # its commit: as if the save had stopped before it
    assert tf.train.latest_checkpoint(store) == f"{store}/model.ckpt-1"
    with pytest.raises(tf.errors.NotFoundError, match="model.ckpt-2.*not committed"):
        CheckpointReader(f"{store}/model.ckpt-2")
    with pytest.raises(tf.errors.NotFoundError, match="not committed"):
        saver.restore(None, f"{store}/model.ckpt-2")
    assert not is_checkpoint(f"{store}/model.ckpt-2")


@pytest.mark.parametrize("marker", [
    b"", b"\xc1garbage", b"\x92\x01\x02", b"x" * (remote.MAX_COMMIT_BYTES + 1),
    json.dumps({"format": "varstore.commit"}).encode(),
])
def test_a_torn_or_foreign_marker_commits_nothing(mem, marker):
    write_checkpoint(f"{mem}/c", TENSORS)
    remote.write_small(f"{mem}/c", marker)
    assert not remote.is_committed(f"{mem}/c")
    with pytest.raises(tf.errors.NotFoundError, match="not committed"):
        CheckpointReader(f"{mem}/c")


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300))
def test_random_marker_bytes_never_commit(marker):
    root = new_memory_root()
    try:
        write_checkpoint(f"{root}/c", TENSORS[:2])
        remote.write_small(f"{root}/c", marker)
        assert not remote.is_committed(f"{root}/c")
        with pytest.raises(tf.errors.NotFoundError, match="not committed"):
            CheckpointReader(f"{root}/c")
    finally:
        fs, path = fsspec.core.url_to_fs(root)
        fs.rm(path, recursive=True)


def test_a_corrupt_object_behind_a_valid_marker_is_data_loss_naming_it(mem):
    url = f"{mem}/c"
    write_checkpoint(url, TENSORS)
    with CheckpointReader(url) as r:
        offset = r._index.offsets[r._pos("dense/kernel")]
    data = data_of(listing(mem), "c")
    raw = bytearray(listing(mem)[data])
    raw[offset] ^= 0x40  # same size, same index: the marker still matches
    remote.write_small(f"{mem}/{data}", bytes(raw))
    assert remote.is_committed(url)
    with CheckpointReader(url) as r:
        with pytest.raises(tf.errors.DataLossError, match=f"{url}.*dense/kernel.*checksum"):
            r.get_tensor("dense/kernel")
        assert dict(r.verify())["dense/bias"] is None


def marker(**fields) -> bytes:
    import msgpack
    return msgpack.packb({"format": "varstore.commit", "version": 1, "committed_at": 0.0, **fields})


def test_a_marker_that_does_not_match_its_data_object_is_refused(store):
    write_checkpoint(f"{store}/c", TENSORS, extra={"save": 1})
    objects = listing(store)
    data = data_of(objects, "c")
    good = __import__("msgpack").unpackb(objects["c"])
    remote.write_small(f"{store}/c", marker(**{**good, "size": good["size"] + 64}))
    assert not remote.is_committed(f"{store}/c")
    with pytest.raises(tf.errors.DataLossError, match="commit marker promises"):
        CheckpointReader(f"{store}/c")
    remote.write_small(f"{store}/c", marker(**{**good, "index_checksum": good["index_checksum"] ^ 1}))
    assert not remote.is_committed(f"{store}/c")
    with pytest.raises(tf.errors.DataLossError, match="commit\\s+marker promises|not the one its commit"):
        CheckpointReader(f"{store}/c")
    remote.remove(f"{store}/{data}")
    remote.write_small(f"{store}/c", marker(**good))
    assert not remote.is_committed(f"{store}/c")
    with pytest.raises(tf.errors.NotFoundError, match="not found"):
        CheckpointReader(f"{store}/c")


@pytest.mark.parametrize("obj", ["../c.data-0123456789abcdef", "other.data-0123456789abcdef", "c",
                                 "c.data-XYZ", "c.meta", "/etc/passwd"])
def test_a_marker_naming_an_object_outside_its_name_is_refused(mem, obj):
    write_checkpoint(f"{mem}/other", TENSORS)
    write_checkpoint(f"{mem}/c", TENSORS)
    good = __import__("msgpack").unpackb(listing(mem)["c"])
    remote.write_small(f"{mem}/c", marker(**{**good, "object": obj}))
    assert not remote.is_committed(f"{mem}/c")
    with pytest.raises(tf.errors.NotFoundError, match="not committed"):
        CheckpointReader(f"{mem}/c")


@pytest.mark.parametrize("state", [b"\xff\xfe not text", b"model_checkpoint_path: unquoted\n",
                                   b"x" * ((16 << 20) + 1), b""])
def test_a_hostile_state_file_is_data_loss_naming_it_and_the_next_save_replaces_it(store, state):
    make_vars()
    remote.write_small(f"{store}/checkpoint", state)
    remote.write_small(f"{store}/c", b"")  # an empty marker commits nothing, on S3 too
    if state:
        with pytest.raises(tf.errors.DataLossError, match=f"{store}/checkpoint"):
            tf.train.latest_checkpoint(store)
    else:
        assert tf.train.latest_checkpoint(store) is None
    assert not remote.is_committed(f"{store}/c")
    path = tf.train.Saver().save(None, f"{store}/model.ckpt", global_step=5)
    assert tf.train.latest_checkpoint(store) == path


def test_a_failed_save_leaves_every_object_as_it_was(store):
    make_vars()
    saver = tf.train.Saver()
    saver.save(None, f"{store}/model.ckpt", global_step=1)
    before = listing(store)
    tf.Variable(tf.zeros([2]), name="zz_uninitialized")  # sorts last: the data is mostly written
    with pytest.raises(tf.errors.FailedPreconditionError, match="zz_uninitialized"):
        saver.save(None, f"{store}/model.ckpt", global_step=2)
    assert listing(store) == before


def test_a_failed_overwrite_keeps_the_committed_checkpoint(store):
    url = f"{store}/model.ckpt"
    write_checkpoint(url, TENSORS)
    before = listing(store)

    def failing():
        yield TENSORS[0]
        raise RuntimeError("the producer died")

    with pytest.raises(RuntimeError, match="producer died"):
        write_checkpoint(url, failing())
    assert listing(store) == before
    assert remote.is_committed(url)


def test_an_overwrite_whose_commit_fails_keeps_the_previous_checkpoint(store, monkeypatch):
    make_vars()
    saver = tf.train.Saver()
    path = saver.save(None, f"{store}/model.ckpt")  # no global_step: every save has this name
    write_small = remote.write_small

    def refuse_the_commit(url, data):
        if url == path:
            raise tf.errors.UnavailableError(f"writing {url}: the store cannot be reached (test)")
        write_small(url, data)

    monkeypatch.setattr(remote, "write_small", refuse_the_commit)
    tf.global_variables()[0].load(np.zeros((3, 4), np.float32))
    with pytest.raises(tf.errors.UnavailableError, match="model.ckpt"):
        saver.save(None, f"{store}/model.ckpt")
    monkeypatch.setattr(remote, "write_small", write_small)
    assert tf.train.latest_checkpoint(store) == path
    assert np.array_equal(tf.train.load_variable(path, "a"), np.arange(12, dtype=np.float32).reshape(3, 4))
    assert names(listing(store)).count("model.ckpt.data-*") == 1  # the refused save removed its data
    saver.save(None, f"{store}/model.ckpt")
    assert names(listing(store)).count("model.ckpt.data-*") == 1  # the replaced version's data is gone
    assert np.array_equal(tf.train.load_variable(path, "a"), np.zeros((3, 4), np.float32))


def test_a_commit_whose_answer_is_lost_still_counts(store, monkeypatch):
    make_vars()
    saver = tf.train.Saver()
    path = saver.save(None, f"{store}/model.ckpt")
    write_small = remote.write_small

    def lose_the_answer(url, data):
        write_small(url, data)
        if url == path:
            raise tf.errors.UnavailableError(f"writing {url}: the connection dropped (test)")

    monkeypatch.setattr(remote, "write_small", lose_the_answer)
    tf.global_variables()[0].load(np.zeros((3, 4), np.float32))
    assert saver.save(None, f"{store}/model.ckpt") == path  # the store took it: the save is done
    monkeypatch.setattr(remote, "write_small", write_small)
    assert np.array_equal(tf.train.load_variable(path, "a"), np.zeros((3, 4), np.float32))
    assert names(listing(store)).count("model.ckpt.data-*") == 1


def test_a_save_never_deletes_the_data_a_later_commit_of_its_name_points_at(mem, monkeypatch):
    """Save A commits; save B of the same name runs whole; then A cleans up. A must not
    remove B's data (the name's commit now points at it), only what A replaced."""
    url = f"{mem}/model.ckpt"
    write_checkpoint(url, [("v", np.zeros(4, np.float32))])
    commit = remote.write_commit

    def commit_then_another_save(*args, **kwargs):
        commit(*args, **kwargs)
        monkeypatch.setattr(remote, "write_commit", commit)
        write_checkpoint(url, [("v", np.full(4, 2.0, np.float32))])  # B, between A's commit and cleanup

    monkeypatch.setattr(remote, "write_commit", commit_then_another_save)
    write_checkpoint(url, [("v", np.ones(4, np.float32))])  # A
    assert remote.is_committed(url)
    with CheckpointReader(url) as r:
        assert r.read_tensor("v").tolist() == [2.0] * 4
    assert names(listing(mem)).count("model.ckpt.data-*") <= 2  # B's, and at most A's (nobody's now)


def test_a_new_saver_sweeps_what_killed_saves_left_and_keeps_committed_data(mem, monkeypatch):
    import varstore.checkpoint.store.objects as stale_module
    make_vars()
    tf.train.Saver().save(None, f"{mem}/model.ckpt", global_step=1)
    orphan = remote.data_url(f"{mem}/model.ckpt-2", "0123456789abcdef")
    remote.write_small(orphan, b"a killed save's upload")
    young = listing(mem)
    tf.train.Saver().save(None, f"{mem}/model.ckpt", global_step=3)
    assert orphan[len(mem) + 1:] in listing(mem)  # written just now: it may be a save in flight
    monkeypatch.setattr(stale_module, "STALE_REMOTE_SECONDS", -1.0)  # everything counts as old
    tf.train.Saver().save(None, f"{mem}/model.ckpt", global_step=4)
    objects = listing(mem)
    assert orphan[len(mem) + 1:] not in objects
    assert data_of(young, "model.ckpt-1") in objects and remote.is_committed(f"{mem}/model.ckpt-1")


def test_a_reader_follows_a_commit_that_replaced_the_version_it_located(mem, monkeypatch):
    url = f"{mem}/model.ckpt"
    write_checkpoint(url, [("v", np.zeros(4, np.float32))])
    locate = remote.locate

    def locate_then_overwrite(u):
        found = locate(u)
        monkeypatch.setattr(remote, "locate", locate)
        write_checkpoint(url, [("v", np.ones(4, np.float32))])  # commits, and deletes what was found
        return found

    monkeypatch.setattr(remote, "locate", locate_then_overwrite)
    with CheckpointReader(url) as r:
        assert r.read_tensor("v").tolist() == [1.0] * 4


def test_a_data_object_is_not_opened_as_a_checkpoint(mem):
    write_checkpoint(f"{mem}/c", TENSORS)
    with pytest.raises(tf.errors.NotFoundError, match="data object, not a checkpoint.*c "):
        CheckpointReader(f"{mem}/{data_of(listing(mem), 'c')}")


# -- bad input: protocols, credentials, endpoints -----------------------------------------
def test_an_unknown_protocol_names_the_url_everywhere():
    make_vars()
    url = "nosuchproto://bucket/run/model.ckpt"
    for call in (lambda: tf.train.Saver().save(None, url),
                 lambda: tf.train.Saver().restore(None, url),
                 lambda: tf.train.latest_checkpoint("nosuchproto://bucket/run"),
                 lambda: CheckpointReader(url),
                 lambda: write_checkpoint(url, TENSORS)):
        with pytest.raises(tf.errors.InvalidArgumentError, match="nosuchproto://bucket/run.*unknown storage protocol"):
            call()


def test_a_protocol_whose_package_is_missing_says_so(monkeypatch):
    import importlib
    registry = importlib.import_module("fsspec.registry")  # the module: fsspec.registry is a mapping
    monkeypatch.setitem(registry.known_implementations, "vsmissing",
                        {"class": "no_such_package_xyz.FS", "err": "Install no_such_package_xyz for vsmissing://"})
    make_vars()
    with pytest.raises(tf.errors.FailedPreconditionError, match="vsmissing://b/m.*no_such_package_xyz"):
        tf.train.Saver().save(None, "vsmissing://b/m")


def test_missing_credentials_name_the_url_and_write_nothing(s3, s3_endpoint, monkeypatch, tmp_path):
    make_vars()
    tf.train.Saver().save(None, f"{s3}/model.ckpt", global_step=1)
    before = listing(s3)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    options = s3_options(s3_endpoint)
    del options["key"], options["secret"]
    monkeypatch.setitem(fsspec.config.conf, "s3", options)
    with pytest.raises(tf.errors.PermissionDeniedError, match=f"{s3}.*credentials"):
        tf.train.Saver().save(None, f"{s3}/model.ckpt", global_step=2)
    with pytest.raises(tf.errors.PermissionDeniedError, match=s3):
        tf.train.latest_checkpoint(s3)
    with pytest.raises(tf.errors.PermissionDeniedError, match="model.ckpt-1"):
        tf.train.Saver().restore(None, f"{s3}/model.ckpt-1")
    monkeypatch.setitem(fsspec.config.conf, "s3", s3_options(s3_endpoint))
    assert listing(s3) == before


def test_an_unreachable_endpoint_names_the_url(monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setitem(fsspec.config.conf, "s3", s3_options(
        f"http://127.0.0.1:{port}", config_kwargs={"retries": {"max_attempts": 1}, "connect_timeout": 2}))
    pytest.importorskip("s3fs")
    make_vars()
    with pytest.raises(tf.errors.UnavailableError, match="s3://bucket/run/model.ckpt.*cannot be reached"):
        tf.train.Saver().save(None, "s3://bucket/run/model.ckpt", global_step=1)
    with pytest.raises(tf.errors.UnavailableError, match="s3://bucket/run"):
        tf.train.latest_checkpoint("s3://bucket/run")


def test_a_missing_bucket_names_the_url(s3):
    make_vars()
    url = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/run/model.ckpt"
    with pytest.raises(tf.errors.NotFoundError, match=url):
        tf.train.Saver().save(None, url, global_step=1)


# -- saves killed before their commit -----------------------------------------------------
_CHILD = textwrap.dedent("""
    import os, signal, sys, time, json
    import numpy as np, fsspec
    fsspec.config.conf["s3"] = json.loads(sys.argv[1])
    import varstore as tf
    from varstore.checkpoint import remote
    url, mode = sys.argv[2], sys.argv[3]
    tf.Variable(np.full((3, 1 << 19), 2.0, np.float32), name="a")   # 6 MiB
    tf.Variable(np.full((3, 1 << 19), 2.0, np.float32), name="b")
    tf.global_variables_initializer().run()
    if mode == "before-commit":  # the data is whole; die instead of writing the marker
        remote.write_commit = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    else:  # wait, mid-upload, to be killed by the parent
        from varstore.checkpoint import remote_stream
        write = remote_stream.Sink.writev
        sent = [0]
        def writev(self, views):
            n = write(self, views)
            sent[0] += n
            if sent[0] > 7 << 20:  # one 5 MiB part is uploaded by now
                print("uploading", flush=True)
                time.sleep(600)
            return n
        remote_stream.Sink.writev = writev
    tf.train.Saver().save(None, url, global_step=2)
    print("saved", flush=True)
""")


@pytest.mark.parametrize("mode", ["before-commit", "mid-upload"])
def test_a_save_killed_before_its_commit_leaves_the_previous_checkpoint_latest(s3, s3_endpoint, mode):
    tf.Variable(np.full((3, 1 << 19), 1.0, np.float32), name="a")
    tf.Variable(np.full((3, 1 << 19), 1.0, np.float32), name="b")
    tf.global_variables_initializer().run()
    saver = tf.train.Saver()
    saver.save(None, f"{s3}/model.ckpt", global_step=1)
    options = json.dumps(s3_options(s3_endpoint, default_block_size=5 << 20))
    child = subprocess.Popen([sys.executable, "-c", _CHILD, options, f"{s3}/model.ckpt", mode],
                             stdout=subprocess.PIPE, text=True)
    try:
        if mode == "mid-upload":
            assert child.stdout.readline() == "uploading\n"
            os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    objects = listing(s3)
    assert "model.ckpt-2" not in objects  # no commit
    if mode == "before-commit":
        assert "model.ckpt-2.data-*" in names(objects)  # uploaded whole, never committed
        with pytest.raises(tf.errors.NotFoundError, match="not committed"):
            CheckpointReader(f"{s3}/model.ckpt-2")
    else:  # the multipart upload was under way: S3 shows nothing of it
        assert not any(n.startswith("model.ckpt-2") for n in objects)
        fs = fsspec.filesystem("s3")
        bucket = s3[len("s3://"):].split("/")[0]
        uploads = fs.call_s3("list_multipart_uploads", Bucket=bucket).get("Uploads", [])
        assert len(uploads) == 1 and re.fullmatch(r"run/model\.ckpt-2\.data-[0-9a-f]{16}", uploads[0]["Key"])
    assert tf.train.latest_checkpoint(s3) == f"{s3}/model.ckpt-1"
    for v in tf.global_variables():
        v.load(np.zeros((3, 1 << 19), np.float32))
    saver.restore(None, tf.train.latest_checkpoint(s3))
    assert all(np.all(v.numpy() == 1.0) for v in tf.global_variables())


# -- the command line ---------------------------------------------------------------------
def test_the_command_reads_checkpoints_at_urls(s3, capsys):
    from varstore.tools.cli import main
    make_vars()
    saver = tf.train.Saver()
    for step in (1, 2):
        saver.save(None, f"{s3}/model.ckpt", global_step=step)
    assert main(["inspect", f"{s3}/model.ckpt-2"]) == 0
    assert "layer/b" in capsys.readouterr().out
    assert main(["verify", s3]) == 0
    out = capsys.readouterr().out
    assert f"ok       {s3}/model.ckpt-1" in out and f"ok       {s3}/model.ckpt-2" in out
    assert main(["summary", f"{s3}/model.ckpt-2"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:4]]
    assert [r[0] for r in rows] == ["a", "layer/b"]
    assert [r[-1] for r in rows] == ["yes", "yes"]  # the trainable flag, read from the .meta beside it
    remote.remove(f"{s3}/model.ckpt-1")  # its commit
    assert main(["verify", s3]) == 1
    assert f"MISSING  {s3}/model.ckpt-1" in capsys.readouterr().out


# -- which paths are URLs -----------------------------------------------------------------
@pytest.mark.parametrize("path,url", [
    ("s3://bucket/run/model.ckpt", True), ("memory://x", True), ("gs://b/x", True),
    ("simplecache::s3://bucket/x", True), ("file:///tmp/run/model.ckpt", False),
    ("runs/model.ckpt", False), ("/abs/model.ckpt", False), ("C:\\runs\\model.ckpt", False),
    ("model.ckpt-1", False), ("weird:name/model.ckpt", False),
])
def test_which_paths_are_urls(path, url):
    assert remote.is_url(path) is url


def test_file_urls_are_local_paths_with_the_local_guarantees(tmp_path):
    make_vars()
    path = tf.train.Saver().save(None, f"file://{tmp_path}/model.ckpt", global_step=1)
    assert path == f"{tmp_path}/model.ckpt-1"  # a local path: temp file, fsync, rename
    assert sorted(p.name for p in tmp_path.iterdir()) == [".checkpoint.lock", "checkpoint", "model.ckpt-1",
                                                          "model.ckpt-1.meta"]
    assert tf.train.latest_checkpoint(f"file://{tmp_path}") == path
    with CheckpointReader(f"file://{path}") as r:
        assert r.names() == ["a", "layer/b"]
    assert is_checkpoint(f"file://{path}") and is_checkpoint(f"FILE://localhost{path}")


def test_a_chained_url_reads_through_its_cache(mem, tmp_path):
    write_checkpoint(f"{mem}/c", TENSORS)
    with CheckpointReader(f"simplecache::{mem}/c") as r:
        assert r.read_tensor("dense/kernel").tobytes() == TENSORS[0][1].tobytes()
