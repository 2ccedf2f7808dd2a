"""Windows assigned by slice: a pre-aggregated slice is handed to each of its windows whole, keyed by
(window start, shard). (Prism 2.77's processing-time early firings lose or crash on data of this shape,
and its accumulating late panes are partial; this design needs neither.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows, TimestampedValue

from clout.model.windows import WindowPolicy


class IntoUserWindows(beam.PTransform):
    """(shard, slice partial) timestamped in its slice -> ((window start, shard), partial) per window."""

    def __init__(self, policy: WindowPolicy) -> None:
        super().__init__()
        self.policy = policy

    def expand(self, partials: beam.PCollection) -> beam.PCollection:
        return (
            partials
            # Typed where the keys are made: the sink's state key coder is then deterministic.
            | "AssignWindows" >> beam.ParDo(_AssignWindows(self.policy)).with_output_types(tuple[tuple[int, int], Any])
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
