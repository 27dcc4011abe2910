"""mkdocs hook: render Sphinx cross-reference roles in docstrings as code, not literal text.

Some docstrings say :func:`write_checkpoint` or :class:`~devices.errors.OpError`
(Sphinx's spelling, which IDEs and ``help()`` readers know). Markdown has no roles,
so mkdocstrings printed the ``:func:`` prefix as text. This preprocessor, run on every
page and docstring, turns each role into the code span it stands for (``~`` keeps the
last component, as in Sphinx), leaving fenced code alone.
"""
from __future__ import annotations

import re

from markdown import Extension
from markdown.preprocessors import Preprocessor

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|obj|exc|const|ref):`(~?)([^`]+)`")


def _replace(m: re.Match) -> str:
    target = m.group(2)
    return f"`{target.rsplit('.', 1)[-1] if m.group(1) else target}`"


def strip_roles(line: str) -> str:
    """``:class:`~a.B``` -> ```B```; ``:func:`f``` -> ```f```.

    >>> strip_roles("see :func:`write_checkpoint` and :class:`~devices.errors.OpError`.")
    'see `write_checkpoint` and `OpError`.'
    """
    return _ROLE.sub(_replace, line)


class _SphinxRoles(Preprocessor):
    def run(self, lines: list[str]) -> list[str]:
        out, fenced = [], False
        for line in lines:
            if line.lstrip().startswith(("```", "~~~")):
                fenced = not fenced
            out.append(line if fenced else strip_roles(line))
        return out


class SphinxRolesExtension(Extension):
    def extendMarkdown(self, md):  # noqa: N802 - Markdown's API
        md.preprocessors.register(_SphinxRoles(md), "sphinx_roles", 36)


def on_config(config, **kwargs):
    config.markdown_extensions.append(SphinxRolesExtension())
    return config
