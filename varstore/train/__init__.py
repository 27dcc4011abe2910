"""TF 1.x's ``tf.train``: Saver, checkpoint state, meta graphs, checkpoint reading, optimizers.

>>> import varstore as tf
>>> tf.train.Saver, tf.train.latest_checkpoint  # doctest: +ELLIPSIS
(<class '...Saver'>, <function latest_checkpoint at ...>)
"""
from ..checkpoint import CheckpointReader
from .checkpoint_state import (
    CheckpointState,
    checkpoint_exists,
    get_checkpoint_mtimes,
    get_checkpoint_state,
    latest_checkpoint,
)
from .meta_graph import export_meta_graph, import_meta_graph
from .reading import NewCheckpointReader, list_variables, load_checkpoint, load_variable
from .saver import Saver

__all__ = ["Saver", "latest_checkpoint", "get_checkpoint_state", "CheckpointState", "import_meta_graph",
           "export_meta_graph", "list_variables", "checkpoint_exists", "get_checkpoint_mtimes", "load_variable", "load_checkpoint", "CheckpointReader",
           "NewCheckpointReader"]

from .optimizer import (
           AdagradOptimizer,
           AdamOptimizer,
           GradientDescentOptimizer,
           IndexedSlices,
           MomentumOptimizer,
           Optimizer,
           RMSPropOptimizer,
           create_global_step,
           get_global_step,
           get_or_create_global_step,
)

__all__ += ["Optimizer", "GradientDescentOptimizer", "MomentumOptimizer", "AdamOptimizer", "AdagradOptimizer",
            "RMSPropOptimizer", "IndexedSlices", "get_global_step", "get_or_create_global_step",
            "create_global_step"]

from .device_setter import ClusterSpec, GreedyLoadBalancingStrategy, byte_size_load_fn, replica_device_setter

__all__ += ["replica_device_setter", "GreedyLoadBalancingStrategy", "byte_size_load_fn", "ClusterSpec"]

from .warm_start import init_from_checkpoint

__all__ += ["init_from_checkpoint"]

from .moving_averages import ExponentialMovingAverage

__all__ += ["ExponentialMovingAverage"]

from .monitored import (
    USE_DEFAULT,
    CheckpointSaverHook,
    CheckpointSaverListener,
    ChiefSessionCreator,
    Coordinator,
    FeedFnHook,
    FinalOpsHook,
    GlobalStepWaiterHook,
    LoggingTensorHook,
    MonitoredSession,
    MonitoredTrainingSession,
    NanLossDuringTrainingError,
    NanTensorHook,
    Scaffold,
    SecondOrStepTimer,
    SessionCreator,
    SessionRunArgs,
    SessionRunContext,
    SessionRunHook,
    SessionRunValues,
    SingularMonitoredSession,
    StepContext,
    StepCounterHook,
    StopAtStepHook,
    WorkerSessionCreator,
)

__all__ += ["MonitoredTrainingSession", "MonitoredSession", "SingularMonitoredSession", "Scaffold", "SessionRunHook",
            "SessionRunArgs", "SessionRunContext", "SessionRunValues", "CheckpointSaverHook",
            "CheckpointSaverListener", "StopAtStepHook", "SecondOrStepTimer", "Coordinator", "SessionCreator",
            "ChiefSessionCreator", "WorkerSessionCreator", "StepContext", "USE_DEFAULT", "NanTensorHook",
            "NanLossDuringTrainingError", "LoggingTensorHook", "StepCounterHook", "FeedFnHook", "FinalOpsHook",
            "GlobalStepWaiterHook"]

from .learning_rate import (
    cosine_decay,
    exponential_decay,
    global_step,
    inverse_time_decay,
    natural_exp_decay,
    piecewise_constant,
    polynomial_decay,
)

__all__ += ["exponential_decay", "inverse_time_decay", "natural_exp_decay", "polynomial_decay", "cosine_decay",
            "piecewise_constant", "global_step"]
