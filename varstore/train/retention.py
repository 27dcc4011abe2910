"""Which checkpoints to keep: pure functions of the history, the files and the clock.

TF 1.x's rules: the newest ``max_to_keep`` checkpoints stay; one that falls out
is kept for ever anyway when it was saved at least ``keep_hours`` after the last
one kept that way. Nothing here touches storage, so the rules are tested with
tables (tests/test_retention.py); ``history.py`` applies them to a directory.

>>> p = plan([("m-1", 0.0), ("m-2", 10.0), ("m-3", 20.0)], max_to_keep=2,
...          keep_hours=10000.0, next_keep_time=1e9)
>>> p.keep, p.delete
(['m-2', 'm-3'], ['m-1'])
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    """What a save leaves: ``history`` (path, timestamp) oldest first, the paths to
    ``delete`` (after the state file no longer names them), the next time a
    dropped checkpoint is preserved, and ``preserved`` (kept for ever)."""

    history: list[tuple[str, float]]
    delete: list[str]
    next_keep_time: float
    preserved: list[str]

    @property
    def keep(self) -> list[str]:
        return [p for p, _ in self.history]


def plan(history: list[tuple[str, float]], max_to_keep: int | None, keep_hours: float,
         next_keep_time: float) -> Plan:
    """Apply retention to ``history`` (oldest first, the new save last).

    ``max_to_keep`` None or 0 keeps everything. A checkpoint dropped from the newest
    ``max_to_keep`` whose timestamp is past ``next_keep_time`` is preserved (never
    deleted, no longer tracked), and the next preservation is ``keep_hours`` later.
    """
    history = sorted(history, key=lambda pt: pt[1])
    delete, preserved = [], []
    if max_to_keep:
        while len(history) > max_to_keep:
            p, t = history.pop(0)
            if t > next_keep_time:
                next_keep_time += keep_hours * 3600
                preserved.append(p)
            else:
                delete.append(p)
    return Plan(history, delete, next_keep_time, preserved)


def orphan_metas(names: list[str], prefix: str, meta_suffix: str) -> list[str]:
    """Meta files in a directory listing (``names``) whose checkpoint is not in it, among
    ``prefix``'s numbered saves (``{prefix}-<step>.{meta_suffix}``; never an unnumbered one,
    which may be a meta graph the user exported on purpose): left
    by a save killed between removing a checkpoint and its meta file, or by a checkpoint
    deleted by hand. A meta file is written only once its checkpoint is in place, so one
    without its checkpoint is never a save in progress.

    >>> orphan_metas(["m-1", "m-1.meta", "m-2.meta", "m-x.meta", "m.meta", "other-3.meta"], "m", "meta")
    ['m-2.meta']
    """
    present, suffix = set(names), "." + meta_suffix
    out = []
    for name in names:
        if name.endswith(suffix):
            ckpt = name[:-len(suffix)]
            step = ckpt[len(prefix) + 1:]
            if ckpt.startswith(prefix + "-") and step.isdigit() and ckpt not in present:
                out.append(name)
    return sorted(out)
