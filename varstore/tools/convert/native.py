"""varstore checkpoints: read with ``CheckpointReader`` (mapped, checksums verified),
written with ``write_checkpoint`` (the checkpoint write path itself)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ...progress import Progress
from .base import Plan, Source, TensorInfo


class VarstoreSource(Source):
    format = "varstore"

    def __init__(self, path: str):
        super().__init__(path)
        from ...checkpoint import CheckpointReader
        self._reader = CheckpointReader(path)
        r = self._reader
        self.infos = [TensorInfo(n, r.dtype(n), tuple(r.shape(n)), r.nbytes(n)) for n in r.names()]
        self.metadata = dict(r.extra)

    def array(self, name: str) -> Any:
        return self._reader.get_tensor(name)  # mapped from the file, checksum verified

    def close(self) -> None:
        self._reader.close()



def write_varstore(dst: str, src: Source, plan: Plan, bar: Progress, fsync: bool, extra: dict) -> None:
    from ...checkpoint import write_checkpoint

    def tensors() -> Iterator[tuple[str, Any]]:
        # The writer takes a tensor only after it has written the previous one.
        pending = 0
        for new, info in plan:
            if pending:
                bar.update(pending)
            yield new, src.array(info.name)
            pending = info.nbytes
        bar.update(pending)

    write_checkpoint(dst, tensors(), extra=extra, fsync=fsync)
