"""varstore: TF 1.x's variables, on numpy/cupy/Ray devices, with fast and safe checkpoints.

The guide's code runs unchanged after ``import varstore as tf``:

>>> import varstore as tf
>>> weights = tf.Variable(tf.random_normal([784, 200], stddev=0.35), name="weights")
>>> biases = tf.Variable(tf.zeros([200]), name="biases")
>>> with tf.Session() as sess:
...     sess.run(tf.global_variables_initializer())
...     sess.run(biases).shape
(200,)
"""
import numpy as _np

from devices import DeviceSpec, device
from devices.dtypes import as_dtype, bfloat16

from . import errors
from .graph import (
    Graph,
    GraphKeys,
    add_to_collection,
    get_collection,
    get_default_graph,
    name_scope,
    reset_default_graph,
    set_random_seed,
)
from .init_ops import (
    constant_initializer,
    glorot_normal_initializer,
    glorot_uniform_initializer,
    he_normal,
    he_uniform,
    ones_initializer,
    random_normal_initializer,
    random_uniform_initializer,
    truncated_normal_initializer,
    variance_scaling_initializer,
    zeros_initializer,
)
from .initializers import (
    constant,
    fill,
    ones,
    random_normal,
    random_uniform,
    truncated_normal,
    zeros,
)
from .session import ConfigProto, GPUOptions, InteractiveSession, Session, get_default_session
from .tools.summary import summary
from .variables import (
    Variable,
    global_variables,
    global_variables_initializer,
    initialize_all_variables,
    is_variable_initialized,
    local_variables,
    local_variables_initializer,
    report_uninitialized_variables,
    trainable_variables,
    variables_initializer,
)

# dtypes by their TF names: tf.float32, tf.bfloat16, ...
float16 = half = _np.dtype("float16")
float32 = _np.dtype("float32")
float64 = double = _np.dtype("float64")
int8, int16, int32, int64 = (_np.dtype(n) for n in ("int8", "int16", "int32", "int64"))
uint8, uint16, uint32, uint64 = (_np.dtype(n) for n in ("uint8", "uint16", "uint32", "uint64"))
complex64, complex128 = _np.dtype("complex64"), _np.dtype("complex128")
globals()["bool"] = _np.dtype("bool")  # tf.bool, without shadowing the builtin in this module

__version__ = "0.1.0"


def __getattr__(name):
    # train and tools import the checkpoint stack; load them on first use so `import varstore` stays fast.
    if name in ("train", "tools", "checkpoint"):
        import importlib
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'varstore' has no attribute {name!r}")
