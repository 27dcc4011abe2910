"""The error hierarchy shared by every layer (re-exported by ``varstore.errors``).

Each class is an :class:`OpError` (TensorFlow's names) and also the builtin a
Python user would reach for first, so ``except ValueError`` still catches a
bad shape and ``except LookupError`` a missing checkpoint key.

>>> from devices.errors import InvalidArgumentError
>>> issubclass(InvalidArgumentError, ValueError)
True
"""
from __future__ import annotations


class OpError(Exception):
    """Base class of every error varstore raises on purpose."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidArgumentError(OpError, ValueError):
    """A malformed device string, or a shape or dtype that does not fit."""


class InvalidTypeError(InvalidArgumentError, TypeError):
    """A value of the wrong type or dtype for an op (TF raises TypeError there: ``float32 + int32``,
    ``1.5`` for an int32 variable); also an InvalidArgumentError."""


class FailedPreconditionError(OpError, RuntimeError):
    """An operation needs state that is not there yet (an uninitialized variable)."""


class NotFoundError(OpError, LookupError):
    """A missing checkpoint, file or tensor key."""


class NotACheckpointError(NotFoundError, ValueError):
    """``Saver.restore`` of a path that holds no checkpoint (TF raises ValueError there)."""


class MissingFileError(NotFoundError, OSError):
    """A file that does not exist where TF raises OSError (``import_meta_graph``)."""


class DataLossError(OpError, ValueError):
    """A corrupt, truncated or hostile checkpoint: checksum, bounds or format."""


class ResourceExhaustedError(OpError, MemoryError):
    """An allocation this device cannot make (a shape far larger than its memory)."""


class UnavailableError(OpError, RuntimeError):
    """A device, parameter-server task or storage endpoint that is gone or cannot be reached."""


class OutOfRangeError(OpError, IndexError):
    """An iteration or input that has run out (TF's end-of-input signal; MonitoredSession stops on it)."""


class AbortedError(OpError, RuntimeError):
    """An operation that was aborted, typically by a concurrent action (a session may retry)."""


class DeadlineExceededError(OpError, TimeoutError):
    """An operation that did not finish before its deadline."""


class CancelledError(OpError, RuntimeError):
    """An operation that was cancelled."""


class UnimplementedError(OpError, NotImplementedError):
    """An operation this library does not provide."""


class PermissionDeniedError(OpError, RuntimeError):
    """Storage that refuses access: missing or wrong credentials (not an OSError, so that
    no file-error handler mistakes it for a local disk's)."""


__all__ = [
    "OpError",
    "InvalidArgumentError",
    "InvalidTypeError",
    "FailedPreconditionError",
    "NotFoundError",
    "NotACheckpointError",
    "MissingFileError",
    "DataLossError",
    "UnavailableError",
    "ResourceExhaustedError",
    "PermissionDeniedError",
    "OutOfRangeError",
    "AbortedError",
    "DeadlineExceededError",
    "CancelledError",
    "UnimplementedError",
]
