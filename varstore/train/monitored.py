"""TF 1.x's monitored training: ``MonitoredTrainingSession``, ``MonitoredSession``, hooks, ``Scaffold``.

A monitored session creates the session for you: it restores the latest
checkpoint of ``checkpoint_dir`` if there is one, else runs the init op
(``global_variables_initializer``) and the local init op. Then each ``run``
calls its hooks around the step (``before_run`` may add fetches and feeds;
``after_run`` sees their values and may request a stop), and closing it calls
the hooks' ``end`` (a ``CheckpointSaverHook`` saves a last time there).

``MonitoredTrainingSession`` adds a ``CheckpointSaverHook`` when given a
``checkpoint_dir``: a checkpoint at the starting step, then every
``save_checkpoint_steps`` steps or ``save_checkpoint_secs`` seconds (600 by
default) of the global step, and one at the end, through an ordinary
``Saver`` (the ``checkpoint`` state file, ``max_to_keep`` retention).

Differences from TF, on purpose: there are no summaries (varstore has no
summary writer): ``save_summaries_steps`` / ``save_summaries_secs`` /
``summary_dir`` / ``log_step_count_steps`` are accepted and ignored, and no
``graph.pbtxt`` or events file is written. The graph is not finalized (varstore
graphs cannot be). A session that fails with ``UnavailableError`` (a ps task
gone) is recreated, as TF's ``MonitoredSession`` does, by restoring the latest
checkpoint.

>>> import tempfile, varstore as tf
>>> tf.reset_default_graph()
>>> step = tf.train.get_or_create_global_step()
>>> w = tf.Variable(0.0, name="w")
>>> train = tf.group(tf.assign_add(step, 1), w.assign_add(0.5))
>>> d = tempfile.mkdtemp()
>>> hooks = [tf.train.StopAtStepHook(last_step=4)]
>>> with tf.train.MonitoredTrainingSession(checkpoint_dir=d, hooks=hooks, save_checkpoint_steps=2) as sess:
...     while not sess.should_stop():
...         _ = sess.run(train)
>>> sorted(p.rsplit("-", 1)[1] for p in tf.train.get_checkpoint_state(d).all_model_checkpoint_paths)
['0', '2', '4']
"""
from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from devices import errors as _errors
from devices.errors import FailedPreconditionError, OpError, UnavailableError

from ..graph import GraphKeys, get_default_graph
from ..ops import executing_eagerly, group
from ..session import Session
from ..variables import global_variables, global_variables_initializer, local_variables_initializer
from ..variables import report_uninitialized_variables as _report_uninitialized
from .optimizer import get_global_step
from .saver import Saver

log = logging.getLogger("varstore")

# TF's errors a recoverable session recreates itself after: a ps task or worker that went away.
_PREEMPTION_ERRORS: tuple = tuple(c for c in (UnavailableError, getattr(_errors, "AbortedError", None)) if c)


class _DeadlineExceededError(OpError, RuntimeError):
    """TF's DeadlineExceededError, until devices.errors has one: a wait that ran out of time."""


# Raised by a worker that waited too long for the chief. Not a preemption error: no retry.
_DeadlineExceeded: type = getattr(_errors, "DeadlineExceededError", _DeadlineExceededError)


class _UseDefault:
    def __repr__(self) -> str:
        return "USE_DEFAULT"


USE_DEFAULT = _UseDefault()


# -- the hook protocol -------------------------------------------------------------------------
class SessionRunArgs(collections.namedtuple("SessionRunArgs", ["fetches", "feed_dict", "options"])):
    """What a hook's ``before_run`` adds to a run: fetches (any structure), feeds, options."""

    def __new__(cls, fetches: Any, feed_dict: Any = None, options: Any = None) -> SessionRunArgs:
        return super().__new__(cls, fetches, feed_dict, options)


class SessionRunValues(collections.namedtuple("SessionRunValues", ["results", "options", "run_metadata"])):
    """What a hook's ``after_run`` receives: ``results`` are the values of its fetches."""


class SessionRunContext:
    """The run in progress: the caller's ``original_args``, the raw ``session``, and
    ``request_stop()`` (the monitored session stops after this run)."""

    def __init__(self, original_args: SessionRunArgs, session: Any):
        self._original_args = original_args
        self._session = session
        self._stop_requested = False

    @property
    def original_args(self) -> SessionRunArgs:
        return self._original_args

    @property
    def session(self) -> Any:
        return self._session

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    def request_stop(self) -> None:
        self._stop_requested = True


class SessionRunHook:
    """Hook into a monitored session. Calls, in TF's order: ``begin()`` when the session is
    made (the graph may still change), ``after_create_session(session, coord)`` once the
    variables are restored or initialized, ``before_run(run_context)`` and
    ``after_run(run_context, run_values)`` around each ``run``, ``end(session)`` at a close
    without error."""

    def begin(self) -> None:
        pass

    def after_create_session(self, session: Any, coord: Any) -> None:
        pass

    def before_run(self, run_context: SessionRunContext) -> SessionRunArgs | None:
        return None

    def after_run(self, run_context: SessionRunContext, run_values: SessionRunValues) -> None:
        pass

    def end(self, session: Any) -> None:
        pass


class CheckpointSaverListener:
    """Called around each save of a ``CheckpointSaverHook``; ``after_save`` returning True stops
    training."""

    def begin(self) -> None:
        pass

    def before_save(self, session: Any, global_step_value: int) -> None:
        pass

    def after_save(self, session: Any, global_step_value: int) -> bool | None:
        pass

    def end(self, session: Any, global_step_value: int) -> None:
        pass


class SecondOrStepTimer:
    """Triggers every ``every_secs`` seconds or every ``every_steps`` steps (one of them), as TF's."""

    def __init__(self, every_secs: float | None = None, every_steps: int | None = None):
        self.reset()
        self._every_secs, self._every_steps = every_secs, every_steps
        if every_secs is None and every_steps is None:
            raise ValueError("Either every_secs or every_steps should be provided.")
        if every_secs is not None and every_steps is not None:
            raise ValueError("Can not provide both every_secs and every_steps.")

    def reset(self) -> None:
        self._last_triggered_step: int | None = None
        self._last_triggered_time: float | None = None

    def should_trigger_for_step(self, step: int) -> bool:
        if self._last_triggered_step is None:
            return True
        if self._last_triggered_step == step:
            return False
        if self._every_secs is not None and time.time() >= self._last_triggered_time + self._every_secs:
            return True
        return self._every_steps is not None and step >= self._last_triggered_step + self._every_steps

    def update_last_triggered_step(self, step: int) -> tuple[float | None, int | None]:
        now = time.time()
        if self._last_triggered_time is None:
            elapsed: tuple[float | None, int | None] = (None, None)
        else:
            elapsed = (now - self._last_triggered_time, step - self._last_triggered_step)
        self._last_triggered_time, self._last_triggered_step = now, step
        return elapsed

    def last_triggered_step(self) -> int | None:
        return self._last_triggered_step


def _global_step_or_raise(hook: str) -> Any:
    step = get_global_step()
    if step is None:
        raise RuntimeError(f"Global step should be created to use {hook}.")
    return step


def _as_int(value: Any) -> int:
    return int(np.asarray(value).item())


class StopAtStepHook(SessionRunHook):
    """Request a stop when the global step reaches ``last_step``, or ``num_steps`` steps after the
    step the session started at (one of them)."""

    def __init__(self, num_steps: int | None = None, last_step: int | None = None):
        if num_steps is None and last_step is None:
            raise ValueError("One of num_steps or last_step must be specified.")
        if num_steps is not None and last_step is not None:
            raise ValueError("Only one of num_steps or last_step can be specified.")
        self._num_steps, self._last_step = num_steps, last_step

    def begin(self) -> None:
        self._global_step_tensor = _global_step_or_raise("StopAtStepHook")

    def after_create_session(self, session: Any, coord: Any) -> None:
        if self._last_step is None:
            self._last_step = _as_int(session.run(self._global_step_tensor)) + self._num_steps

    def before_run(self, run_context: SessionRunContext) -> SessionRunArgs:
        return SessionRunArgs(self._global_step_tensor)

    def after_run(self, run_context: SessionRunContext, run_values: SessionRunValues) -> None:
        global_step = _as_int(run_values.results) + 1
        if global_step >= self._last_step:
            # The fetched value may predate this step's increment: read it again, as TF does.
            step = _as_int(run_context.session.run(self._global_step_tensor))
            if step >= self._last_step:
                run_context.request_stop()


class CheckpointSaverHook(SessionRunHook):
    """Save checkpoints every ``save_steps`` steps or ``save_secs`` seconds (one of them), plus one
    when the session is created and one at its end, as TF's hook does.

    The Saver is ``saver``, else ``scaffold.saver``, else the one Saver in the graph's SAVERS
    collection. Checkpoints go to ``checkpoint_dir/checkpoint_basename-<global step>``.
    """

    def __init__(self, checkpoint_dir: str, save_secs: float | None = None, save_steps: int | None = None,
                 saver: Saver | None = None, checkpoint_basename: str = "model.ckpt", scaffold: Scaffold | None = None,
                 listeners: list | None = None, save_graph_def: bool = True):
        if saver is not None and scaffold is not None:
            raise ValueError("You cannot provide both saver and scaffold.")
        self._saver, self._scaffold = saver, scaffold
        self._checkpoint_dir = checkpoint_dir
        self._save_path = os.path.join(checkpoint_dir, checkpoint_basename)
        self._timer = SecondOrStepTimer(every_secs=save_secs, every_steps=save_steps)
        self._listeners = list(listeners or [])
        self._steps_per_run = 1
        self._save_graph_def = save_graph_def  # whether each save writes its .meta file

    def begin(self) -> None:
        # TF's hook opens a summary writer on the directory here, which creates it: a new
        # checkpoint_dir (nested too) works there, so it must here.
        from ..checkpoint.store import store_for
        if store_for(self._checkpoint_dir).local:
            os.makedirs(self._checkpoint_dir, exist_ok=True)
        self._global_step_tensor = _global_step_or_raise("CheckpointSaverHook")
        for listener in self._listeners:
            listener.begin()

    def after_create_session(self, session: Any, coord: Any) -> None:
        # The state at the starting step (0, or the restored one) is saved first, as TF does.
        global_step = _as_int(session.run(self._global_step_tensor))
        self._save(session, global_step)
        self._timer.update_last_triggered_step(global_step)

    def before_run(self, run_context: SessionRunContext) -> SessionRunArgs:
        return SessionRunArgs(self._global_step_tensor)

    def after_run(self, run_context: SessionRunContext, run_values: SessionRunValues) -> None:
        stale = _as_int(run_values.results)
        if self._timer.should_trigger_for_step(stale + self._steps_per_run):
            global_step = _as_int(run_context.session.run(self._global_step_tensor))
            if self._timer.should_trigger_for_step(global_step):
                self._timer.update_last_triggered_step(global_step)
                if self._save(run_context.session, global_step):
                    run_context.request_stop()

    def end(self, session: Any) -> None:
        last_step = _as_int(session.run(self._global_step_tensor))
        if last_step != self._timer.last_triggered_step():
            self._save(session, last_step)
        for listener in self._listeners:
            listener.end(session, last_step)

    def _save(self, session: Any, step: int) -> bool:
        """Save at ``step``; True when a listener asks to stop."""
        for listener in self._listeners:
            listener.before_save(session, step)
        log.info("Saving checkpoints for %d into %s.", step, self._save_path)
        self._get_saver().save(session, self._save_path, global_step=step, write_meta_graph=self._save_graph_def)
        should_stop = False
        for listener in self._listeners:
            if listener.after_save(session, step):
                log.info("A CheckpointSaverListener requested that training be stopped. listener: %s", listener)
                should_stop = True
        return should_stop

    def _get_saver(self) -> Saver:
        if self._saver is not None:
            return self._saver
        if self._scaffold is not None:
            return self._scaffold.saver
        savers = get_default_graph().get_collection(GraphKeys.SAVERS)
        if not savers:
            raise RuntimeError(f"No items in collection {GraphKeys.SAVERS}. Please add a saver to the collection "
                               f"or provide a saver or scaffold.")
        if len(savers) > 1:
            raise RuntimeError(f"More than one item in collection {GraphKeys.SAVERS}. Please indicate which one to "
                               f"use by passing it to the constructor.")
        self._saver = savers[0]
        return self._saver


class NanLossDuringTrainingError(RuntimeError):
    """Raised by a NanTensorHook when the loss is NaN."""

    def __str__(self) -> str:
        return "NaN loss during training."


class NanTensorHook(SessionRunHook):
    """Fail (``NanLossDuringTrainingError``), or with ``fail_on_nan_loss=False`` stop, when
    ``loss_tensor`` is NaN after a step."""

    def __init__(self, loss_tensor: Any, fail_on_nan_loss: bool = True):
        self._loss_tensor, self._fail_on_nan_loss = loss_tensor, fail_on_nan_loss

    def before_run(self, run_context: SessionRunContext) -> SessionRunArgs:
        return SessionRunArgs(self._loss_tensor)

    def after_run(self, run_context: SessionRunContext, run_values: SessionRunValues) -> None:
        if np.isnan(run_values.results):
            if self._fail_on_nan_loss:
                log.error("Model diverged with loss = NaN.")
                raise NanLossDuringTrainingError
            log.warning("Model diverged with loss = NaN.")
            run_context.request_stop()


def _as_graph_element(obj: Any) -> Any:
    """A tensor given by name (``"loss"`` or ``"loss:0"``) looked up in the default graph."""
    if not isinstance(obj, str):
        return obj
    return get_default_graph().get_tensor_by_name(obj if ":" in obj else obj + ":0")


class _NeverTriggerTimer(SecondOrStepTimer):
    def __init__(self) -> None:
        self.reset()

    def should_trigger_for_step(self, step: int) -> bool:
        return False


class LoggingTensorHook(SessionRunHook):
    """Log ``tensors`` (a list, or a dict of tag -> tensor or name) every ``every_n_iter`` runs
    or ``every_n_secs`` seconds, and/or ``at_end``, at INFO on the ``varstore`` logger."""

    def __init__(self, tensors: Any, every_n_iter: int | None = None, every_n_secs: float | None = None,
                 at_end: bool = False, formatter: Callable | None = None):
        only_at_end = at_end and every_n_iter is None and every_n_secs is None
        if not only_at_end and (every_n_iter is None) == (every_n_secs is None):
            raise ValueError("either at_end and/or exactly one of every_n_iter and every_n_secs must be provided.")
        if every_n_iter is not None and every_n_iter <= 0:
            raise ValueError(f"invalid every_n_iter={every_n_iter}.")
        if not isinstance(tensors, dict):
            self._tag_order = list(tensors)
            tensors = {item: item for item in tensors}
        else:
            self._tag_order = sorted(tensors)
        self._tensors, self._formatter, self._log_at_end = tensors, formatter, at_end
        self._timer = _NeverTriggerTimer() if only_at_end else SecondOrStepTimer(every_secs=every_n_secs,
                                                                                 every_steps=every_n_iter)

    def begin(self) -> None:
        self._timer.reset()
        self._iter_count = 0
        self._current_tensors = {tag: _as_graph_element(t) for tag, t in self._tensors.items()}

    def before_run(self, run_context: SessionRunContext) -> SessionRunArgs | None:
        self._should_trigger = self._timer.should_trigger_for_step(self._iter_count)
        return SessionRunArgs(self._current_tensors) if self._should_trigger else None

    def _log_tensors(self, values: dict) -> None:
        elapsed, _ = self._timer.update_last_triggered_step(self._iter_count)
        with np.printoptions(suppress=True):
            if self._formatter:
                log.info(self._formatter(values))
                return
            stats = ", ".join(f"{tag} = {values[tag]}" for tag in self._tag_order)
            if elapsed is not None:
                log.info("%s (%.3f sec)", stats, elapsed)
            else:
                log.info("%s", stats)

    def after_run(self, run_context: SessionRunContext, run_values: SessionRunValues) -> None:
        if self._should_trigger:
            self._log_tensors(run_values.results)
        self._iter_count += 1

    def end(self, session: Any) -> None:
        if self._log_at_end:
            self._log_tensors(session.run(self._current_tensors))


class StepCounterHook(SessionRunHook):
    """Log global steps per second every ``every_n_steps`` steps or ``every_n_secs`` seconds.
    ``output_dir`` and ``summary_writer`` are accepted and ignored (no summaries here)."""

    def __init__(self, every_n_steps: int | None = 100, every_n_secs: float | None = None,
                 output_dir: str | None = None, summary_writer: Any = None):
        if (every_n_steps is None) == (every_n_secs is None):
            raise ValueError("exactly one of every_n_steps and every_n_secs should be provided.")
        self._timer = SecondOrStepTimer(every_steps=every_n_steps, every_secs=every_n_secs)
        self.steps_per_sec: float | None = None  # the last rate logged

    def begin(self) -> None:
        self._global_step_tensor = _global_step_or_raise("StepCounterHook")

    def before_run(self, run_context: SessionRunContext) -> SessionRunArgs:
        return SessionRunArgs(self._global_step_tensor)

    def after_run(self, run_context: SessionRunContext, run_values: SessionRunValues) -> None:
        step = _as_int(run_values.results)
        if self._timer.should_trigger_for_step(step):
            secs, steps = self._timer.update_last_triggered_step(step)
            if secs is not None and secs > 0:
                self.steps_per_sec = steps / secs
                log.info("global_step/sec: %g", self.steps_per_sec)


class _SummarySaverHook(SessionRunHook):
    """Where TF's MonitoredTrainingSession adds a SummarySaverHook: no summaries are written here,
    but a missing global step is the same error as TF's."""

    def begin(self) -> None:
        _global_step_or_raise("SummarySaverHook")


class FeedFnHook(SessionRunHook):
    """Feed ``feed_fn()`` (a feed dict) into every run."""

    def __init__(self, feed_fn: Callable[[], dict]):
        self.feed_fn = feed_fn

    def before_run(self, run_context: SessionRunContext) -> SessionRunArgs:
        return SessionRunArgs(fetches=None, feed_dict=self.feed_fn())


class FinalOpsHook(SessionRunHook):
    """Run ``final_ops`` when the session ends; their values are ``final_ops_values``."""

    def __init__(self, final_ops: Any, final_ops_feed_dict: Any = None):
        self._final_ops, self._final_ops_feed_dict = final_ops, final_ops_feed_dict
        self._final_ops_values = None

    @property
    def final_ops_values(self) -> Any:
        return self._final_ops_values

    def end(self, session: Any) -> None:
        if self._final_ops is not None:
            self._final_ops_values = session.run(self._final_ops, feed_dict=self._final_ops_feed_dict)


class GlobalStepWaiterHook(SessionRunHook):
    """Hold the first run until the global step reaches ``wait_until_step`` (a worker waiting for
    the chief to train a while first)."""

    def __init__(self, wait_until_step: int):
        self._wait_until_step = wait_until_step

    def begin(self) -> None:
        self._worker_is_started = False
        self._global_step_tensor = _global_step_or_raise("GlobalStepWaiterHook")

    def before_run(self, run_context: SessionRunContext) -> None:
        if self._worker_is_started or self._wait_until_step <= 0:
            self._worker_is_started = True
            return None
        last_logged = None
        while True:
            step = _as_int(run_context.session.run(self._global_step_tensor))
            if step >= self._wait_until_step:
                self._worker_is_started = True
                return None
            if step != last_logged:
                log.info("Waiting for global step %d before starting training (at %d).", self._wait_until_step, step)
                last_logged = step
            time.sleep(0.5)


# -- coordinator ------------------------------------------------------------------------------
class Coordinator:
    """TF's thread coordinator, as far as monitored sessions use it: a stop flag that hooks and
    threads can raise (with an exception to re-raise), and ``join`` for registered threads."""

    def __init__(self, clean_stop_exception_types: tuple = ()):
        self._clean_stop_exception_types = tuple(clean_stop_exception_types) or (StopIteration,)
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._exc_info: tuple | None = None
        self._registered_threads: set = set()
        self._joined = False

    def request_stop(self, ex: BaseException | None = None) -> None:
        with self._lock:
            if ex is not None and not isinstance(ex, self._clean_stop_exception_types) and self._exc_info is None:
                self._exc_info = (type(ex), ex, ex.__traceback__)
            self._stop_event.set()

    def clear_stop(self) -> None:
        with self._lock:
            self._joined = False
            self._exc_info = None
            self._stop_event.clear()

    def should_stop(self) -> bool:
        return self._stop_event.is_set()

    def wait_for_stop(self, timeout: float | None = None) -> bool:
        return self._stop_event.wait(timeout)

    @contextlib.contextmanager
    def stop_on_exception(self) -> Iterator[None]:
        try:
            yield
        except BaseException as e:  # any failure in the block stops the others, and is kept
            self.request_stop(e)

    def register_thread(self, thread: threading.Thread) -> None:
        with self._lock:
            self._registered_threads.add(thread)

    def join(self, threads: Any = None, stop_grace_period_secs: float = 120, ignore_live_threads: bool = False) -> None:
        threads = set(threads or ()) | self._registered_threads
        while any(t.is_alive() for t in threads) and not self.wait_for_stop(1.0):
            pass
        deadline = time.time() + stop_grace_period_secs
        for t in threads:
            t.join(max(0.0, deadline - time.time()))
        self._joined = True
        self._registered_threads = set()
        stragglers = [t.name for t in threads if t.is_alive()]
        self.raise_requested_exception()
        if stragglers and not ignore_live_threads:
            raise RuntimeError(f"Coordinator stopped with threads still running: {' '.join(stragglers)}")

    @property
    def joined(self) -> bool:
        return self._joined

    def raise_requested_exception(self) -> None:
        with self._lock:
            exc = self._exc_info
        if exc is not None:
            raise exc[1].with_traceback(exc[2])


# -- scaffold and session creators -----------------------------------------------------------
class Scaffold:
    """What a monitored session needs to make a session: init op, ready ops, local init op, Saver.

    Anything not given is made by ``finalize()`` (when the session is created), as TF: the
    init op initializes every global variable existing then, the ready op reports
    uninitialized variables, the local init op initializes local variables, and the Saver
    is the graph's one (SAVERS collection) or a new ``Saver(sharded=True, allow_empty=True)``.
    ``init_fn(scaffold, session)`` runs after the init op when nothing was restored.
    """

    def __init__(self, init_op: Any = None, init_feed_dict: Any = None, init_fn: Callable | None = None,
                 ready_op: Any = None, ready_for_local_init_op: Any = None, local_init_op: Any = None,
                 summary_op: Any = None, saver: Saver | None = None, copy_from_scaffold: Scaffold | None = None,
                 local_init_feed_dict: Any = None):
        if copy_from_scaffold is not None:
            if not isinstance(copy_from_scaffold, Scaffold):
                raise TypeError("copy_from_scaffold is not a Scaffold instance.")
            coalesce = lambda a, b: a if a is not None else b  # noqa: E731 - TF's own helper, inline
            init_op = coalesce(init_op, copy_from_scaffold.init_op)
            init_feed_dict = coalesce(init_feed_dict, copy_from_scaffold.init_feed_dict)
            init_fn = coalesce(init_fn, copy_from_scaffold._user_init_fn)
            ready_op = coalesce(ready_op, copy_from_scaffold.ready_op)
            ready_for_local_init_op = coalesce(ready_for_local_init_op, copy_from_scaffold.ready_for_local_init_op)
            local_init_op = coalesce(local_init_op, copy_from_scaffold.local_init_op)
            local_init_feed_dict = coalesce(local_init_feed_dict, copy_from_scaffold.local_init_feed_dict)
            summary_op = coalesce(summary_op, copy_from_scaffold.summary_op)
            saver = coalesce(saver, copy_from_scaffold.saver)
        self._user_init_fn = init_fn
        self._init_fn = (lambda sess: init_fn(self, sess)) if init_fn else None
        self._init_op, self._init_feed_dict = init_op, init_feed_dict
        self._ready_op, self._ready_for_local_init_op = ready_op, ready_for_local_init_op
        self._local_init_op, self._local_init_feed_dict = local_init_op, local_init_feed_dict
        self._summary_op, self._saver = summary_op, saver

    def finalize(self) -> Scaffold:
        """Make what was not given (see the class docstring)."""
        if self._init_op is None:
            self._init_op = _get_or_default("init_op", "init_op", lambda: global_variables_initializer())
        if self._ready_op is None:
            self._ready_op = _get_or_default("ready_op", "ready_op", lambda: _report_uninitialized())
        if self._ready_for_local_init_op is None:
            self._ready_for_local_init_op = _get_or_default(
                "ready_for_local_init_op", "ready_for_local_init_op",
                lambda: _report_uninitialized(global_variables()))
        if self._local_init_op is None:
            self._local_init_op = _get_or_default("local_init_op", "local_init_op", Scaffold.default_local_init_op)
        if self._saver is None:
            self._saver = _get_saver_or_default()
        return self

    @staticmethod
    def default_local_init_op() -> Any:
        """TF's default: initialize the local variables (there are no lookup tables here)."""
        return group(local_variables_initializer())

    @staticmethod
    def get_or_default(arg_name: str, collection_key: str, default_constructor: Callable) -> Any:
        return _get_or_default(arg_name, collection_key, default_constructor)

    init_fn = property(lambda self: self._init_fn)
    init_op = property(lambda self: self._init_op)
    ready_op = property(lambda self: self._ready_op)
    ready_for_local_init_op = property(lambda self: self._ready_for_local_init_op)
    local_init_op = property(lambda self: self._local_init_op)
    local_init_feed_dict = property(lambda self: self._local_init_feed_dict)
    summary_op = property(lambda self: self._summary_op)
    saver = property(lambda self: self._saver)
    init_feed_dict = property(lambda self: self._init_feed_dict)


def _get_or_default(arg_name: str, collection_key: str, default_constructor: Callable) -> Any:
    elements = get_default_graph().get_collection(collection_key)
    if elements:
        if len(elements) > 1:
            raise RuntimeError(f"More than one item in the collection \"{collection_key}\". Please indicate which "
                               f"one to use by passing it to the tf.Scaffold constructor as:  "
                               f"tf.Scaffold({arg_name}=item to use)")
        return elements[0]
    op = default_constructor()
    if op is not None:
        get_default_graph().add_to_collection(collection_key, op)
    return op


def _get_saver_or_default() -> Saver:
    savers = get_default_graph().get_collection(GraphKeys.SAVERS)
    if savers:
        if len(savers) > 1:
            raise RuntimeError(f"More than one item in the {GraphKeys.SAVERS} collection. Please indicate which "
                               f"one to use by passing it to the constructor.")
        return savers[0]
    return Saver(sharded=True, allow_empty=True)  # adds itself to the SAVERS collection


def _op_name(op: Any) -> Any:
    return getattr(op, "name", op)


def _ready(op: Any, sess: Session) -> tuple[bool, str | None]:
    """TF's readiness check: the op reports no uninitialized variables (an empty result)."""
    if op is None:
        return True, None
    try:
        value = sess.run(op)
    except FailedPreconditionError as e:
        if "uninitialized" not in str(e):
            raise
        return False, str(e)
    value = np.asarray(value) if value is not None else None
    if value is None or value.dtype == np.int32 or value.size == 0:
        return True, None
    names = ", ".join(x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in value.reshape(-1))
    return False, "Variables not initialized: " + names


class SessionCreator:
    """Makes a session for a monitored session."""

    def create_session(self) -> Session:
        raise NotImplementedError


class ChiefSessionCreator(SessionCreator):
    """The chief's session: restore the latest checkpoint of ``checkpoint_dir`` (or
    ``checkpoint_filename_with_path``) if there is one, else run the init op and ``init_fn``;
    then the local init op; then check the model is ready."""

    def __init__(self, scaffold: Scaffold | None = None, master: str = "", config: Any = None,
                 checkpoint_dir: str | None = None, checkpoint_filename_with_path: str | None = None):
        self._scaffold = scaffold or Scaffold()
        self._master, self._config = master, config
        self._checkpoint_dir = checkpoint_dir
        self._checkpoint_filename_with_path = checkpoint_filename_with_path

    def create_session(self) -> Session:
        from .checkpoint_state import get_checkpoint_state
        scaffold = self._scaffold.finalize()
        sess = Session(self._master, config=self._config)
        if self._checkpoint_dir and self._checkpoint_filename_with_path:
            raise ValueError("Can not provide both checkpoint_dir and checkpoint_filename_with_path.")
        saver = scaffold.saver
        restored = False
        if saver is not None and self._checkpoint_filename_with_path:
            saver.restore(sess, self._checkpoint_filename_with_path)
            restored = True
        elif saver is not None and self._checkpoint_dir:
            ckpt = get_checkpoint_state(self._checkpoint_dir)
            if ckpt is not None and ckpt.model_checkpoint_path:
                log.info("Restoring parameters from %s", ckpt.model_checkpoint_path)
                saver.restore(sess, ckpt.model_checkpoint_path)
                saver.recover_last_checkpoints(ckpt.all_model_checkpoint_paths)
                restored = True
        if not restored:
            if scaffold.init_op is None and not scaffold.init_fn and scaffold.local_init_op is None:
                raise RuntimeError("Model is not initialized and no init_op or init_fn or local_init_op was given")
            if scaffold.init_op is not None:
                sess.run(scaffold.init_op, feed_dict=scaffold.init_feed_dict)
            if scaffold.init_fn:
                scaffold.init_fn(sess)
        ok, msg = _try_local_init(scaffold, sess)
        if not ok:
            raise RuntimeError(f"Init operations did not make model ready for local_init.  Init op: "
                               f"{_op_name(scaffold.init_op)}, init fn: {scaffold.init_fn}, error: {msg}")
        ready, msg = _ready(scaffold.ready_op, sess)
        if not ready:
            raise RuntimeError(f"Init operations did not make model ready.  Init op: {_op_name(scaffold.init_op)}, "
                               f"init fn: {scaffold.init_fn}, local_init_op: {_op_name(scaffold.local_init_op)}, "
                               f"error: {msg}")
        return sess


def _try_local_init(scaffold: Scaffold, sess: Session) -> tuple[bool, str | None]:
    if scaffold.local_init_op is None:
        return True, None
    ready, msg = _ready(scaffold.ready_for_local_init_op, sess)
    if not ready:
        return False, msg
    sess.run(scaffold.local_init_op, feed_dict=scaffold.local_init_feed_dict)
    return True, None


class WorkerSessionCreator(SessionCreator):
    """A non-chief worker's session: wait (up to ``max_wait_secs``) until the chief has
    initialized or restored the global variables, then run the local init op."""

    def __init__(self, scaffold: Scaffold | None = None, master: str = "", config: Any = None,
                 max_wait_secs: float = 30 * 60, recovery_wait_secs: float = 30):
        self._scaffold = scaffold or Scaffold()
        self._master, self._config = master, config
        self._max_wait_secs, self._recovery_wait_secs = max_wait_secs, recovery_wait_secs

    def create_session(self) -> Session:
        scaffold = self._scaffold.finalize()
        deadline = time.time() + self._max_wait_secs
        while True:
            sess = Session(self._master, config=self._config)
            ok, msg = _try_local_init(scaffold, sess)
            if ok:
                ready, msg = _ready(scaffold.ready_op, sess)
                if ready:
                    return sess
            sess.close()
            remaining = deadline - time.time()
            if remaining <= 0:
                raise _DeadlineExceeded(f"Session was not ready after waiting {self._max_wait_secs} secs.")
            log.info("Waiting for model to be ready.  Ready_for_local_init_op:  %s, ready: %s",
                     _op_name(scaffold.ready_for_local_init_op), msg)
            time.sleep(min(self._recovery_wait_secs, remaining))


# -- monitored sessions ----------------------------------------------------------------------
class _StopRequested(Exception):
    pass


class StepContext:
    """What ``run_step_fn``'s ``step_fn(step_context)`` receives: the raw session, ``run_with_hooks``
    (a monitored ``run``) and ``request_stop()``."""

    def __init__(self, session: Session, run_with_hooks_fn: Callable):
        self._session, self._run_with_hooks_fn = session, run_with_hooks_fn

    @property
    def session(self) -> Session:
        return self._session

    def run_with_hooks(self, *args: Any, **kwargs: Any) -> Any:
        return self._run_with_hooks_fn(*args, **kwargs)

    def request_stop(self) -> None:
        raise _StopRequested("step_fn has requested the iterations to stop.")


class _MonitoredSession:
    """The shared machinery of MonitoredSession and SingularMonitoredSession."""

    def __init__(self, session_creator: SessionCreator | None, hooks: list | None, should_recover: bool,
                 stop_grace_period_secs: float = 120):
        if executing_eagerly():
            # Its init ops would run (and re-initialize every variable) as they are built; TF's
            # monitored sessions fail in eager mode too.
            raise RuntimeError("MonitoredSession needs graph mode: it is not supported when eager execution is "
                               "enabled (build and run it under tf.graph_mode() or after tf.disable_eager_execution())")
        self._hooks = list(hooks or [])
        for h in self._hooks:
            h.begin()
        self._creator = session_creator or ChiefSessionCreator()
        self._stop_grace_period_secs = stop_grace_period_secs
        self._should_recover = should_recover
        self._graph = get_default_graph()
        self._tf_session: Session | None = None
        self._coord: Coordinator | None = None
        self._hook_stop = False
        self._closed = False
        self._create()

    # -- the session and its recovery ------------------------------------------------------
    def _create(self) -> None:
        while True:
            try:
                sess = self._creator.create_session()
                break
            except _PREEMPTION_ERRORS as e:
                if not self._should_recover:
                    raise
                log.info("An error was raised while a session was being created; trying again: %s", e)
                time.sleep(1)
        self._tf_session, self._coord = sess, Coordinator()
        for h in self._hooks:
            h.after_create_session(sess, self._coord)

    def _close_session(self) -> None:
        sess, coord = self._tf_session, self._coord
        self._tf_session = None
        try:
            if coord is not None:
                coord.request_stop()
                coord.join(stop_grace_period_secs=self._stop_grace_period_secs, ignore_live_threads=True)
        finally:
            if sess is not None:
                sess.close()

    @property
    def graph(self) -> Any:
        return self._graph

    def _tf_sess(self) -> Session | None:
        return self._tf_session

    def should_stop(self) -> bool:
        """True once a hook, the coordinator or ``close`` asked to stop."""
        return self._closed or self._hook_stop or (self._coord is not None and self._coord.should_stop())

    # -- runs ---------------------------------------------------------------------------------
    def run(self, fetches: Any, feed_dict: Any = None, options: Any = None, run_metadata: Any = None) -> Any:
        """``fetches`` run with the hooks' fetches and feeds, in one session run."""
        if self._closed:
            raise RuntimeError("Session is already closed.")
        while True:
            try:
                if self._tf_session is None:
                    self._create()
                return self._hooked_run(fetches, feed_dict, options, run_metadata)
            except _PREEMPTION_ERRORS as e:
                if not self._should_recover:
                    raise
                log.info("An error was raised. This may be due to a preemption in a connected worker or "
                         "parameter server. The current session will be closed and a new session will be "
                         "created. Error: %s", e)
                self._close_session()

    def _hooked_run(self, fetches: Any, feed_dict: Any, options: Any, run_metadata: Any) -> Any:
        if self.should_stop():
            raise RuntimeError("Run called even after should_stop requested.")
        sess = self._tf_session
        actual_fetches: dict = {"caller": fetches}
        context = SessionRunContext(original_args=SessionRunArgs(fetches, feed_dict), session=sess)
        feeds = self._call_before_run(context, actual_fetches, feed_dict)
        try:
            outputs = sess.run(actual_fetches, feed_dict=feeds)
        except Exception:
            if self._coord is not None:
                self._coord.raise_requested_exception()  # a hook thread's failure explains this one
            raise
        for hook in self._hooks:
            hook.after_run(context, SessionRunValues(results=outputs.get(hook), options=options,
                                                     run_metadata=run_metadata))
        self._hook_stop = self._hook_stop or context.stop_requested
        return outputs["caller"]

    def _call_before_run(self, context: SessionRunContext, fetch_dict: dict, user_feeds: Any) -> Any:
        hook_feeds: dict = {}
        for hook in self._hooks:
            request = hook.before_run(context)
            if request is None:
                continue
            if request.fetches is not None:
                fetch_dict[hook] = request.fetches
            if request.feed_dict:
                _raise_if_feeds_intersect(hook_feeds, request.feed_dict, "Same tensor is fed by two hooks.")
                hook_feeds.update(request.feed_dict)
        if not hook_feeds:
            return user_feeds
        if not user_feeds:
            return hook_feeds
        _raise_if_feeds_intersect(user_feeds, hook_feeds, "Same tensor is fed by a SessionRunHook and user.")
        hook_feeds.update(user_feeds)
        return hook_feeds

    def run_step_fn(self, step_fn: Callable) -> Any:
        """Run ``step_fn(step_context)``: it may run the raw session, ``run_with_hooks``, or stop."""
        try:
            return step_fn(StepContext(self._tf_session, self.run))
        except _StopRequested:
            self._hook_stop = True
            return None

    # -- closing ------------------------------------------------------------------------------
    def close(self) -> None:
        """Call the hooks' ``end`` (a CheckpointSaverHook saves there) and close the session."""
        self._close_internal(None)

    def _close_internal(self, exception_type: Any) -> None:
        if self._closed:
            return
        try:
            if exception_type is None and self._tf_session is not None:
                for h in self._hooks:
                    h.end(self._tf_session)
        finally:
            self._closed = True
            self._close_session()

    def __enter__(self) -> _MonitoredSession:
        return self

    def __exit__(self, exception_type: Any, exception_value: Any, traceback: Any) -> bool:
        # The end of the input (OutOfRangeError, StopIteration) is a normal end: hooks' end runs
        # and the exception is swallowed, as TF does.
        if exception_type is StopIteration or getattr(exception_type, "__name__", "") == "OutOfRangeError":
            exception_type = None
        self._close_internal(exception_type)
        return exception_type is None


def _raise_if_feeds_intersect(feeds1: Any, feeds2: Any, message: str) -> None:
    common = set(map(id, feeds1)) & set(map(id, feeds2))
    if common:
        names = [getattr(k, "name", k) for k in feeds1 if id(k) in common]
        raise RuntimeError(f"{message} Conflict(s): {names}")


class MonitoredSession(_MonitoredSession):
    """A session that creates itself (``session_creator``, default ``ChiefSessionCreator()``), runs
    hooks around each run, and recreates itself after a ps task failure (UnavailableError).

    >>> import varstore as tf
    >>> tf.reset_default_graph()
    >>> v = tf.Variable(1.0, name="v")
    >>> with tf.train.MonitoredSession() as sess:
    ...     float(sess.run(v.assign_add(1.0)))
    2.0
    """

    def __init__(self, session_creator: SessionCreator | None = None, hooks: list | None = None,
                 stop_grace_period_secs: float = 120):
        super().__init__(session_creator, hooks, should_recover=True, stop_grace_period_secs=stop_grace_period_secs)


class SingularMonitoredSession(_MonitoredSession):
    """A chief's monitored session without recovery, with ``raw_session()``."""

    def __init__(self, hooks: list | None = None, scaffold: Scaffold | None = None, master: str = "",
                 config: Any = None, checkpoint_dir: str | None = None, stop_grace_period_secs: float = 120,
                 checkpoint_filename_with_path: str | None = None):
        creator = ChiefSessionCreator(scaffold=scaffold, master=master, config=config, checkpoint_dir=checkpoint_dir,
                                      checkpoint_filename_with_path=checkpoint_filename_with_path)
        super().__init__(creator, hooks, should_recover=False, stop_grace_period_secs=stop_grace_period_secs)

    def raw_session(self) -> Session | None:
        """The underlying session (runs without the hooks)."""
        return self._tf_sess()


def MonitoredTrainingSession(master: str = "", is_chief: bool = True, checkpoint_dir: str | None = None,  # noqa: N802
                             scaffold: Scaffold | None = None, hooks: list | None = None,
                             chief_only_hooks: list | None = None, save_checkpoint_secs: Any = USE_DEFAULT,
                             save_summaries_steps: Any = USE_DEFAULT, save_summaries_secs: Any = USE_DEFAULT,
                             config: Any = None, stop_grace_period_secs: float = 120,
                             log_step_count_steps: int | None = 100, max_wait_secs: float = 7200,
                             save_checkpoint_steps: Any = USE_DEFAULT, summary_dir: str | None = None,
                             save_graph_def: bool = True) -> MonitoredSession:
    """A MonitoredSession set up for training, as TF 1.x's.

    The chief restores the latest checkpoint of ``checkpoint_dir`` or initializes the
    variables, and (with a ``checkpoint_dir``) saves checkpoints through a
    ``CheckpointSaverHook``: every ``save_checkpoint_steps`` steps, else every
    ``save_checkpoint_secs`` seconds (600 when neither is given; pass both as None for
    none). Hooks run in this order: ``chief_only_hooks``, the checkpoint hook, ``hooks``.
    A non-chief (``is_chief=False``) waits up to ``max_wait_secs`` for the chief to
    initialize the variables and runs only ``hooks``.

    Summary arguments (``save_summaries_steps``, ``save_summaries_secs``, ``summary_dir``) are
    accepted, and no summaries are written (varstore has no summary writer); as in TF, saving
    summaries needs a global step. ``log_step_count_steps`` logs global steps per second (a
    ``StepCounterHook``) on the ``varstore`` logger.

    A global step must exist when checkpoints are saved (``tf.train.get_or_create_global_step()``
    first), as in TF: otherwise the CheckpointSaverHook raises RuntimeError.
    """
    if save_summaries_steps is USE_DEFAULT and save_summaries_secs is USE_DEFAULT:
        save_summaries_steps, save_summaries_secs = 100, None
    elif save_summaries_secs is USE_DEFAULT:
        save_summaries_secs = None
    elif save_summaries_steps is USE_DEFAULT:
        save_summaries_steps = None
    if save_checkpoint_steps is USE_DEFAULT and save_checkpoint_secs is USE_DEFAULT:
        save_checkpoint_steps, save_checkpoint_secs = None, 600
    elif save_checkpoint_secs is USE_DEFAULT:
        save_checkpoint_secs = None
    elif save_checkpoint_steps is USE_DEFAULT:
        save_checkpoint_steps = None
    scaffold = scaffold or Scaffold()
    if not is_chief:
        creator = WorkerSessionCreator(scaffold=scaffold, master=master, config=config, max_wait_secs=max_wait_secs)
        return MonitoredSession(session_creator=creator, hooks=hooks or [],
                                stop_grace_period_secs=stop_grace_period_secs)
    all_hooks: list = list(chief_only_hooks or [])
    creator = ChiefSessionCreator(scaffold=scaffold, checkpoint_dir=checkpoint_dir, master=master, config=config)
    if summary_dir or checkpoint_dir:
        # TF's StepCounterHook and SummarySaverHook, in its order: the first logs steps/sec (no
        # summary file here); the second writes nothing here but, as TF's, needs a global step.
        if log_step_count_steps and log_step_count_steps > 0:
            all_hooks.append(StepCounterHook(every_n_steps=log_step_count_steps))
        if (save_summaries_steps and save_summaries_steps > 0) or (save_summaries_secs and save_summaries_secs > 0):
            all_hooks.append(_SummarySaverHook())
    if checkpoint_dir and ((save_checkpoint_secs and save_checkpoint_secs > 0)
                           or (save_checkpoint_steps and save_checkpoint_steps > 0)):
        all_hooks.append(CheckpointSaverHook(checkpoint_dir, save_steps=save_checkpoint_steps,
                                             save_secs=save_checkpoint_secs, scaffold=scaffold,
                                             save_graph_def=save_graph_def))
    all_hooks.extend(hooks or [])
    return MonitoredSession(session_creator=creator, hooks=all_hooks, stop_grace_period_secs=stop_grace_period_secs)


__all__ = ["MonitoredTrainingSession", "MonitoredSession", "SingularMonitoredSession", "Scaffold",
           "SessionRunHook", "SessionRunArgs", "SessionRunContext", "SessionRunValues", "CheckpointSaverHook",
           "CheckpointSaverListener", "StopAtStepHook", "SecondOrStepTimer", "Coordinator", "SessionCreator",
           "ChiefSessionCreator", "WorkerSessionCreator", "StepContext", "USE_DEFAULT", "NanTensorHook",
           "NanLossDuringTrainingError", "LoggingTensorHook", "StepCounterHook", "FeedFnHook", "FinalOpsHook",
           "GlobalStepWaiterHook"]
