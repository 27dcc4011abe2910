"""README.md and the docs' front page, as a newcomer reads them: every Python snippet runs as
written, and the install instructions are one table, true to what exists.

Each snippet runs alone in a fresh interpreter, from an empty directory, as someone pasting
it into a file would run it (the guide's ``/tmp/`` paths are moved into the test's own
directory, so runs never share files). scripts/release-check runs the README's snippets
again against the built wheel, from outside the checkout.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ("README.md", os.path.join("docs", "index.md"))


def _read(page: str) -> str:
    with open(os.path.join(ROOT, page), encoding="utf-8") as f:
        return f.read()


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


def _install_table(text: str) -> str:
    section = text.split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("|"))


SNIPPETS = [(page, i) for page in PAGES for i in range(len(_python_blocks(_read(page))))]


@pytest.mark.parametrize(("page", "index"), SNIPPETS, ids=[f"{p}[{i}]" for p, i in SNIPPETS])
def test_snippet_runs_as_written(page, index, tmp_path):
    code = _python_blocks(_read(page))[index].replace("/tmp/", f"{tmp_path}/")
    env = dict(os.environ, PYTHONWARNINGS="ignore::UserWarning")  # soft placement's warning for /gpu:0
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"{page}, snippet {index}:\n{code}\n{proc.stderr}"


def test_saving_while_training_snippet_saves_where_it_says(tmp_path):
    (code,) = [b for b in _python_blocks(_read("README.md")) if "async_save=True" in b]
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == os.path.join("runs", "1", "model.ckpt-100")
    assert {"checkpoint", "model.ckpt-50", "model.ckpt-100"} <= set(os.listdir(tmp_path / "runs" / "1"))


def test_one_install_table_naming_only_what_exists():
    tomllib = pytest.importorskip("tomllib")
    readme, index = (_read(p) for p in PAGES)
    assert _install_table(readme) == _install_table(index)
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        extras = set(tomllib.load(f)["project"]["optional-dependencies"])
    named = set()
    for group in re.findall(r'\.\[([a-z0-9,-]+)\]', _install_table(readme)):
        named.update(group.split(","))
    assert named and named <= extras, named - extras
    # varstore is not on PyPI: no page may tell a newcomer to install it from there.
    for page in PAGES:
        assert not re.search(r"pip install \"?varstore\b", _read(page)), page
