"""Event-time windows, their whole lifecycle and their ids.

Sliding (or fixed) windows of `size_s` starting every `period_s`: every event of a slice (one
period) belongs to the same windows, so aggregates are kept per slice and merged per window. A
window is on time at its end, final at end + allowed lateness, and forgotten after the retention.
Window ids are built and parsed here only.
"""

from __future__ import annotations

from dataclasses import dataclass


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

    def final_ms(self, start_ms: int) -> int:
        """When the window starting at `start_ms` is final: its end + the allowed lateness."""
        return start_ms + self.size_ms + self.lateness_s * 1000

    def last_final_ms(self, ts_ms: int) -> int:
        """When the newest window holding `ts_ms` is final: once the results are sealed that far,
        every window an event at `ts_ms` belongs to is written whole."""
        return self.final_ms(ts_ms - ts_ms % self.slice_ms)

    def window_starts(self, ts_ms: int) -> list[int]:
        """Start (ms) of every window holding `ts_ms`, newest first."""
        last_start = ts_ms - ts_ms % self.slice_ms
        return list(range(last_start, ts_ms - self.size_ms, -self.slice_ms))


def window_id(start_ms: int, end_ms: int) -> str:
    """The window's name in Redis keys: `<start>-<end>` in epoch seconds."""
    return f"{start_ms // 1000}-{end_ms // 1000}"


def parse_window_id(wid: str) -> tuple[int, int]:
    """(start ms, end ms) of a window id; ValueError naming the id when it is not one."""
    start, sep, end = wid.partition("-")
    if not sep or not start.isdigit() or not end.isdigit() or int(end) <= int(start):
        raise ValueError(f"not a window id (<start>-<end> in epoch seconds): {wid!r}")
    return int(start) * 1000, int(end) * 1000
