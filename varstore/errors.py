"""The errors varstore raises: the same classes as ``devices.errors``, so one set catches all.

>>> import varstore as tf
>>> try:
...     tf.device("/gpu:x").__enter__()
... except tf.errors.InvalidArgumentError as e:
...     print("bad spec")
bad spec
"""
from devices.errors import (
                            DataLossError,
                            FailedPreconditionError,
                            InvalidArgumentError,
                            InvalidTypeError,
                            MissingFileError,
                            NotACheckpointError,
                            NotFoundError,
                            OpError,
                            PermissionDeniedError,
                            ResourceExhaustedError,
                            UnavailableError,
)

__all__ = ["OpError", "InvalidArgumentError", "InvalidTypeError", "FailedPreconditionError", "NotFoundError",
           "NotACheckpointError", "MissingFileError",
           "DataLossError", "UnavailableError", "ResourceExhaustedError", "PermissionDeniedError"]
