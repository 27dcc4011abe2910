"""Every docstring example in ``devices`` and ``varstore`` runs, as written, as a doctest;
so do the code blocks of the docs pages (getting started, coming from PyTorch / TF 1.x).

One test per module (found with pkgutil.walk_packages), each in a fresh default
graph; a module whose import needs an optional package that is missing (ray,
cupy) is skipped, anything else that fails to import is a failure.
"""
from __future__ import annotations

import doctest
import importlib
import os
import pkgutil
import re
import warnings

import pytest

import devices
import varstore

_OPTIONAL = {"ray", "cupy", "torch", "safetensors"}


def _modules() -> list[str]:
    names = []
    for pkg in (devices, varstore):
        names.append(pkg.__name__)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=pkg.__name__ + "."):
            names.append(info.name)
    return sorted(set(names))


MODULES = _modules()


def test_every_module_is_found():
    assert {"devices.spec", "varstore.variables", "varstore.train.saver", "varstore.tools.convert",
            "varstore.checkpoint.reader", "varstore.progress"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    try:
        module = importlib.import_module(name)
    except ImportError as e:
        if e.name and e.name.split(".")[0] in _OPTIONAL:
            pytest.skip(f"{name} needs {e.name}")
        raise
    tests = [t for t in doctest.DocTestFinder(exclude_empty=True).find(module, name) if t.examples]
    if not tests:
        pytest.skip(f"{name} has no examples")
    monkeypatch.chdir(tmp_path)  # examples that write relative paths write here
    varstore.reset_default_graph()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", devices.PlacementWarning)  # examples name /gpu:0 on CPU-only machines
        for t in tests:
            varstore.reset_default_graph()
            runner.run(t, out=report.append)
    varstore.reset_default_graph()
    failed, attempted = runner.summarize(verbose=False)
    assert failed == 0, f"{failed} of {attempted} examples failed in {name}:\n" + "".join(report)


# -- the docs pages' code blocks run too ----------------------------------------------------------------
DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
PAGES = {"getting-started.md": set(), "coming-from-tf1.md": set(), "coming-from-pytorch.md": {"torch"}}


def _blocks(text: str) -> list[str]:
    """The ```python blocks of a page, except those preceded by <!-- norun -->."""
    return [m.group(2) for m in re.finditer(r"(<!-- norun -->\s*)?```python\n(.*?)```", text, re.S)
            if not m.group(1)]


@pytest.mark.parametrize("page", sorted(PAGES))
def test_docs_page_code_blocks_run(page, tmp_path, monkeypatch, capsys):
    for mod in PAGES[page]:
        pytest.importorskip(mod)
    with open(os.path.join(DOCS, page), encoding="utf-8") as f:
        blocks = _blocks(f.read())
    assert blocks, page
    monkeypatch.chdir(tmp_path)
    varstore.reset_default_graph()
    namespace: dict = {"__name__": f"docs_{page}"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", devices.PlacementWarning)
        for i, code in enumerate(blocks):
            code = code.replace("/tmp/", f"{tmp_path}/")  # the guide's paths, kept apart per test
            try:
                exec(compile(code, f"{page}[block {i}]", "exec"), namespace)
            except Exception as e:
                pytest.fail(f"{page}, block {i} failed: {type(e).__name__}: {e}\n{code}")
    varstore.reset_default_graph()
