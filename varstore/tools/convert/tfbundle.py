"""TensorFlow bundles (``P.index`` + ``P.data-*``): read with ``checkpoint.tf.TFBundleReader``
(mapped where aligned, CRC32C checked), written with ``checkpoint.tf.write_bundle``.

The source and destination are bundle prefixes (``model.ckpt-1000``), as TF names
them. String tensors (``_CHECKPOINTABLE_OBJECT_GRAPH`` in every TF 2 checkpoint)
go to another bundle as they are; other formats hold no strings, so converting
one there is refused with its name (drop it: ``--map NAME=``).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from devices.errors import InvalidArgumentError

from ...progress import Progress
from .base import Plan, Source, TensorInfo


class TFBundleSource(Source):
    format = "tf"

    def __init__(self, path: str):
        super().__init__(path)
        from ...checkpoint.tf import TFBundleReader
        self._reader = r = TFBundleReader(path)
        self.infos = [TensorInfo(n, r.dtype(n), tuple(r.shape(n)), r.nbytes(n)) for n in r.names()]
        self.metadata = {}

    def array(self, name: str) -> Any:
        return self._reader.get_tensor(name)

    def close(self) -> None:
        self._reader.close()


def refuse_strings(plan: Plan, dst_format: str) -> None:
    """Raise naming the string tensors in ``plan``: only a TF bundle holds them."""
    names = [info.name for _, info in plan if info.dtype.kind == "O"]
    if names and dst_format != "tf":
        raise InvalidArgumentError(f"convert: {len(names)} string tensor(s) ({', '.join(map(repr, names[:5]))}) "
                                   f"cannot go to {dst_format}, which holds numbers only; drop them with "
                                   f"--map NAME= (name_map={{NAME: ''}})")


def write_tf(dst: str, src: Source, plan: Plan, bar: Progress, fsync: bool, extra: dict) -> None:
    from ...checkpoint.tf import write_bundle

    def tensors() -> Iterator[tuple[str, Any]]:
        for new, info in plan:
            yield new, src.array(info.name)
            bar.update(info.nbytes)

    write_bundle(dst, tensors(), fsync=fsync)
