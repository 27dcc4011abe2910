"""Variable sharing, as TF 1.x: ``tf.get_variable`` and ``tf.variable_scope``.

``get_variable(name, ...)`` makes a variable named ``<variable scope>/<name>``, or returns
the one made before under that name when the scope reuses (``reuse=True``,
``tf.AUTO_REUSE``). The name depends on the variable scope only, never on
``tf.name_scope``; a ``variable_scope`` opens a name scope as well, for the ops and
``tf.Variable`` s made inside. With a ``partitioner`` it returns a
:class:`~varstore.partitioned.PartitionedVariable`.

>>> import varstore as tf
>>> tf.reset_default_graph()
>>> def layer():
...     return tf.get_variable("w", [3, 2])
>>> with tf.variable_scope("dense"):
...     w1 = layer()
>>> with tf.variable_scope("dense", reuse=True):
...     w2 = layer()
>>> w1 is w2, w1.op.name
(True, 'dense/w')

The module is ``var_scope``, not ``variable_scope``: ``varstore.variable_scope`` is the
function, and a module of the same name would shadow it for ``import varstore.variable_scope``.
"""
from __future__ import annotations

import contextlib
import copy
import enum
import functools
import inspect
import threading
from collections.abc import Callable, Iterable
from typing import Any

from devices.dtypes import as_dtype, is_floating
from devices.errors import InvalidArgumentError
from devices.shapes import as_shape

from . import init_ops
from . import initializers as _init
from . import partitioned as _part
from .graph import Graph, GraphKeys, get_default_graph
from .variables import Variable


class _ReuseMode(enum.Enum):
    """Reuse modes besides True and False (TF's)."""

    AUTO_REUSE = 1


AUTO_REUSE = _ReuseMode.AUTO_REUSE
"""``reuse=tf.AUTO_REUSE``: get_variable returns the variable if it exists and makes it if not."""


# -- the store of variables made by get_variable (one per graph) -----------------------------------
class _VariableStore:
    """get_variable's variables by full name, and its partitioned variables (TF's _VariableStore)."""

    def __init__(self) -> None:
        self.vars: dict[str, Variable] = {}
        self.partitioned: dict[str, _part.PartitionedVariable] = {}
        self.lock = threading.RLock()


def _per_graph(graph: Graph, attr: str, make: Any) -> Any:
    """``graph.<attr>``, made by ``make()`` the first time (once, even with threads racing)."""
    value = getattr(graph, attr)
    if value is None:
        with graph._lock:
            value = getattr(graph, attr)
            if value is None:
                value = make()
                setattr(graph, attr, value)
    return value


def _variable_store(graph: Graph) -> _VariableStore:
    return _per_graph(graph, "_variable_store", _VariableStore)


class _ScopeState(threading.local):
    """One thread's current variable scope in one graph, and how often each scope name was
    opened (for ``default_name`` uniqueness), as TF's _VariableScopeStore."""

    def __init__(self) -> None:
        self.current_scope = VariableScope(False)
        self.counts: dict[str, int] = {}

    def open_variable_scope(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def close_variable_subscopes(self, name: str | None) -> None:
        if name is None:
            for k in self.counts:
                self.counts[k] = 0
            return
        prefix = name + "/"
        for k in self.counts:
            if k.startswith(prefix):
                self.counts[k] = 0


def _scope_state(graph: Graph) -> _ScopeState:
    return _per_graph(graph, "_var_scopes", _ScopeState)


# -- VariableScope -----------------------------------------------------------------------------
class VariableScope:
    """The defaults ``get_variable`` takes from the enclosing ``variable_scope``: name prefix,
    reuse, initializer, regularizer, partitioner, dtype, custom getter.

    >>> import varstore as tf
    >>> tf.reset_default_graph()
    >>> with tf.variable_scope("enc", initializer=tf.zeros_initializer()) as scope:
    ...     scope.name, scope.original_name_scope, scope.reuse
    ('enc', 'enc/', False)
    """

    def __init__(self, reuse: Any, name: str = "", initializer: Any = None, regularizer: Any = None,
                 caching_device: Any = None, partitioner: Any = None, custom_getter: Any = None,
                 name_scope: str = "", dtype: Any = "float32", use_resource: Any = None, constraint: Any = None):
        self._name = name
        self._initializer = initializer
        self._regularizer = regularizer
        self._reuse = reuse
        self._caching_device = caching_device
        self._partitioner = partitioner
        self._custom_getter = custom_getter
        self._name_scope = name_scope
        self._dtype = as_dtype(dtype)
        self._use_resource = use_resource
        self._constraint = constraint

    name = property(lambda self: self._name, doc="The scope's full name: the prefix of get_variable's names.")
    original_name_scope = property(lambda self: self._name_scope,
                                   doc="The name scope opened when the scope was first made (``'enc/'``).")
    reuse = property(lambda self: self._reuse, doc="False, True or AUTO_REUSE.")
    initializer = property(lambda self: self._initializer)
    dtype = property(lambda self: self._dtype)
    use_resource = property(lambda self: self._use_resource)
    regularizer = property(lambda self: self._regularizer)
    caching_device = property(lambda self: self._caching_device)
    partitioner = property(lambda self: self._partitioner)
    custom_getter = property(lambda self: self._custom_getter)
    constraint = property(lambda self: self._constraint)

    def reuse_variables(self) -> None:
        """Reuse variables in this scope from now on (``reuse`` becomes True)."""
        self._reuse = True

    def set_initializer(self, initializer: Any) -> None:
        self._initializer = initializer

    def set_dtype(self, dtype: Any) -> None:
        self._dtype = as_dtype(dtype)

    def set_use_resource(self, use_resource: Any) -> None:
        self._use_resource = use_resource

    def set_regularizer(self, regularizer: Any) -> None:
        self._regularizer = regularizer

    def set_caching_device(self, caching_device: Any) -> None:
        self._caching_device = caching_device

    def set_partitioner(self, partitioner: Any) -> None:
        self._partitioner = partitioner

    def set_custom_getter(self, custom_getter: Any) -> None:
        self._custom_getter = custom_getter

    def get_collection(self, name: str) -> list:
        """The items of collection ``name`` under this scope."""
        return get_default_graph().get_collection(name, self._name + "/" if self._name else "")

    def trainable_variables(self) -> list:
        return self.get_collection(GraphKeys.TRAINABLE_VARIABLES)

    def global_variables(self) -> list:
        return self.get_collection(GraphKeys.GLOBAL_VARIABLES)

    def local_variables(self) -> list:
        return self.get_collection(GraphKeys.LOCAL_VARIABLES)

    def get_variable(self, var_store: _VariableStore, name: str, shape: Any = None, dtype: Any = None,
                     initializer: Any = None, regularizer: Any = None, reuse: Any = None, trainable: Any = None,
                     collections: Iterable[str] | None = None, caching_device: Any = None, partitioner: Any = None,
                     validate_shape: bool = True, use_resource: Any = None, custom_getter: Any = None,
                     constraint: Any = None) -> Any:
        """``get_variable`` with this scope's defaults filled in."""
        if regularizer is None:
            regularizer = self._regularizer
        if caching_device is None:
            caching_device = self._caching_device
        if partitioner is None:
            partitioner = self._partitioner
        if custom_getter is None:
            custom_getter = self._custom_getter
        if reuse is None:
            reuse = self._reuse
        if use_resource is None:
            use_resource = self._use_resource
        full_name = f"{self._name}/{name}" if self._name else name
        graph = get_default_graph()
        # Variable names depend on the variable scope only, never on the name scope.
        with graph.name_scope(None):
            if dtype is not None and initializer is not None and not callable(initializer):
                init_dtype = _init.as_initial_value(initializer).dtype
                if init_dtype != as_dtype(dtype):
                    raise InvalidArgumentError(f"Initializer type '{init_dtype.name}' and explicit dtype "
                                               f"'{as_dtype(dtype).name}' don't match.")
            if initializer is None:
                initializer = self._initializer
            if constraint is None:
                constraint = self._constraint
            if dtype is None:
                dtype = self._dtype
            return _get(var_store, graph, full_name, shape=shape, dtype=dtype, initializer=initializer,
                        regularizer=regularizer, reuse=reuse, trainable=trainable, collections=collections,
                        caching_device=caching_device, partitioner=partitioner, validate_shape=validate_shape,
                        use_resource=use_resource, custom_getter=custom_getter, constraint=constraint)

    def __repr__(self) -> str:
        return f"<varstore.VariableScope name={self._name!r} reuse={self._reuse!r}>"


def get_variable_scope() -> VariableScope:
    """The current variable scope (the root one, named ``""``, outside any ``variable_scope``).

    >>> import varstore as tf
    >>> tf.reset_default_graph()
    >>> with tf.variable_scope("a"):
    ...     with tf.variable_scope("b"):
    ...         tf.get_variable_scope().name
    'a/b'
    """
    return _scope_state(get_default_graph()).current_scope


# -- get_variable --------------------------------------------------------------------------
def get_variable(name: str, shape: Any = None, dtype: Any = None, initializer: Any = None, regularizer: Any = None,
                 trainable: bool | None = None, collections: Iterable[str] | None = None,
                 caching_device: Any = None, partitioner: Callable | None = None, validate_shape: bool = True,
                 use_resource: Any = None, custom_getter: Callable | None = None, constraint: Any = None,
                 **unused_tf_options: Any) -> Any:
    """The variable ``<current variable scope>/<name>``: made now, or, in a scope that reuses
    (``reuse=True`` or ``tf.AUTO_REUSE``), the one made before.

    ``initializer``: an initializer object (``tf.zeros_initializer()``, or the class itself),
    a function ``f(shape, dtype=None, partition_info=None)``, or a value (a deferred tensor
    such as ``tf.constant(...)``, a Python or numpy value, another Variable), whose shape is
    then the variable's (do not pass ``shape``). Without one: the scope's initializer, else
    glorot_uniform for floats and zeros for ints and bools, as TF 1.x.

    ``partitioner`` (or the scope's): a :class:`~varstore.partitioned.PartitionedVariable`
    of parts ``<name>/part_<i>``, each an ordinary variable placed by the device scope.

    ``caching_device`` and ``use_resource`` are accepted and have no effect (a varstore
    variable is read where it lives); ``constraint`` is kept on the variable as
    ``v.constraint``; the optimizers do not apply it. ``regularizer(v)``'s result, when not
    None, goes into the ``GraphKeys.REGULARIZATION_LOSSES`` collection.

    Raises ValueError (InvalidArgumentError) as TF does: a name that exists in a scope that
    does not reuse, a name that does not exist in a scope with ``reuse=True``, a shape or
    dtype other than the existing variable's.

    >>> import varstore as tf
    >>> tf.reset_default_graph()
    >>> with tf.variable_scope("foo"):
    ...     v = tf.get_variable("v", [1])
    >>> with tf.variable_scope("foo", reuse=True):
    ...     v1 = tf.get_variable("v")
    >>> v1 is v
    True
    """
    return get_variable_scope().get_variable(
        _variable_store(get_default_graph()), name, shape=shape, dtype=dtype, initializer=initializer,
        regularizer=regularizer, trainable=trainable, collections=collections, caching_device=caching_device,
        partitioner=partitioner, validate_shape=validate_shape, use_resource=use_resource,
        custom_getter=custom_getter, constraint=constraint)


def get_local_variable(name: str, shape: Any = None, dtype: Any = None, initializer: Any = None,
                       regularizer: Any = None, trainable: bool = False, collections: Iterable[str] | None = None,
                       caching_device: Any = None, partitioner: Callable | None = None, validate_shape: bool = True,
                       use_resource: Any = None, custom_getter: Callable | None = None, constraint: Any = None,
                       **unused_tf_options: Any) -> Any:
    """``get_variable`` into the LOCAL_VARIABLES collection (not saved by default), not trainable.

    >>> import varstore as tf
    >>> tf.reset_default_graph()
    >>> c = tf.get_local_variable("count", [], dtype=tf.int64)
    >>> c in tf.local_variables(), c in tf.global_variables()
    (True, False)
    """
    cols = list(collections) if collections else []
    return get_variable(name, shape=shape, dtype=dtype, initializer=initializer, regularizer=regularizer,
                        trainable=trainable, collections=cols + [GraphKeys.LOCAL_VARIABLES],
                        caching_device=caching_device, partitioner=partitioner, validate_shape=validate_shape,
                        use_resource=use_resource, custom_getter=custom_getter, constraint=constraint)


def _get(store: _VariableStore, graph: Graph, name: str, *, custom_getter: Any = None, **kwargs: Any) -> Any:
    """The store's get_variable: through ``custom_getter`` when one is set (TF's _VariableStore.get_variable)."""
    if custom_getter is not None and not callable(custom_getter):
        raise InvalidArgumentError(f"Passed a custom_getter which is not callable: {custom_getter!r}")
    if kwargs.get("trainable") is None:
        kwargs["trainable"] = True
    true_getter = functools.partial(_true_getter, store, graph)
    if custom_getter is None:
        return true_getter(name, **kwargs)
    if not _accepts(custom_getter, "constraint"):
        kwargs.pop("constraint", None)
    return custom_getter(getter=true_getter, name=name, **kwargs)


def _accepts(fn: Callable, arg: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return True
    return arg in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _true_getter(store: _VariableStore, graph: Graph, name: str, shape: Any = None, dtype: Any = "float32",
                 initializer: Any = None, regularizer: Any = None, reuse: Any = None, trainable: Any = True,
                 collections: Iterable[str] | None = None, caching_device: Any = None, partitioner: Any = None,
                 validate_shape: bool = True, use_resource: Any = None, constraint: Any = None,
                 **unused: Any) -> Any:
    dtype = as_dtype("float32" if dtype is None else dtype)
    is_scalar = shape is not None and not isinstance(shape, int) and len(shape) == 0
    with store.lock, graph.name_scope(None):
        if partitioner is not None and not is_scalar:
            if not callable(partitioner):
                raise InvalidArgumentError(f"Partitioner must be callable, but received: {partitioner!r}")
            return _get_partitioned(store, name, partitioner, shape, dtype, initializer, regularizer, reuse,
                                    trainable, collections, validate_shape, constraint)
        # Reuse of a partitioned variable without naming its partitioner again.
        if reuse is True and partitioner is None and name in store.partitioned:
            return _get_partitioned(store, name, None, shape, dtype, initializer, regularizer, reuse,
                                    trainable, collections, validate_shape, constraint)
        if f"{name}/part_0" in store.vars:
            raise InvalidArgumentError(
                f"No partitioner was provided, but a partitioned version of the variable was found: {name}/part_0. "
                f"Perhaps a variable of the same name was already created with partitioning?")
        return _get_single(store, graph, name, shape, dtype, initializer, regularizer, None, reuse, trainable,
                           collections, validate_shape, constraint)


def default_initializer(name: str, dtype: Any) -> init_ops.Initializer:
    """TF 1.x's initializer when none is given: glorot_uniform for floats, zeros for ints and bools.

    >>> type(default_initializer("v", "float32")).__name__, type(default_initializer("c", "int64")).__name__
    ('variance_scaling_initializer', 'zeros_initializer')
    """
    dtype = as_dtype(dtype)
    if is_floating(dtype):
        return init_ops.glorot_uniform_initializer()
    if dtype.kind in "iub":
        return init_ops.zeros_initializer()
    raise InvalidArgumentError(f"An initializer for variable {name} of {dtype.name} is required")


def _takes_partition_info(fn: Any) -> bool:
    # An initializer object: look at its __call__ (a function or method is looked at itself).
    target = fn if inspect.isfunction(fn) or inspect.ismethod(fn) or not callable(fn) else fn.__call__
    try:
        return "partition_info" in inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False


def _needs_no_arguments(fn: Any) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return all(p.default is not inspect.Parameter.empty or p.kind in (inspect.Parameter.VAR_POSITIONAL,
                                                                        inspect.Parameter.VAR_KEYWORD)
               for p in params)


def _get_single(store: _VariableStore, graph: Graph, name: str, shape: Any, dtype: Any, initializer: Any,
                regularizer: Any, partition_info: Any, reuse: Any, trainable: Any, collections: Any,
                validate_shape: bool, constraint: Any) -> Variable:
    """Get or make one Variable (a whole variable or a part), TF's _get_single_variable."""
    from_value = initializer is not None and not callable(initializer)
    if shape is not None and from_value:
        raise InvalidArgumentError("If initializer is a constant, do not specify shape.")
    dtype = as_dtype(dtype)
    if shape is not None:
        shape = as_shape(shape)
    found = store.vars.get(name)
    if found is not None:
        if reuse is False:
            raise InvalidArgumentError(f"Variable {name} already exists, disallowed. Did you mean to set "
                                       f"reuse=True or reuse=tf.AUTO_REUSE in VarScope?")
        if shape is not None and shape != tuple(found.shape.as_list()):
            raise InvalidArgumentError(f"Trying to share variable {name}, but specified shape {shape} and "
                                       f"found shape {tuple(found.shape.as_list())}.")
        if dtype != found.dtype and not from_value:
            raise InvalidArgumentError(f"Trying to share variable {name}, but specified dtype {dtype.name} and "
                                       f"found dtype {found.dtype.name}.")
        return found
    if reuse is True:
        raise InvalidArgumentError(f"Variable {name} does not exist, or was not created with tf.get_variable(). "
                                   f"Did you mean to set reuse=tf.AUTO_REUSE in VarScope?")
    if initializer is None:
        if shape is None:
            raise InvalidArgumentError(f"Variable {name} did not get an initializer, so its `shape` argument "
                                       f"must be specified.")
        initializer = default_initializer(name, dtype)
    if from_value:
        value = _init.as_initial_value(initializer)
    else:
        if inspect.isclass(initializer):  # tf.zeros_initializer (the class) stands for an instance
            initializer = initializer()
        if shape is not None:
            if _takes_partition_info(initializer):
                made = initializer(list(shape), dtype=dtype, partition_info=partition_info)
            else:
                made = initializer(list(shape), dtype=dtype)
            value = _init.as_initial_value(made, dtype)
        elif _needs_no_arguments(initializer):
            value = _init.as_initial_value(initializer())
        else:
            raise InvalidArgumentError(
                f"Variable {name}: the initializer passed is not valid. It should be a callable with no arguments "
                f"and the shape should not be provided, or an initializer taking a shape and `shape` should be "
                f"given; received {initializer!r} with shape None")
        if shape is not None and tuple(value.shape.as_list()) != shape:
            raise InvalidArgumentError(f"Variable {name}: the initializer made a value of shape {tuple(value.shape.as_list())}, "
                                       f"expected {shape}")
    var = Variable(value, trainable=trainable, collections=collections, name=name, validate_shape=validate_shape)
    store.vars[name] = var
    if constraint is not None:
        var.constraint = constraint
    if regularizer:
        loss = regularizer(var)
        if loss is not None:
            graph.add_to_collection(GraphKeys.REGULARIZATION_LOSSES, loss)
    return var


def _get_partitioned(store: _VariableStore, name: str, partitioner: Any, shape: Any, dtype: Any,
                     initializer: Any, regularizer: Any, reuse: Any, trainable: Any, collections: Any,
                     validate_shape: bool, constraint: Any) -> _part.PartitionedVariable:
    """Get or make a partitioned variable (TF's _get_partitioned_variable)."""
    graph = get_default_graph()
    from_value = initializer is not None and not callable(initializer)
    if name in store.vars:
        raise InvalidArgumentError(
            f"A partitioner was provided, but an unpartitioned version of the variable was found: {name}.  "
            f"Perhaps a variable of the same name was already created without partitioning?")
    value = _init.as_initial_value(initializer) if from_value else None
    if shape is not None:
        shape = as_shape(shape)
    if value is not None:
        if shape is not None and shape != tuple(value.shape.as_list()):
            raise InvalidArgumentError(f"Variable {name}: shape {shape} does not match the initializer's shape "
                                       f"{tuple(value.shape.as_list())}")
        shape, dtype = tuple(value.shape.as_list()), value.dtype
    partitions = None
    if not reuse or partitioner:
        if shape is None:
            raise InvalidArgumentError(f"Shape of a new partitioned variable must be fully defined, but instead "
                                       f"was <unknown>. (variable {name}: give shape or an initializer value)")
        partitions = _part.call_partitioner(partitioner, shape, dtype)

    existing = store.partitioned.get(name)
    if existing is not None:
        if reuse is False:
            raise InvalidArgumentError(f"Partitioned variable with name {name} already exists. Did you mean to set "
                                       f"reuse=True or reuse=tf.AUTO_REUSE in VarScope?")
        if shape is not None and shape != existing.shape:
            raise InvalidArgumentError(f"Trying to reuse partitioned variable {name}, but specified shape {shape} "
                                       f"and found shape {existing.shape}.")
        if as_dtype(dtype) != existing.dtype:
            raise InvalidArgumentError(f"Trying to reuse partitioned variable {name}, but specified dtype "
                                       f"{as_dtype(dtype).name} and found dtype {existing.dtype.name}.")
        if partitions is not None and existing.get_partitions() != partitions:
            raise InvalidArgumentError(f"Trying to reuse partitioned variable {name}, but specified partitions "
                                       f"{partitions} and found partitions {existing.get_partitions()}.")
        return existing
    if reuse is True:
        raise InvalidArgumentError(f"PartitionedVariable {name} does not exist, or was not created with "
                                   f"tf.get_variable(). Did you mean to set reuse=False or reuse=tf.AUTO_REUSE "
                                   f"in VarScope?")
    assert partitions is not None and shape is not None  # computed above: reuse is not True here
    dim, n = _part.slice_dim_and_count(partitions)
    if f"{name}/part_0" in store.vars:
        if f"{name}/part_{n - 1}" not in store.vars:
            raise InvalidArgumentError(
                f"Partitioner returned a different partitioning than what was already found.  Partitioner returned "
                f"{n} shards, and shard {name}/part_0 was found, but {name}/part_{n - 1} was not.")
        if f"{name}/part_{n}" in store.vars:
            raise InvalidArgumentError(
                f"Partitioner returned a different partitioning than what was already found.  Partitioner returned "
                f"{n} shards, and shard {name}/part_0 was found, but so was the extra shard {name}/part_{n}.")
    parts = []
    for i, (offset, part_shape) in enumerate(_part.iter_slices(list(shape), n, dim)):
        info = _part.PartitionInfo(full_shape=shape, var_offset=offset)
        part_name = f"{name}/part_{i}"
        if value is not None:
            init, init_shape = _part.slice_value(value, offset, part_shape), None
        elif initializer is None:
            init, init_shape = default_initializer(name, dtype), part_shape
        else:
            init, init_shape = initializer, part_shape
        var = _get_single(store, graph, part_name, init_shape, dtype, init, regularizer, info, reuse, trainable,
                          collections, validate_shape, constraint)
        var._save_slice_info = _part.SaveSliceInfo(name, shape, offset, part_shape)
        parts.append(var)
    pv = _part.PartitionedVariable(name, shape, dtype, parts, partitions)
    store.partitioned[name] = pv
    return pv


# -- variable_scope ----------------------------------------------------------------------------
def _maybe_wrap_custom_getter(custom_getter: Callable, old_getter: Callable | None) -> Callable:
    """An inner scope's custom getter calls the outer one's, which calls the true getter."""
    if old_getter is None:
        return custom_getter

    def wrapped_custom_getter(getter: Callable, *args: Any, **kwargs: Any) -> Any:
        return custom_getter(functools.partial(old_getter, getter), *args, **kwargs)

    return wrapped_custom_getter


def _unique_variable_scope(state: _ScopeState, prefix: str) -> str:
    """``prefix``, or ``prefix_1``, ``prefix_2``...: the first not yet opened in the current scope."""
    current = state.current_scope.name
    name = f"{current}/{prefix}" if current else prefix
    if state.counts.get(name, 0) == 0:
        return prefix
    idx = 1
    while state.counts.get(f"{name}_{idx}", 0) > 0:
        idx += 1
    return f"{prefix}_{idx}"


class variable_scope:  # noqa: N801 - TF's name: it is used as a function, ``with tf.variable_scope(...)``
    """A context for ``get_variable``: names get the scope's prefix, and the scope's reuse,
    initializer, regularizer, partitioner, dtype and custom getter become the defaults.

    ``reuse=True`` or ``tf.AUTO_REUSE`` holds in every scope nested inside (``reuse=False``
    there does not turn it off, as in TF). Re-entering by the scope object (``with
    tf.variable_scope(scope):``) gives the same variable names. It opens a name scope too
    (``auxiliary_name_scope=False``: it does not), made unique: a second
    ``variable_scope("s")`` has name scope ``s_1/`` and variable scope ``s``.

    >>> import varstore as tf
    >>> tf.reset_default_graph()
    >>> with tf.variable_scope("s"):
    ...     a = tf.Variable(1.0, name="a")
    ...     v = tf.get_variable("v", [1])
    >>> with tf.variable_scope("s", reuse=tf.AUTO_REUSE) as scope:
    ...     b = tf.Variable(1.0, name="b")
    ...     same = tf.get_variable("v", [1]) is v
    >>> a.op.name, b.op.name, v.op.name, scope.original_name_scope, same
    ('s/a', 's_1/b', 's/v', 's_1/', True)
    """

    def __init__(self, name_or_scope: str | VariableScope | None, default_name: str | None = None,
                 values: Any = None, initializer: Any = None, regularizer: Any = None, caching_device: Any = None,
                 partitioner: Any = None, custom_getter: Any = None, reuse: Any = None, dtype: Any = None,
                 use_resource: Any = None, constraint: Any = None, auxiliary_name_scope: bool = True):
        if default_name is None and name_or_scope is None:
            raise TypeError("If default_name is None then name_or_scope is required")
        if reuse is False:  # scopes never stop inheriting: False means "inherit" here, as in TF
            reuse = None
        if not (reuse is True or reuse is None or reuse is AUTO_REUSE):
            raise InvalidArgumentError(f"The reuse parameter must be True or False or None, received {reuse!r}")
        if not isinstance(auxiliary_name_scope, bool):
            raise TypeError(f"The auxiliary_name_scope must be `True` or `False`, while get {auxiliary_name_scope!r}")
        if name_or_scope is not None and not isinstance(name_or_scope, (VariableScope, str)):
            raise TypeError(f"VariableScope: name_or_scope must be a string or VariableScope, received "
                            f"{type(name_or_scope).__name__}")
        if custom_getter is not None and not callable(custom_getter):
            raise InvalidArgumentError(f"Passed a custom_getter which is not callable: {custom_getter!r}")
        self._name_or_scope, self._default_name = name_or_scope, default_name
        self._initializer, self._regularizer = initializer, regularizer
        self._caching_device, self._partitioner = caching_device, partitioner
        self._custom_getter, self._reuse = custom_getter, reuse
        self._dtype, self._use_resource, self._constraint = dtype, use_resource, constraint
        self._auxiliary_name_scope = auxiliary_name_scope
        self._exits: list[tuple[contextlib.ExitStack, _ScopeState, VariableScope, VariableScope, Any]] = []

    def __enter__(self) -> VariableScope:
        graph = get_default_graph()
        stack = contextlib.ExitStack()
        try:
            scope = self._enter(graph, stack)
        except BaseException:
            stack.close()
            raise
        return scope

    def _enter(self, graph: Graph, stack: contextlib.ExitStack) -> VariableScope:
        name_or_scope = self._name_or_scope
        name_scope_cm: Any = None
        if not self._auxiliary_name_scope:  # stay in the current name scope
            current = graph.get_name_scope()
            name_scope_cm = graph.name_scope(current + "/" if current else None)
        if name_or_scope is not None:
            ns = name_or_scope if isinstance(name_or_scope, str) else name_or_scope.name.split("/")[-1]
            old_name_scope = None
            if ns or name_scope_cm is not None:
                entered = stack.enter_context(name_scope_cm or graph.name_scope(ns))
                old_name_scope = entered if isinstance(name_or_scope, str) else name_or_scope.original_name_scope
            return self._enter_pure(graph, stack, name_or_scope, self._reuse, old_name_scope)
        if self._reuse:
            raise InvalidArgumentError("reuse=True cannot be used without a name_or_scope")
        entered = stack.enter_context(name_scope_cm or graph.name_scope(self._default_name))
        state = _scope_state(graph)
        unique = _unique_variable_scope(state, self._default_name or "")
        return self._enter_pure(graph, stack, unique, None, entered)

    def _enter_pure(self, graph: Graph, stack: contextlib.ExitStack, name_or_scope: str | VariableScope,
                    reuse: Any, old_name_scope: str | None) -> VariableScope:
        """The variable-scope half (TF's _pure_variable_scope): no name scope is opened here."""
        state = _scope_state(graph)
        old = state.current_scope
        if isinstance(name_or_scope, VariableScope):
            new_name = name_or_scope.name
            state.open_variable_scope(new_name)
            saved_counts: Any = copy.copy(state.counts)
            base = name_or_scope
            scope = VariableScope(reuse or name_or_scope.reuse, name=new_name,
                                  initializer=base.initializer, regularizer=base.regularizer,
                                  caching_device=base.caching_device, partitioner=base.partitioner,
                                  dtype=base.dtype, custom_getter=base.custom_getter,
                                  name_scope=base.original_name_scope, use_resource=base.use_resource,
                                  constraint=self._constraint)
        else:
            new_name = f"{old.name}/{name_or_scope}" if old.name else name_or_scope
            saved_counts = None
            base = old
            scope = VariableScope(reuse or old.reuse, name=new_name, initializer=old.initializer,
                                  regularizer=old.regularizer, caching_device=old.caching_device,
                                  partitioner=old.partitioner, dtype=old.dtype, use_resource=old.use_resource,
                                  custom_getter=old.custom_getter,
                                  name_scope=name_or_scope if old_name_scope is None else old_name_scope,
                                  constraint=self._constraint)
        if self._initializer is not None:
            scope.set_initializer(self._initializer)
        if self._regularizer is not None:
            scope.set_regularizer(self._regularizer)
        if self._caching_device is not None:
            scope.set_caching_device(self._caching_device)
        if self._partitioner is not None:
            scope.set_partitioner(self._partitioner)
        if self._custom_getter is not None:
            scope.set_custom_getter(_maybe_wrap_custom_getter(self._custom_getter, base.custom_getter))
        if self._dtype is not None:
            scope.set_dtype(self._dtype)
        if self._use_resource is not None:
            scope.set_use_resource(self._use_resource)
        if saved_counts is None:
            state.open_variable_scope(new_name)
        state.current_scope = scope
        self._exits.append((stack, state, old, scope, (new_name, saved_counts)))
        return scope

    def __exit__(self, *exc: Any) -> None:
        stack, state, old, scope, (new_name, saved_counts) = self._exits.pop()
        try:
            if state.current_scope is not scope:
                raise RuntimeError("Improper nesting of variable_scope.")
            if saved_counts is not None:  # leaving a scope entered by object: counts as they were
                state.counts = saved_counts
            else:
                state.close_variable_subscopes(new_name)
            state.current_scope = old
        finally:
            stack.close()
