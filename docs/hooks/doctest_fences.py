"""mkdocs hook: show docstring examples (``>>>`` sessions) as code, not as nested quotes.

Markdown reads a line starting with ``>`` as a block quote, so mkdocstrings would
render ``>>> x`` as three nested quotes. This adds a Markdown preprocessor that
fences each run of doctest lines (``>>>``/``...`` lines and the output after
them, up to a blank line) as a ``pycon`` code block.
"""
from __future__ import annotations

import re

from markdown import Extension
from markdown.preprocessors import Preprocessor

_PROMPT = re.compile(r"^(\s*)>>> ")


class _DoctestFences(Preprocessor):
    def run(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        i, fenced = 0, False
        while i < len(lines):
            line = lines[i]
            if line.lstrip().startswith(("```", "~~~")):
                fenced = not fenced
            m = None if fenced else _PROMPT.match(line)
            if m is None:
                out.append(line)
                i += 1
                continue
            indent = m.group(1)
            out.append(f"{indent}```pycon")
            while i < len(lines) and lines[i].strip():
                out.append(lines[i])
                i += 1
            out.append(f"{indent}```")
        return out


class DoctestFencesExtension(Extension):
    def extendMarkdown(self, md):  # noqa: N802 - Markdown's API
        md.preprocessors.register(_DoctestFences(md), "doctest_fences", 35)


def on_config(config, **kwargs):
    config.markdown_extensions.append(DoctestFencesExtension())
    return config
