"""Parameter-server tasks (``/job:ps/task:N``): arrays held by a Ray actor, one actor per task.

A ps task is a place whose arrays live in another process. ``devices.cluster``
starts or joins a Ray cluster, creates (or finds) one named actor per task and
registers a resolver with :func:`devices.manager.register_remote`; until then
no ps task exists, and soft placement puts such variables on the local CPU.

What lives where:

- The actor (:class:`PsTaskServer`) holds the arrays: numpy on the task's CPU,
  cupy on a GPU the actor was given (``/job:ps/task:1/device:GPU:0``). Every op
  that changes an array runs there: initial values are evaluated there from
  their *description* (data, never code: random values are drawn by the task's
  generator), assigns and optimizer updates run there, and checkpoint shards
  are written and read there.
- The driver holds :class:`RemoteArray` handles (a key, a shape, a dtype). A
  handle's array is deleted on the task when the handle is collected.
- Host data bound for a task (an assigned value, a gradient) is *staged*:
  ``PsDevice.asarray`` checks it and hands back the host array, and the call
  that consumes it sends it. Small data travels inside that call; larger data
  goes through ``ray.put`` (measured: 64 MiB by value 55-70 ms, through
  ``ray.put`` 17-19 ms), many small arrays packed into one buffer.
- Reads come back as Ray's read-only zero-copy views of the object store.

Failures: every wait has a timeout, and Ray's errors for a dead, restarting or
silent task become :class:`~devices.errors.UnavailableError` naming the task.
A restarted task has lost its arrays; any op that needs the old value raises
UnavailableError until the variables are restored (an op that overwrites the
whole array, an assign, an initializer, a restore, recreates it).

The modules, one role each (Ray is imported only when a cluster is used, so all load without it):

- :mod:`.client`: the driver's side: :class:`PsTask` (calls, waits, errors),
  :class:`RemoteArray`, :class:`PendingRead`;
- :mod:`.device`: :class:`PsDevice`, the Device interface over a task;
- :mod:`.wire`: what travels and how: size limits, the batched update's operand
  encoding (:func:`encode_updates`) and its decoding (:func:`decode_updates`);
- :mod:`.stream`: the direct byte stream that carries a step's gradients to a task on
  another node, once (driver :class:`~.stream.Sender`, task :class:`~.stream.Receiver`);
- :mod:`.server`: :class:`PsTaskServer`, the actor's code;
- :mod:`.operations`: the registry of what a task computes (update kernels, initial
  values), filled by the library above devices (:func:`register_operations`);
- :mod:`.protocols`: what the ps tier needs of that library's variables and values.
"""
from .client import DEFAULT_TIMEOUT, PendingRead, PsTask, RemoteArray, task_unavailable
from .device import PsDevice, initial_nbytes
from .operations import Operations, register_operations, registered
from .server import PsTaskServer
from .wire import BY_VALUE_MAX, PACK_MAX, PACKED, decode_updates, encode_updates

__all__ = [
    "PsDevice", "PsTask", "RemoteArray", "PendingRead", "PsTaskServer", "task_unavailable", "initial_nbytes",
    "DEFAULT_TIMEOUT", "BY_VALUE_MAX", "PACK_MAX", "PACKED", "encode_updates", "decode_updates",
    "Operations", "register_operations", "registered",
]
