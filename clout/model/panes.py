"""A pane: what a window's analysis reads when the window is due (on time, or final)."""

from __future__ import annotations

from dataclasses import dataclass

from clout.model.events import Event


@dataclass(frozen=True)
class Pane:
    """What an analysis gets: the window's events, and `slices`: every slice of the `context_ms`
    before the window's end (the window's own included), by slice start."""

    start_ms: int
    end_ms: int
    events: list[Event]
    slices: dict[int, list[Event]]
    final: bool
    changed: bool  # False: a final pane with nothing new since the on-time pane

    @property
    def context(self) -> list[Event]:
        return [e for s in sorted(self.slices) for e in self.slices[s]]
