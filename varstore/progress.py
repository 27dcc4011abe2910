"""A byte-counting progress bar for long saves, restores and conversions.

``Progress(total_bytes, desc)`` is a context manager; call ``update(nbytes)``
as bytes are done. The bar appears only when all of these hold:

- ``enabled`` is True, or it is None (the default) and the stream (stderr) is
  a terminal and ``VARSTORE_PROGRESS`` is not ``0``;
- the work has taken longer than ``delay`` seconds (2 by default), so quick
  saves print nothing at all.

It is drawn on one line (``\\r``), redrawn at most 10 times a second, with
the bytes done, the rate and the time left, and finished with a newline.
Disabled, ``update`` is one attribute test and a return: no clock, no lock,
no I/O, so callers need not guard it.

Why not tqdm: this needs one bar type and ~100 lines; tqdm would be a new
dependency of the core package for it.

>>> with Progress(3 << 30, "save model.ckpt-1000", enabled=False) as bar:
...     bar.update(1 << 30)
>>> bar.done
1073741824
"""
from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from typing import IO, Any

__all__ = ["Progress", "format_bytes"]

ENV_VAR = "VARSTORE_PROGRESS"
DEFAULT_DELAY = 2.0
_REDRAW_EVERY = 0.1


def format_bytes(n: float) -> str:
    """Bytes in binary units, as the bar and the summaries print them.

    >>> format_bytes(512), format_bytes(1536), format_bytes(3 << 30)
    ('512 B', '1.5 KiB', '3.0 GiB')
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # unreachable


def _format_time(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _auto_enabled(stream: Any) -> bool:
    if os.environ.get(ENV_VAR, "").strip().lower() in ("0", "false", "no", "off"):
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def progress_shown(enabled: bool | None, file: IO[str] | None = None) -> bool:
    """Whether ``Progress(..., enabled=enabled, file=file)`` may draw: callers skip the work of
    counting a total nobody will see."""
    return _auto_enabled(file if file is not None else sys.stderr) if enabled is None else bool(enabled)


class Progress:
    """A progress bar over ``total`` bytes, shown on a terminal for work that takes a while.

    ``enabled``: True always draws (after ``delay``), False never does, None
    (default) draws when ``file`` (default ``sys.stderr``) is a terminal and the
    environment variable ``VARSTORE_PROGRESS`` is not ``0``. ``delay``: seconds
    of work before the bar appears (default ``DEFAULT_DELAY``, 2).

    Thread-safe: ``update`` may be called from a writer thread.
    """

    def __init__(self, total: int, desc: str = "", *, enabled: bool | None = None,
                 delay: float | None = None, file: IO[str] | None = None):
        self.total = max(0, int(total))
        self.desc = desc
        self.done = 0
        self._file = file
        self.enabled: bool = progress_shown(enabled, file)
        self._delay = float(DEFAULT_DELAY if delay is None else delay)
        self._drawn = False
        self._closed = False
        if self.enabled:
            self._lock = threading.Lock()
            self._start = time.monotonic()
            self._next_draw = self._start + self._delay

    # -- the API callers use ---------------------------------------------------
    def update(self, nbytes: int) -> None:
        """Count ``nbytes`` more bytes done."""
        if not self.enabled:
            self.done += nbytes
            return
        with self._lock:
            self.done += nbytes
            now = time.monotonic()
            if now >= self._next_draw and not self._closed:
                self._next_draw = now + _REDRAW_EVERY
                self._draw(now)

    def close(self) -> None:
        """Finish the line (if a bar was drawn). Called by ``__exit__``; idempotent."""
        if not self.enabled:
            return
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._drawn:
                self._draw(time.monotonic(), final=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- drawing ----------------------------------------------------------------
    def _line(self, now: float, width: int) -> str:
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        frac = min(1.0, self.done / self.total) if self.total else 1.0
        stats = f"{format_bytes(self.done)}/{format_bytes(self.total)}  {format_bytes(rate)}/s"
        if frac < 1.0 and rate > 0:
            stats += f"  ETA {_format_time((self.total - self.done) / rate)}"
        else:
            stats += f"  {_format_time(elapsed)}"
        head = f"{self.desc}: " if self.desc else ""
        pct = f"{frac * 100:3.0f}%"
        room = width - len(head) - len(pct) - len(stats) - 5
        if room >= 10:
            fill = int(frac * room)
            bar = f" |{'#' * fill}{'.' * (room - fill)}| "
        else:
            bar = " "
        return f"{head}{pct}{bar}{stats}"[:max(width - 1, 1)]

    def _draw(self, now: float, final: bool = False) -> None:
        stream = self._file if self._file is not None else sys.stderr
        width = shutil.get_terminal_size((80, 24)).columns
        try:
            stream.write("\r" + self._line(now, width) + ("\n" if final else ""))
            stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: stop drawing, never fail the work
            self.enabled = False
            return
        self._drawn = True

    def __repr__(self) -> str:
        return f"<Progress {self.desc!r}: {self.done}/{self.total} bytes{'' if self.enabled else ' (disabled)'}>"
