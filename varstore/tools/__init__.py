"""Tools around checkpoints: inspect_checkpoint and the ``varstore`` command."""
