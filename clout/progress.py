"""Periodic rate lines for long runs, and the closing summary."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


class RateReporter:
    """Prints `label: name value, ... (rate/s)` at most every `interval` seconds, then a summary.

    `counts` is called to read the current figures, so the caller keeps ownership of them.
    `rate_of` names the figure whose rate is shown.
    """

    def __init__(self, label: str, counts: Callable[[], dict[str, int]], rate_of: str,
                 interval: float = 2.0, stream: TextIO | None = None) -> None:
        self.label = label
        self._counts = counts
        self._rate_of = rate_of
        self._interval = interval
        self._stream = stream or sys.stderr
        self._started = time.monotonic()
        self._last_time = self._started
        self._last_value = 0

    def tick(self) -> None:
        """Cheap to call per record: prints only when the interval has passed."""
        now = time.monotonic()
        if now - self._last_time >= self._interval:
            self._print_line(now)

    def summary(self) -> dict[str, float]:
        """Print and return the final figures with the overall rate."""
        elapsed = max(time.monotonic() - self._started, 1e-9)
        figures: dict[str, float] = dict(self._counts())
        figures["seconds"] = round(elapsed, 2)
        figures["per_second"] = round(figures.get(self._rate_of, 0) / elapsed, 1)
        body = ", ".join(f"{name} {_fmt(value)}" for name, value in figures.items())
        print(f"{self.label} done: {body}", file=self._stream, flush=True)
        return figures

    def _print_line(self, now: float) -> None:
        counts = self._counts()
        value = counts.get(self._rate_of, 0)
        rate = (value - self._last_value) / (now - self._last_time)
        body = ", ".join(f"{name} {_fmt(v)}" for name, v in counts.items())
        print(f"{self.label}: {body} ({rate:,.0f} {self._rate_of}/s)", file=self._stream, flush=True)
        self._last_time, self._last_value = now, value


def _fmt(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"
