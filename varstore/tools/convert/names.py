"""Name maps: ``old=new`` entries (``--map``, ``--map-file``) and applying them to a source's names.

An entry whose key ends with ``/`` renames a whole scope; an empty new name drops
the tensor; a TF-style ``:0`` suffix on either side is ignored. An entry that
matches no tensor is an error.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

from devices.errors import InvalidArgumentError, NotFoundError


def parse_name_map(entries: Iterable[str], *, source: str = "--map") -> dict[str, str]:
    """``{"old": "new"}`` from ``old=new`` strings (blank lines and ``#`` comments skipped).

    The first ``=`` splits a line; an empty new name drops the tensor.

    >>> parse_name_map(["weights=params", "  # a comment", "old_scope/ = new_scope/"])
    {'weights': 'params', 'old_scope/': 'new_scope/'}
    """
    out: dict[str, str] = {}
    for lineno, raw in enumerate(entries, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise InvalidArgumentError(f"{source}: line {lineno}: expected old=new, received {raw.strip()!r}")
        old, new = (part.strip() for part in line.split("=", 1))
        if not old:
            raise InvalidArgumentError(f"{source}: line {lineno}: empty old name in {raw.strip()!r}")
        if old in out and out[old] != new:
            raise InvalidArgumentError(f"{source}: line {lineno}: {old!r} is mapped twice "
                                       f"({out[old]!r} and {new!r})")
        out[old] = new
    return out


def read_name_map_file(path: str | os.PathLike) -> dict[str, str]:
    """A name map from a file of ``old=new`` lines (UTF-8)."""
    path = os.fsdecode(os.fspath(path))
    try:
        with open(path, encoding="utf-8") as f:
            return parse_name_map(f, source=path)
    except FileNotFoundError:
        raise NotFoundError(f"name map file {path}: no such file") from None
    except UnicodeDecodeError as e:
        raise InvalidArgumentError(f"name map file {path}: not UTF-8 text ({e})") from None


def _strip0(name: str) -> str:
    return name[:-2] if name.endswith(":0") else name


class Renamer:
    """Applies a name map: exact names first, then the longest matching scope prefix."""

    def __init__(self, name_map: Mapping[str, str] | None, names: Sequence[str]):
        self.exact: dict[str, str] = {}
        self.prefixes: list[tuple[str, str]] = []
        if name_map is None:
            return
        if not isinstance(name_map, Mapping):
            raise InvalidArgumentError(f"convert: name_map must be a dict of old -> new names, "
                                       f"received {type(name_map).__name__}")
        present = set(names)
        for old, new in name_map.items():
            if not isinstance(old, str) or not isinstance(new, str):
                raise InvalidArgumentError(f"convert: name_map entries must be str -> str, received {old!r}: {new!r}")
            key = old if old in present else _strip0(old)
            new = _strip0(new)
            if key.endswith("/"):
                if new and not new.endswith("/"):
                    raise InvalidArgumentError(
                        f"convert: name_map entry {old!r} renames a scope; its new name {new!r} must end with '/' "
                        f"(or be empty, to drop the scope)")
                self.prefixes.append((key, new))
            else:
                self.exact[key] = new
        self.prefixes.sort(key=lambda kv: -len(kv[0]))
        unmatched = [k for k in self.exact if k not in present]
        unmatched += [p for p, _ in self.prefixes if not any(n.startswith(p) for n in names)]
        if unmatched:
            import difflib
            hints = []
            for k in unmatched[:5]:
                close = difflib.get_close_matches(k, list(present), n=3)
                hints.append(f"{k!r}" + (f" (closest: {close})" if close else ""))
            raise InvalidArgumentError(f"convert: name_map entries match no tensor in the source: "
                                       f"{', '.join(hints)}" + (" ..." if len(unmatched) > 5 else ""))

    def __call__(self, name: str) -> str | None:
        """The new name, or None when the tensor is dropped."""
        if name in self.exact:
            return self.exact[name] or None
        for prefix, new in self.prefixes:
            if name.startswith(prefix):
                return (new + name[len(prefix):]) if new else None
        return name

