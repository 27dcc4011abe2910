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
import typing as _typing

from devices import DeviceSpec, device
from devices.dtypes import DType, as_dtype
from devices.shapes import Dimension, TensorShape, dimension_at_index, dimension_value

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
from .ops import (
    Operation,
    control_dependencies,
    disable_eager_execution,
    eager_mode,
    enable_eager_execution,
    executing_eagerly,
    graph_mode,
    group,
    no_op,
)
from .partitioned import (
    PartitionedVariable,
    fixed_size_partitioner,
    min_max_variable_partitioner,
    variable_axis_size_partitioner,
)
from .session import ConfigProto, GPUOptions, InteractiveSession, Session, get_default_session
from .tensors import (
    IndexedSlices,
    Tensor,
    abs,
    add,
    add_n,
    cast,
    ceil,
    concat,
    convert_to_tensor,
    divide,
    equal,
    exp,
    floor,
    floordiv,
    gather,
    greater,
    greater_equal,
    identity,
    less,
    less_equal,
    log,
    matmul,
    maximum,
    minimum,
    mod,
    multiply,
    negative,
    not_equal,
    ones_like,
    placeholder,
    placeholder_with_default,
    pow,
    reciprocal,
    reduce_max,
    reduce_mean,
    reduce_min,
    reduce_prod,
    reduce_sum,
    reshape,
    round,
    rsqrt,
    sigmoid,
    sign,
    sqrt,
    square,
    squared_difference,
    stack,
    subtract,
    tanh,
    to_float,
    transpose,
    truediv,
    zeros_like,
)
from .var_scope import (
    AUTO_REUSE,
    VariableScope,
    get_local_variable,
    get_variable,
    get_variable_scope,
    variable_scope,
)
from .variables import (
    Variable,
    assign,
    assign_add,
    assign_sub,
    global_variables,
    global_variables_initializer,
    initialize_all_variables,
    is_variable_initialized,
    local_variables,
    local_variables_initializer,
    report_uninitialized_variables,
    scatter_add,
    scatter_sub,
    scatter_update,
    trainable_variables,
    variables_initializer,
)

# dtypes by their TF names: tf.float32, tf.bfloat16, ... DType objects: TF's DType API, and numpy
# takes them as dtypes (np.zeros(3, tf.float32)).
float16 = half = as_dtype("float16")
float32 = as_dtype("float32")
float64 = double = as_dtype("float64")
int8, int16, int32, int64 = (as_dtype(n) for n in ("int8", "int16", "int32", "int64"))
uint8, uint16, uint32, uint64 = (as_dtype(n) for n in ("uint8", "uint16", "uint32", "uint64"))
complex64, complex128 = as_dtype("complex64"), as_dtype("complex128")
globals()["bool"] = as_dtype("bool")  # tf.bool, without shadowing the builtin in this module

# The one place the version is written: pyproject.toml reads it from here (`version = {attr = ...}`).
__version__ = "0.1.0"

if _typing.TYPE_CHECKING:  # spelled so: mypy recognises the attribute name, not an alias
    # What __getattr__ below loads on first use. A type checker sees the real modules and
    # objects, and no module-level __getattr__ at all, so `tf.Varible` is an error, not Any.
    from devices.dtypes import bfloat16_dtype as bfloat16

    from . import checkpoint, tools, train
    from .tools.summary import summary
    from .train.moving_averages import moving_average_variables
else:
    def __getattr__(name):
        # train, tools and checkpoint import the checkpoint stack, and bfloat16 ml_dtypes (0.5-1 s
        # with numpy 2.x): load them on first use so `import varstore` stays fast.
        import importlib
        if name in _LAZY_MODULES:
            return importlib.import_module(f"{__name__}.{name}")
        if name in _LAZY_NAMES:
            module, attr = _LAZY_NAMES[name]
            return getattr(importlib.import_module(module), attr)
        raise AttributeError(f"module 'varstore' has no attribute {name!r}")

_LAZY_MODULES = frozenset({"train", "tools", "checkpoint"})
_LAZY_NAMES = {"summary": ("varstore.tools.summary", "summary"), "bfloat16": ("devices.dtypes", "bfloat16_dtype")}
_LAZY_NAMES["moving_average_variables"] = ("varstore.train.moving_averages", "moving_average_variables")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY_MODULES | set(_LAZY_NAMES))
