"""DeviceSpec: TensorFlow 1.x's device-string grammar, immutable and hashable.

Grammar: ``/job:NAME/replica:INT/task:INT/device:TYPE:INDEX`` with every
field optional, ``/cpu:0`` and ``/gpu:1`` as shorthands for the device
field, the type case-insensitive and the index ``*`` (any).

>>> DeviceSpec.from_string("/job:ps/task:7/gpu:0").to_string()
'/job:ps/task:7/device:GPU:0'
>>> DeviceSpec.from_string("/device:GPU:0").make_merged_spec("/job:worker").to_string()
'/job:worker/device:GPU:0'
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Union

from .errors import InvalidArgumentError

_JOB_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_TYPE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_INT_RE = re.compile(r"(0|[1-9][0-9]{0,8})\Z")  # bounded: no 10^9 tasks
_INT_LIMIT = 10 ** 9  # the same bound for specs built in code, so to_string() always re-parses

SpecLike = Union["DeviceSpec", str, None]


@dataclass(frozen=True)
class DeviceSpec:
    """A (partial) device specification. Unset fields are None.

    ``device_index`` None means "any" (``*``) when ``device_type`` is set.
    """

    job: str | None = None
    replica: int | None = None
    task: int | None = None
    device_type: str | None = None
    device_index: int | None = None

    def __post_init__(self) -> None:
        # Validate programmatic construction with the same rules as parsing.
        if self.job is not None and not (isinstance(self.job, str) and _JOB_RE.match(self.job)):
            raise InvalidArgumentError(f"device spec: invalid job name {self.job!r}")
        for f in ("replica", "task", "device_index"):
            v = getattr(self, f)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < _INT_LIMIT):
                raise InvalidArgumentError(
                    f"device spec: field {f} expects a non-negative integer below {_INT_LIMIT}, "
                    f"received {v!r}")
        if self.device_type is not None:
            if not (isinstance(self.device_type, str) and _TYPE_RE.match(self.device_type)):
                raise InvalidArgumentError(
                    f"device spec: invalid device type {self.device_type!r}")
            object.__setattr__(self, "device_type", self.device_type.upper())
        elif self.device_index is not None:
            raise InvalidArgumentError(
                f"device spec: device index {self.device_index} given without a device type")

    # -- parsing -----------------------------------------------------------
    @classmethod
    def from_string(cls, spec: SpecLike) -> DeviceSpec:
        """Parse a device string (a DeviceSpec or None passes through).

        >>> DeviceSpec.from_string("/CPU:0")
        DeviceSpec(job=None, replica=None, task=None, device_type='CPU', device_index=0)
        """
        if spec is None:
            return _EMPTY
        if isinstance(spec, DeviceSpec):
            return spec
        if not isinstance(spec, str):
            raise InvalidArgumentError(
                f"device spec: expected a string like '/gpu:0', received {type(spec).__name__} {spec!r}")
        return _parse(spec)

    parse_from_string = from_string

    # -- formatting --------------------------------------------------------
    def to_string(self) -> str:
        """Canonical form, unset fields left out: ``/job:ps/replica:0/task:7/device:GPU:0``."""
        parts = []
        if self.job is not None:
            parts.append(f"/job:{self.job}")
        if self.replica is not None:
            parts.append(f"/replica:{self.replica}")
        if self.task is not None:
            parts.append(f"/task:{self.task}")
        if self.device_type is not None:
            idx = "*" if self.device_index is None else str(self.device_index)
            parts.append(f"/device:{self.device_type}:{idx}")
        return "".join(parts)

    def __str__(self) -> str:
        return self.to_string()

    # -- merging -----------------------------------------------------------
    def make_merged_spec(self, dev: SpecLike) -> DeviceSpec:
        """Return this spec with every field set in ``dev`` taken from ``dev``.

        The device type and index move together: an inner ``/cpu:0`` over an
        outer ``/gpu:1`` gives ``CPU:0``, never a CPU with the GPU's index.
        """
        dev = DeviceSpec.from_string(dev)
        return DeviceSpec(
            job=dev.job if dev.job is not None else self.job,
            replica=dev.replica if dev.replica is not None else self.replica,
            task=dev.task if dev.task is not None else self.task,
            device_type=dev.device_type if dev.device_type is not None else self.device_type,
            device_index=dev.device_index if dev.device_type is not None else self.device_index,
        )

    def merge_from(self, dev: SpecLike) -> DeviceSpec:
        """Same as :meth:`make_merged_spec`. Specs are immutable, so use the result."""
        return self.make_merged_spec(dev)

    def replace(self, **fields) -> DeviceSpec:
        """A copy with the given fields changed (validated)."""
        return replace(self, **fields)

    @property
    def is_empty(self) -> bool:
        return self == _EMPTY


_EMPTY = DeviceSpec()


def _parse(text: str) -> DeviceSpec:
    def bad(why: str) -> InvalidArgumentError:
        return InvalidArgumentError(f"device spec {text!r}: {why}")

    fields: dict = {}

    def put(name: str, value, part: str) -> None:
        if name in fields:
            what = "two device types" if name == "device_type" else f"field {name!r} twice"
            raise bad(f"names {what} (at {part!r})")
        fields[name] = value

    def integer(value: str, name: str, part: str) -> int:
        if not _INT_RE.match(value):
            raise bad(f"field {name!r} expects a non-negative integer, received {value!r} (in {part!r})")
        return int(value)

    def index(value: str, part: str) -> int | None:
        return None if value == "*" else integer(value, "device index", part)

    body = text.strip()
    if body in ("", "/"):
        return _EMPTY
    if body.startswith("/"):
        body = body[1:]
    for part in body.split("/"):
        if not part:
            raise bad("has an empty field (two '/' in a row or a trailing '/')")
        pieces = part.split(":")
        # ASCII only: str.lower() maps e.g. the Kelvin sign to "k", which would accept "tas\u212a".
        key = pieces[0].lower() if pieces[0].isascii() else pieces[0]
        if key in ("job", "replica", "task") and len(pieces) == 2:
            if key == "job":
                if not _JOB_RE.match(pieces[1]):
                    raise bad(f"field 'job' expects a name like 'ps' or 'worker', received {pieces[1]!r}")
                put("job", pieces[1], part)
            else:
                put(key, integer(pieces[1], key, part), part)
        elif key == "device" and len(pieces) in (2, 3):
            if not _TYPE_RE.match(pieces[1]):
                raise bad(f"field 'device' expects a type like 'GPU', received {pieces[1]!r}")
            put("device_type", pieces[1].upper(), part)
            put("device_index", index(pieces[2], part) if len(pieces) == 3 else None, part)
        elif key in ("cpu", "gpu") and len(pieces) == 2:
            put("device_type", key.upper(), part)
            put("device_index", index(pieces[1], part), part)
        else:
            raise bad(
                f"unknown field {part!r}; expected job:NAME, replica:INT, task:INT, "
                "device:TYPE:INDEX, cpu:INDEX or gpu:INDEX")
    return DeviceSpec(**fields)


def canonical(spec: SpecLike) -> str:
    """``DeviceSpec.from_string(spec).to_string()``."""
    return DeviceSpec.from_string(spec).to_string()
