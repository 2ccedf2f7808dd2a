"""A pane: what a window's analysis reads when the window is due (on time, or final)."""

from __future__ import annotations

from dataclasses import dataclass

from clout.model.columns import EventColumns, concat


@dataclass(frozen=True)
class Pane:
    """What an analysis gets: the window's events, and `slices`: every slice of the `context_ms`
    before the window's end (the window's own included), by slice start. Columns, canonical: the
    same events give the same rows in the same order."""

    start_ms: int
    end_ms: int
    events: EventColumns
    slices: dict[int, EventColumns]
    final: bool
    changed: bool  # False: a final pane with nothing new since the on-time pane

    @property
    def context(self) -> EventColumns:
        return concat([self.slices[s] for s in sorted(self.slices)])
