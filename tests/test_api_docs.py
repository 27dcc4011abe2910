"""The API reference (docs/api.md, rendered by mkdocstrings) names every public function and
class of ``varstore``, ``varstore.train``, ``varstore.errors`` and ``devices``.

A name counts as documented when the page has a ``::: path`` directive for it, lists it in a
directive's ``members``, or documents the same object under another public path (``tf.device``
is ``devices.device``). Building the site (``mkdocs build --strict``, with the docs extra)
is scripts/release-check's part.
"""
from __future__ import annotations

import inspect
import os
import re
import types

import pytest

import devices
import varstore
import varstore.errors
import varstore.train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _documented() -> set[str]:
    with open(os.path.join(ROOT, "docs", "api.md"), encoding="utf-8") as f:
        text = f.read()
    paths = set(re.findall(r"^::: ([\w.]+)", text, re.M))
    for module, members in re.findall(r"^::: ([\w.]+)\n(?:    .*\n)*?      members: \[([^\]]*)\]", text, re.M):
        paths.update(f"{module}.{m.strip()}" for m in members.split(",") if m.strip())
    return paths


def _resolve(path: str):
    module, _, name = path.rpartition(".")
    try:
        return getattr(__import__(module, fromlist=[name]), name)
    except (ImportError, AttributeError):
        return None


def _public(module: types.ModuleType) -> list[str]:
    names = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
    return [n for n in names
            if not isinstance(getattr(module, n), types.ModuleType)
            and (inspect.isclass(getattr(module, n)) or callable(getattr(module, n)))]


@pytest.mark.parametrize("module", [varstore, varstore.train, varstore.errors, devices], ids=lambda m: m.__name__)
def test_every_public_name_is_in_the_api_reference(module):
    documented = _documented()
    objects = {id(obj) for obj in map(_resolve, documented) if obj is not None}
    missing = [n for n in _public(module)
               if f"{module.__name__}.{n}" not in documented and id(getattr(module, n)) not in objects]
    assert not missing, f"docs/api.md lacks {module.__name__}: {missing}"


def test_every_directive_names_something_that_exists():
    assert [p for p in sorted(_documented()) if _resolve(p) is None and not _is_module(p)] == []


def _is_module(path: str) -> bool:
    try:
        __import__(path)
        return True
    except ImportError:
        return False
