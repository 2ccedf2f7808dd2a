"""Event-time windows: sliding (or fixed) windows with allowed lateness.

Windows are assigned here rather than by Beam's WindowInto: every event of a slice (one window
period) belongs to the same windows, so a pre-aggregated slice is handed to each of its windows
whole, keyed by (window start, shard). The sink keeps the running totals per key and writes them
after every bundle, which is what makes Redis fresh while a window is still open; allowed lateness
is enforced there with an event-time timer. (Prism 2.77's processing-time early firings lose or
crash on data of this shape, and its accumulating late panes are partial; this design needs neither.)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows, TimestampedValue


@dataclass(frozen=True)
class WindowPolicy:
    """Windows of `size_s` starting every `period_s` (equal values: fixed windows); data up to
    `lateness_s` behind the watermark past a window's end still counts."""

    size_s: int = 3600
    period_s: int = 900
    lateness_s: int = 600

    def __post_init__(self) -> None:
        if self.size_s <= 0 or self.period_s <= 0 or self.size_s % self.period_s:
            raise ValueError(f"window size {self.size_s}s must be a positive multiple of the period {self.period_s}s")
        if self.lateness_s < 0:
            raise ValueError("allowed lateness must be >= 0")

    @property
    def slice_ms(self) -> int:
        """Width of the slices every window is a whole number of: events in one slice share windows."""
        return self.period_s * 1000

    @property
    def size_ms(self) -> int:
        return self.size_s * 1000

    def window_starts(self, ts_ms: int) -> list[int]:
        """Start (ms) of every window holding `ts_ms`, newest first."""
        last_start = ts_ms - ts_ms % self.slice_ms
        return list(range(last_start, ts_ms - self.size_ms, -self.slice_ms))


class IntoUserWindows(beam.PTransform):
    """(shard, slice partial) timestamped in its slice -> ((window start, shard), partial) per window."""

    def __init__(self, policy: WindowPolicy) -> None:
        super().__init__()
        self.policy = policy

    def expand(self, partials: beam.PCollection) -> beam.PCollection:
        return (
            partials
            | "AssignWindows" >> beam.ParDo(_AssignWindows(self.policy))
            | "Global" >> beam.WindowInto(GlobalWindows())
        )


class _AssignWindows(beam.DoFn):
    def __init__(self, policy: WindowPolicy) -> None:
        self.policy = policy

    def process(self, element: tuple[int, Any], timestamp: Any = beam.DoFn.TimestampParam) -> Iterator[Any]:
        shard, partial = element
        ts_ms = timestamp.micros // 1000
        for start in self.policy.window_starts(ts_ms):
            yield TimestampedValue(((start, shard), partial), timestamp)


def window_id(start_ms: int, end_ms: int) -> str:
    """The window's name in Redis keys: `<start>-<end>` in epoch seconds."""
    return f"{start_ms // 1000}-{end_ms // 1000}"
