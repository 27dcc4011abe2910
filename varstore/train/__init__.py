"""TF 1.x's ``tf.train``: Saver, checkpoint state, meta graphs, checkpoint reading, optimizers.

>>> import varstore as tf
>>> tf.train.Saver, tf.train.latest_checkpoint  # doctest: +ELLIPSIS
(<class '...Saver'>, <function latest_checkpoint at ...>)
"""
from ..checkpoint import CheckpointReader
from .checkpoint_state import CheckpointState, get_checkpoint_state, latest_checkpoint
from .meta_graph import export_meta_graph, import_meta_graph
from .reading import NewCheckpointReader, list_variables, load_checkpoint, load_variable
from .saver import Saver

__all__ = ["Saver", "latest_checkpoint", "get_checkpoint_state", "CheckpointState", "import_meta_graph",
           "export_meta_graph", "list_variables", "load_variable", "load_checkpoint", "CheckpointReader",
           "NewCheckpointReader"]
