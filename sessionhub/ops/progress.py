"""A progress bar for long operator work, on stderr, only when stderr is a terminal.

In a pipe or a log file it stays silent, so ``sessionhub export > backup.jsonl`` and
scripts that parse stderr see nothing but real errors. ``SESSIONHUB_PROGRESS=0``
silences it in a terminal too; ``SESSIONHUB_PROGRESS=1`` forces it (for a terminal
that is not detected as one).
"""

from __future__ import annotations

import os
import sys
import time
from types import TracebackType
from typing import TextIO

__all__ = ["Progress", "progress_enabled"]

_WIDTH = 30
_INTERVAL_S = 0.1


def progress_enabled(stream: TextIO) -> bool:
    """Whether a bar should be drawn on ``stream``: a terminal, unless the env says no."""
    setting = os.environ.get("SESSIONHUB_PROGRESS", "").strip().lower()
    if setting in ("0", "false", "no", "off"):
        return False
    if setting in ("1", "true", "yes", "on"):
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """A bar of ``done/total`` with a rate and an ETA, redrawn at most ten times a second.

    ``total`` may be 0 or unknown (None): then the bar shows a count and a rate only.
    Used as a context manager, it ends its line on exit so that what follows starts
    on a fresh line.
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        unit: str = "events",
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        self.enabled = progress_enabled(self._stream) if enabled is None else enabled
        self._started = time.monotonic()
        self._last_draw = 0.0
        self._drawn = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more units done; redraw if the last draw is old enough."""
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last_draw >= _INTERVAL_S:
            self._draw(now)

    def set_total(self, total: int | None) -> None:
        self.total = total

    def render(self, now: float | None = None) -> str:
        """The bar's text (without the carriage return)."""
        now = time.monotonic() if now is None else now
        elapsed = max(now - self._started, 1e-9)
        rate = self.done / elapsed
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            filled = int(fraction * _WIDTH)
            bar = "#" * filled + "." * (_WIDTH - filled)
            left = (self.total - self.done) / rate if rate > 0 else 0.0
            return (
                f"{self.label} [{bar}] {fraction * 100:5.1f}% {self.done}/{self.total} "
                f"{self.unit} {rate:,.0f}/s ETA {_duration(max(left, 0.0))}"
            )
        return f"{self.label} {self.done} {self.unit} {rate:,.0f}/s {_duration(elapsed)}"

    def _draw(self, now: float) -> None:
        self._last_draw = now
        self._drawn = True
        try:
            self._stream.write("\r" + self.render(now) + "\x1b[K")
            self._stream.flush()
        except (OSError, ValueError):
            self.enabled = False

    def close(self) -> None:
        """Draw the final state and end the line (only if anything was drawn or is due)."""
        if not self.enabled:
            return
        self._draw(time.monotonic())
        try:
            self._stream.write("\n")
            self._stream.flush()
        except (OSError, ValueError):
            pass
        self.enabled = False


def _duration(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, whole = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{whole:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
