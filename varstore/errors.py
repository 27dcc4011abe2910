"""The errors varstore raises: the same classes as ``devices.errors``, so one set catches all.

>>> import varstore as tf
>>> try:
...     tf.device("/gpu:x").__enter__()
... except tf.errors.InvalidArgumentError as e:
...     print("bad spec")
bad spec
"""
from devices.errors import (
                            AbortedError,
                            CancelledError,
                            DataLossError,
                            DeadlineExceededError,
                            FailedPreconditionError,
                            InvalidArgumentError,
                            InvalidTypeError,
                            MissingFileError,
                            NotACheckpointError,
                            NotFoundError,
                            OpError,
                            OutOfRangeError,
                            PermissionDeniedError,
                            ResourceExhaustedError,
                            UnavailableError,
                            UnimplementedError,
)

__all__ = ["OpError", "InvalidArgumentError", "InvalidTypeError", "FailedPreconditionError", "NotFoundError",
           "NotACheckpointError", "MissingFileError", "OutOfRangeError", "AbortedError", "DeadlineExceededError",
           "CancelledError", "UnimplementedError",
           "DataLossError", "UnavailableError", "ResourceExhaustedError", "PermissionDeniedError"]
