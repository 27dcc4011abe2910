"""A direct byte stream from the driver to a ps task on another node, for gradients.

Through Ray, a gradient bound for another node is copied into the driver's object
store (``ray.put``), pulled by the task's node into its own object store, and read
there: two copies and a pull protocol per step (measured on the loopback 3-node
cluster: 64 x 1 MiB over 2 tasks, 21-27 ms on one node, 67-83 ms across nodes). Over
a stream, the driver writes each gradient's bytes straight from its array into a TCP
connection and the task reads them into one reused buffer: each gradient moves once.

Control stays with Ray: the update call (its int64 columns, the operation) travels
as a Ray call as before, and carries the stream's *layout* (dtype, shape of each
array, in order); the bytes follow on the stream, in the order the calls were sent.
The task reads a call's bytes before anything else can fail, so the stream never
falls out of step; if reading fails (the driver died), the connection is closed and
the next call opens a new one.

Security: the task listens on its node's address (the one Ray uses for it) on a port
the OS picks; a connection must present a 32-byte secret that the driver got through
Ray's authenticated channel, within a few seconds, or it is closed unread. Nothing
read from a stream is ever executed or unpickled: raw array bytes only.

>>> layout, segments, nbytes = plan_layout(([np.ones(3, np.float32)], [np.zeros(2, np.int64)]))
>>> layout, nbytes                       # each array padded to 64 bytes
(((('float32', (3,)),), (('int64', (2,)),)), 128)
"""
from __future__ import annotations

import hmac
import os
import queue
import socket
import struct
import threading
from collections.abc import Callable

import numpy as np

from ...dtypes import as_dtype

ALIGN = 64  # every array starts at a multiple of this in the receive buffer (and on the wire)
_HELLO = struct.Struct("<32sQ")  # secret, stream id
_HANDSHAKE_TIMEOUT = 5.0
_PAD = bytes(ALIGN)


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def plan_layout(data: tuple) -> tuple[tuple, list, int]:
    """``data`` (``(arrays, bufs)`` of :func:`.wire.encode_updates`) as what the call carries
    (dtype and shape of each array, per group), the byte segments to send (padding
    included) and their total."""
    layout, segments, offset = [], [], 0
    for group in data:
        entries = []
        for a in group:
            entries.append((a.dtype.name, tuple(a.shape)))  # by name: bfloat16's .str is a bare '<V2'
            if a.nbytes:
                segments.append(a.reshape(-1).view(np.uint8))
            pad = _aligned(a.nbytes) - a.nbytes
            if pad:
                segments.append(_PAD[:pad])
            offset += _aligned(a.nbytes)
        layout.append(tuple(entries))
    return tuple(layout), segments, offset


class Sender:
    """The driver's end of one task's stream: a connection and a thread that writes the
    byte segments of each call in the order the calls were sent."""

    def __init__(self, host: str, port: int, secret: bytes, stream_id: int, timeout: float):
        self.stream_id = stream_id
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(_HELLO.pack(secret, stream_id))
        self.error: BaseException | None = None
        self._jobs: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=f"varstore-ps-stream {host}:{port}", daemon=True)
        self._thread.start()

    def send(self, segments: list) -> Callable[[], None]:
        """Queue ``segments`` for writing; returns the wait (raises the write's error)."""
        done = threading.Event()
        box: list = []
        self._jobs.put((segments, done, box))

        def wait(timeout: float | None = None) -> None:
            if not done.wait(timeout):
                raise TimeoutError("stream write did not finish")
            if box:
                raise box[0]
        return wait

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            segments, done, box = job
            try:
                if self.error is not None:
                    raise self.error
                for seg in segments:
                    self.sock.sendall(seg)
            except BaseException as e:  # noqa: BLE001 - reported to the call's wait
                self.error = self.error or e
                box.append(e)
            finally:
                done.set()

    @property
    def broken(self) -> bool:
        return self.error is not None

    def close(self) -> None:
        self._jobs.put(None)
        try:
            self.sock.close()
        except OSError:
            pass


class Receiver:
    """The task's end: a listener on its node's address, the connections that presented the
    secret (by stream id), and one reused receive buffer."""

    def __init__(self, host: str):
        self.secret = os.urandom(32)
        self.listener = socket.create_server((host, 0), backlog=16)
        self.address = (host, self.listener.getsockname()[1])
        self._conns: dict[int, socket.socket] = {}
        self._cond = threading.Condition()
        self._buffer = np.empty(0, np.uint8)
        threading.Thread(target=self._accept, name="varstore-ps-accept", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._hello, args=(conn,), daemon=True).start()

    def _hello(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(_HANDSHAKE_TIMEOUT)
            raw = _read_exact(conn, _HELLO.size)
            secret, stream_id = _HELLO.unpack(raw)
            if not hmac.compare_digest(secret, self.secret):
                raise ConnectionError("wrong secret")
            conn.settimeout(None)
        except (OSError, ConnectionError, struct.error):
            conn.close()
            return
        with self._cond:
            old = self._conns.pop(stream_id, None)
            if old is not None:
                old.close()
            self._conns[stream_id] = conn
            self._cond.notify_all()

    def receive(self, stream_id: int, layout: tuple, nbytes: int, timeout: float) -> tuple:
        """Read one call's bytes from stream ``stream_id``; returns ``layout``'s arrays (read-only
        views of the reused buffer, valid until the next receive)."""
        with self._cond:
            # The driver connected before sending the call; only its handshake may still be in flight.
            if not self._cond.wait_for(lambda: stream_id in self._conns, _HANDSHAKE_TIMEOUT):
                raise ConnectionError(f"stream {stream_id}: the driver did not connect")
            conn = self._conns[stream_id]
        if self._buffer.nbytes < nbytes:
            self._buffer = np.empty(nbytes, np.uint8)
        view = memoryview(self._buffer)[:nbytes]
        try:
            conn.settimeout(timeout)
            got = 0
            while got < nbytes:
                n = conn.recv_into(view[got:], nbytes - got)
                if n == 0:
                    raise ConnectionError("the driver closed the stream")
                got += n
        except BaseException:
            with self._cond:
                if self._conns.get(stream_id) is conn:
                    del self._conns[stream_id]
            conn.close()
            raise
        out, offset = [], 0
        for group in layout:
            arrays = []
            for dtype, shape in group:
                dt = as_dtype(dtype)
                count = int(np.prod(shape, dtype=np.int64)) if shape else 1
                a = self._buffer[offset:offset + count * dt.itemsize].view(dt).reshape(shape)
                a.flags.writeable = False
                arrays.append(a)
                offset += _aligned(count * dt.itemsize)
            out.append(arrays)
        return tuple(out)

    def close(self) -> None:
        self.listener.close()
        with self._cond:
            for c in self._conns.values():
                c.close()
            self._conns.clear()


def _read_exact(conn: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed during the handshake")
        buf += chunk
    return bytes(buf)


def node_address() -> str:
    """The address Ray uses for this process's node (where a task listens)."""
    import ray  # noqa: PLC0415 - only inside a task
    return ray.util.get_node_ip_address()


def stream_id() -> int:
    return int.from_bytes(os.urandom(8), "little") >> 1


__all__ = ["ALIGN", "Receiver", "Sender", "plan_layout", "node_address", "stream_id"]
