"""MonitoredTrainingSession, MonitoredSession, hooks and Scaffold as TF 1.x (hook order, checkpoint
steps and restore-on-restart checked against tensorflow-cpu 2.21's compat.v1), the TF 1.x way."""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import varstore as tf
from varstore.errors import UnavailableError
from varstore.train import monitored


@pytest.fixture(autouse=True)
def fresh_graph():
    tf.reset_default_graph()
    yield
    tf.reset_default_graph()


def _model():
    step = tf.train.get_or_create_global_step()
    v = tf.Variable(1.0, name="v")
    train = tf.group(tf.assign_add(step, 1), v.assign_add(1.0))
    return step, v, train


def _steps(directory) -> list[int]:
    st = tf.train.get_checkpoint_state(str(directory))
    return [int(p.rsplit("-", 1)[1]) for p in st.all_model_checkpoint_paths]


def _run_to_stop(sess, train) -> int:
    n = 0
    while not sess.should_stop():
        sess.run(train)
        n += 1
    return n


class Recorder(tf.train.SessionRunHook):
    def __init__(self, tag, log):
        self.tag, self.log = tag, log

    def begin(self):
        self.log.append((self.tag, "begin"))

    def after_create_session(self, session, coord):
        assert isinstance(session, tf.Session) and isinstance(coord, tf.train.Coordinator)
        self.log.append((self.tag, "after_create_session"))

    def before_run(self, run_context):
        self.log.append((self.tag, "before_run"))
        return tf.train.SessionRunArgs({"gs": tf.train.get_global_step()})

    def after_run(self, run_context, run_values):
        self.log.append((self.tag, "after_run", int(run_values.results["gs"])))

    def end(self, session):
        self.log.append((self.tag, "end"))


def test_hooks_are_called_in_tfs_order(tmp_path):
    step, v, train = _model()
    log: list = []
    hooks = [Recorder("h", log), tf.train.StopAtStepHook(last_step=2)]
    with tf.train.MonitoredTrainingSession(checkpoint_dir=str(tmp_path), hooks=hooks,
                                           chief_only_hooks=[Recorder("chief", log)]) as sess:
        assert type(sess).__name__ == "MonitoredSession"
        results = []
        while not sess.should_stop():
            results.append(sess.run({"t": train, "v": v}))
    assert results == [{"t": None, "v": 2.0}, {"t": None, "v": 3.0}]
    assert log == [("chief", "begin"), ("h", "begin"),
                   ("chief", "after_create_session"), ("h", "after_create_session"),
                   ("chief", "before_run"), ("h", "before_run"), ("chief", "after_run", 1), ("h", "after_run", 1),
                   ("chief", "before_run"), ("h", "before_run"), ("chief", "after_run", 2), ("h", "after_run", 2),
                   ("chief", "end"), ("h", "end")]


@pytest.mark.parametrize("every, last, expected", [
    (3, 7, [0, 3, 6, 7]),      # TF: the start, every 3 steps, and the end
    (2, 4, [0, 2, 4]),         # the end is no second save when it was just saved
    (10, 3, [0, 3]),
])
def test_checkpoint_steps(tmp_path, every, last, expected):
    step, v, train = _model()
    with tf.train.MonitoredTrainingSession(checkpoint_dir=str(tmp_path), save_checkpoint_steps=every,
                                           hooks=[tf.train.StopAtStepHook(last_step=last)]) as sess:
        assert _run_to_stop(sess, train) == last
    assert _steps(tmp_path) == expected[-5:]  # the Saver's max_to_keep=5
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith(f"model.ckpt-{last}")
    assert tf.train.load_variable(str(tmp_path), "v") == 1.0 + last
    assert os.path.exists(os.path.join(str(tmp_path), f"model.ckpt-{last}.meta"))


@settings(max_examples=12, deadline=None)
@given(every=st.integers(1, 6), last=st.integers(1, 12))
def test_checkpoint_steps_follow_tfs_rule(tmp_path_factory, every, last):
    # The start (step 0), every step that is a multiple of `every`, and the last step; the
    # Saver keeps the newest 5.
    tf.reset_default_graph()
    d = str(tmp_path_factory.mktemp("ckpt"))
    step, v, train = _model()
    with tf.train.MonitoredTrainingSession(checkpoint_dir=d, save_checkpoint_steps=every, log_step_count_steps=None,
                                           hooks=[tf.train.StopAtStepHook(last_step=last)]) as sess:
        _run_to_stop(sess, train)
    want = sorted({0, last} | set(range(every, last + 1, every)))
    assert _steps(d) == want[-5:]


def test_restart_restores_the_latest_checkpoint(tmp_path):
    step, v, train = _model()
    with tf.train.MonitoredTrainingSession(checkpoint_dir=str(tmp_path), save_checkpoint_steps=3,
                                           hooks=[tf.train.StopAtStepHook(last_step=7)]) as sess:
        _run_to_stop(sess, train)
    tf.reset_default_graph()
    step, v, train = _model()
    with tf.train.MonitoredTrainingSession(checkpoint_dir=str(tmp_path), save_checkpoint_steps=3,
                                           hooks=[tf.train.StopAtStepHook(num_steps=2)]) as sess:
        assert [int(x) for x in sess.run([step, v])] == [7, 8]  # restored, not initialized
        assert _run_to_stop(sess, train) == 2
    assert _steps(tmp_path) == [0, 3, 6, 7, 9]


def test_a_new_checkpoint_dir_is_created(tmp_path):
    step, v, train = _model()
    d = str(tmp_path / "a" / "b")
    with tf.train.MonitoredTrainingSession(checkpoint_dir=d, save_checkpoint_steps=2) as sess:
        sess.run(train)
    assert _steps(d) == [0, 1]


def test_default_saves_every_600_seconds(tmp_path, monkeypatch):
    clock = [1000.0]

    class FakeTime:
        @staticmethod
        def time():
            return clock[0]

        @staticmethod
        def sleep(s):
            clock[0] += s

    monkeypatch.setattr(monitored, "time", FakeTime)
    step, v, train = _model()
    with tf.train.MonitoredTrainingSession(checkpoint_dir=str(tmp_path)) as sess:
        sess.run(train)
        sess.run(train)
        clock[0] += 600
        sess.run(train)  # step 3: 600 s after the save at step 0
        sess.run(train)
    assert _steps(tmp_path) == [0, 3, 4]


def test_no_checkpoints_when_both_are_none(tmp_path):
    step, v, train = _model()
    with tf.train.MonitoredTrainingSession(checkpoint_dir=str(tmp_path), save_checkpoint_secs=None,
                                           save_checkpoint_steps=None) as sess:
        sess.run(train)
    assert tf.train.latest_checkpoint(str(tmp_path)) is None


@pytest.mark.parametrize("kwargs, hook", [
    ({}, "StepCounterHook"),  # TF's hooks, in TF's order: the first to need the step says so
    ({"log_step_count_steps": None}, "SummarySaverHook"),
    ({"log_step_count_steps": None, "save_summaries_steps": None}, "CheckpointSaverHook"),
])
def test_checkpoint_hook_needs_a_global_step(tmp_path, kwargs, hook):
    tf.Variable(1.0, name="v")
    with pytest.raises(RuntimeError, match=f"Global step should be created to use {hook}"):
        tf.train.MonitoredTrainingSession(checkpoint_dir=str(tmp_path), **kwargs)
    with pytest.raises(RuntimeError, match="Global step should be created to use StopAtStepHook"):
        tf.train.MonitoredTrainingSession(hooks=[tf.train.StopAtStepHook(num_steps=1)])


def test_without_checkpoint_dir_it_initializes_and_runs():
    v = tf.Variable(1.0, name="v")
    local = tf.Variable(5.0, name="local", collections=[tf.GraphKeys.LOCAL_VARIABLES])
    with tf.train.MonitoredTrainingSession() as sess:
        assert float(sess.run(v.assign_add(1.0))) == 2.0
        assert float(sess.run(local)) == 5.0  # the local init op ran


def test_run_after_stop_and_after_close():
    step, v, train = _model()
    with tf.train.MonitoredTrainingSession(hooks=[tf.train.StopAtStepHook(last_step=1)]) as sess:
        sess.run(train)
        assert sess.should_stop()
        with pytest.raises(RuntimeError, match="Run called even after should_stop requested"):
            sess.run(train)
    assert sess.should_stop()


def test_an_error_skips_the_hooks_end(tmp_path):
    step, v, train = _model()
    log: list = []
    with pytest.raises(ZeroDivisionError), tf.train.MonitoredTrainingSession(
            checkpoint_dir=str(tmp_path), save_checkpoint_steps=100, hooks=[Recorder("h", log)]) as sess:
        sess.run(train)
        raise ZeroDivisionError("the user's step failed")
    assert ("h", "end") not in log
    assert _steps(tmp_path) == [0]  # no final save after a failure


def test_end_of_input_is_a_normal_end(tmp_path):
    step, v, train = _model()
    log: list = []
    with tf.train.MonitoredTrainingSession(checkpoint_dir=str(tmp_path), save_checkpoint_steps=100,
                                           hooks=[Recorder("h", log)]) as sess:
        sess.run(train)
        raise StopIteration  # TF swallows OutOfRangeError / StopIteration and ends normally
    assert log[-1] == ("h", "end")
    assert _steps(tmp_path) == [0, 1]


def test_scaffold_init_op_feed_and_init_fn():
    x = tf.placeholder(tf.float32, [], name="x")
    v = tf.Variable(0.0, name="v")
    w = tf.Variable(0.0, name="w")
    calls = []

    def init_fn(scaffold, sess):
        calls.append(scaffold)
        sess.run(w.assign(7.0))

    scaffold = tf.train.Scaffold(init_op=tf.group(v.initializer, w.initializer, v.assign(x)),
                                 init_feed_dict={x: 3.0}, init_fn=init_fn)
    with tf.train.MonitoredSession(session_creator=tf.train.ChiefSessionCreator(scaffold=scaffold)) as sess:
        assert [float(a) for a in sess.run([v, w])] == [3.0, 7.0]
    assert calls == [scaffold]


def test_scaffold_not_ready_is_an_error():
    tf.Variable(0.0, name="v")
    other = tf.Variable(0.0, name="other")
    scaffold = tf.train.Scaffold(init_op=other.initializer)
    with pytest.raises(RuntimeError, match="Init operations did not make model ready.*Variables not initialized: v"):
        tf.train.MonitoredSession(session_creator=tf.train.ChiefSessionCreator(scaffold=scaffold))


def test_scaffold_saver_from_the_collection():
    tf.Variable(0.0, name="v")
    saver = tf.train.Saver()
    assert tf.train.Scaffold().finalize().saver is saver
    tf.train.Saver()
    with pytest.raises(RuntimeError, match="More than one item"):
        tf.train.Scaffold().finalize()


def test_retention_follows_the_scaffolds_saver(tmp_path):
    step, v, train = _model()
    scaffold = tf.train.Scaffold(saver=tf.train.Saver(max_to_keep=2))
    with tf.train.MonitoredTrainingSession(checkpoint_dir=str(tmp_path), scaffold=scaffold, save_checkpoint_steps=1,
                                           hooks=[tf.train.StopAtStepHook(last_step=4)]) as sess:
        _run_to_stop(sess, train)
    assert _steps(tmp_path) == [3, 4]
    assert not os.path.exists(os.path.join(str(tmp_path), "model.ckpt-2"))


def test_hook_feeds_and_conflicts():
    x = tf.placeholder(tf.float32, [], name="x")
    v = tf.Variable(0.0, name="v")
    add = v.assign_add(x)

    class Feeder(tf.train.SessionRunHook):
        def before_run(self, run_context):
            return tf.train.SessionRunArgs(None, feed_dict={x: 2.0})

    with tf.train.MonitoredSession(hooks=[Feeder()]) as sess:
        assert float(sess.run(add)) == 2.0
        with pytest.raises(RuntimeError, match="Same tensor is fed by a SessionRunHook and user"):
            sess.run(add, feed_dict={x: 1.0})
    with pytest.raises(RuntimeError, match="Same tensor is fed by two hooks"), \
            tf.train.MonitoredSession(hooks=[Feeder(), Feeder()]) as sess:
        sess.run(add)


def test_stop_at_step_hook_arguments():
    with pytest.raises(ValueError, match="One of num_steps or last_step must be specified"):
        tf.train.StopAtStepHook()
    with pytest.raises(ValueError, match="Only one of num_steps or last_step can be specified"):
        tf.train.StopAtStepHook(num_steps=1, last_step=2)


def test_checkpoint_saver_hook_and_listener(tmp_path):
    step, v, train = _model()
    events = []

    class Listener(tf.train.CheckpointSaverListener):
        def begin(self):
            events.append("begin")

        def before_save(self, session, global_step_value):
            events.append(("before", global_step_value))

        def after_save(self, session, global_step_value):
            events.append(("after", global_step_value))
            return global_step_value >= 2  # ask to stop

        def end(self, session, global_step_value):
            events.append(("end", global_step_value))

    hook = tf.train.CheckpointSaverHook(str(tmp_path), save_steps=2, listeners=[Listener()],
                                        saver=tf.train.Saver())
    with tf.train.MonitoredSession(hooks=[hook]) as sess:
        n = _run_to_stop(sess, train)
    assert n == 2
    assert events == ["begin", ("before", 0), ("after", 0), ("before", 2), ("after", 2), ("end", 2)]
    with pytest.raises(ValueError, match="You cannot provide both saver and scaffold"):
        tf.train.CheckpointSaverHook(str(tmp_path), save_steps=1, saver=tf.train.Saver(), scaffold=tf.train.Scaffold())
    with pytest.raises(ValueError, match="Either every_secs or every_steps should be provided"):
        tf.train.CheckpointSaverHook(str(tmp_path))


def test_worker_waits_for_the_chief(monkeypatch):
    clock = [0.0]

    class FakeTime:
        @staticmethod
        def time():
            return clock[0]

        @staticmethod
        def sleep(s):
            clock[0] += s

    monkeypatch.setattr(monitored, "time", FakeTime)
    v = tf.Variable(1.0, name="v")
    with pytest.raises(Exception, match="Session was not ready after waiting 60 secs"):
        tf.train.MonitoredTrainingSession(is_chief=False, max_wait_secs=60)
    with tf.Session() as chief:
        chief.run(v.initializer)
    with tf.train.MonitoredTrainingSession(is_chief=False) as sess:
        assert float(sess.run(v)) == 1.0


def test_singular_monitored_session_and_step_fn(tmp_path):
    step, v, train = _model()
    with tf.train.SingularMonitoredSession(checkpoint_dir=str(tmp_path)) as sess:
        assert float(sess.raw_session().run(v)) == 1.0

        def step_fn(step_context):
            step_context.run_with_hooks(train)
            if float(step_context.session.run(v)) >= 3.0:
                step_context.request_stop()
            return "ran"

        assert sess.run_step_fn(step_fn) == "ran"
        sess.run_step_fn(step_fn)
        assert sess.should_stop()


def test_a_ps_failure_recreates_the_session_from_the_checkpoint(tmp_path):
    step, v, train = _model()
    failures = [1]

    def flaky(ctx):
        if failures:
            failures.pop()
            raise UnavailableError("ps task 0 is gone")

    flaky_op = tf.Operation("flaky", flaky)
    log: list = []
    with tf.train.MonitoredTrainingSession(checkpoint_dir=str(tmp_path), save_checkpoint_steps=1,
                                           hooks=[Recorder("h", log)]) as sess:
        sess.run(train)
        sess.run(train)  # saved at step 2
        sess.run(v.assign(100.0))  # lost with the failed session: not in a checkpoint
        sess.run([flaky_op, train])  # fails, recreates (restore step 2), runs again
        assert [int(x) for x in sess.run([step, v])] == [3, 4]
    assert log.count(("h", "after_create_session")) == 2


def test_eval_values_are_numpy():
    v = tf.Variable(np.arange(3, dtype=np.float32), name="v")
    with tf.train.MonitoredSession() as sess:
        assert sess.run(v).tolist() == [0.0, 1.0, 2.0]


# -- the basic hooks ----------------------------------------------------------------------------
def test_nan_tensor_hook():
    loss = tf.placeholder(tf.float32, [], name="loss")
    with pytest.raises(tf.train.NanLossDuringTrainingError, match="NaN loss during training"), \
            tf.train.MonitoredSession(hooks=[tf.train.NanTensorHook(loss)]) as sess:
        sess.run(loss, feed_dict={loss: 1.0})
        sess.run(loss, feed_dict={loss: float("nan")})
    with tf.train.MonitoredSession(hooks=[tf.train.NanTensorHook(loss, fail_on_nan_loss=False)]) as sess:
        sess.run(loss, feed_dict={loss: float("nan")})
        assert sess.should_stop()


def test_logging_tensor_hook(caplog):
    v = tf.Variable(1.0, name="v")
    inc = v.assign_add(1.0)
    hook = tf.train.LoggingTensorHook({"value": v, "by_name": "v:0"}, every_n_iter=2, at_end=True)
    with caplog.at_level("INFO", logger="varstore"), tf.train.MonitoredSession(hooks=[hook]) as sess:
        for _ in range(3):
            sess.run(inc)
    lines = [r.getMessage() for r in caplog.records if "value =" in r.getMessage()]
    # Runs 0 and 2 (values after each run), then at the end.
    assert [line.split(" (")[0] for line in lines] == ["by_name = 2.0, value = 2.0", "by_name = 4.0, value = 4.0",
                                                       "by_name = 4.0, value = 4.0"]
    with pytest.raises(ValueError, match="exactly one of every_n_iter and every_n_secs"):
        tf.train.LoggingTensorHook([v])


def test_feed_fn_and_final_ops_hooks():
    x = tf.placeholder(tf.float32, [], name="x")
    v = tf.Variable(0.0, name="v")
    add = v.assign_add(x)
    final = tf.train.FinalOpsHook(v * 10.0)
    with tf.train.MonitoredSession(hooks=[tf.train.FeedFnHook(lambda: {x: 2.5}), final]) as sess:
        sess.run(add)
        sess.run(add)
    assert float(final.final_ops_values) == 50.0


def test_step_counter_hook_logs_steps_per_second(monkeypatch, caplog):
    clock = [0.0]

    class FakeTime:
        @staticmethod
        def time():
            return clock[0]

    monkeypatch.setattr(monitored, "time", FakeTime)
    step, v, train = _model()
    hook = tf.train.StepCounterHook(every_n_steps=2)
    with caplog.at_level("INFO", logger="varstore"), tf.train.MonitoredSession(hooks=[hook]) as sess:
        for _ in range(5):
            clock[0] += 0.5
            sess.run(train)
    assert hook.steps_per_sec == pytest.approx(2.0)
    assert any("global_step/sec: 2" in r.getMessage() for r in caplog.records)


def test_global_step_waiter_hook(monkeypatch):
    step, v, train = _model()

    class FakeTime:
        time = staticmethod(lambda: 0.0)

        @staticmethod
        def sleep(s):
            chief.run(train)  # another worker trains meanwhile

    monkeypatch.setattr(monitored, "time", FakeTime)
    chief = tf.Session()
    with tf.train.MonitoredSession(hooks=[tf.train.GlobalStepWaiterHook(3)]) as sess:
        sess.run(tf.no_op())
        assert int(sess.run(step)) == 3


def test_eager_mode_is_refused():
    with tf.eager_mode():
        tf.Variable(1.0, name="v")
        with pytest.raises(RuntimeError, match="not supported when eager execution is enabled"):
            tf.train.MonitoredSession()
