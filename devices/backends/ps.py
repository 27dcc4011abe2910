"""Parameter-server tasks (``/job:ps/task:N``).

A ps task is a place whose arrays live in another process. The Ray
implementation registers itself with :func:`devices.manager.register_remote`
when a cluster is started or joined (``devices.cluster``); until then no ps
task exists, and soft placement puts such variables on the local CPU.
"""
from __future__ import annotations

from ..errors import UnavailableError
from .base import Device


class PsDevice(Device):
    """Interface of a remote task. Every method needs a live cluster."""

    kind = "ps"

    def _gone(self, *_a, **_k):
        raise UnavailableError(f"ps task {self.name}: no cluster is connected")

    empty = asarray = to_host = host_chunks = rng = _gone

    @property
    def xp(self):
        self._gone()

    def holds(self, array):
        return False
