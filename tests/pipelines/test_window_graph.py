"""An account shard's panes under TestStream: on-time and final panes, late data within the lateness,
context, replayed chunks held once, and windows before the replay horizon used only as context."""

from __future__ import annotations

import uuid
import zlib
from collections import Counter
from collections.abc import Callable

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue

from clout.model.columns import from_events
from clout.model.events import Event
from clout.model.panes import Pane
from clout.model.windows import WindowPolicy
from clout.pipelines.decode import EventBatch
from clout.pipelines.slices import SliceChunks
from clout.pipelines.window_graph import AccountShardPanes
from clout.pipelines.worker_memory import shared

POLICY = WindowPolicy(size_s=3600, period_s=900, lateness_s=600)
HOUR = 3_600_000
T0 = 1_341_100_800_000  # a window boundary (2012-07-01 00:00 UTC)


class Recorder:
    """Picklable factory whose analyses land in a list shared by the test process (DirectRunner)."""

    def __init__(self) -> None:
        self.token = uuid.uuid4().hex

    def panes(self) -> list[Pane]:
        return shared(self.token, list)

    def __call__(self) -> Callable[[Pane, dict, int], int]:
        def analyse(pane: Pane, derived: dict, shard: int) -> int:
            self.panes().append(pane)
            return len(pane.events)
        return analyse


def batch(name: str, *events: Event) -> TimestampedValue:
    batch_id = ("t", 0, zlib.crc32(name.encode()) % 10_000)
    return TimestampedValue(EventBatch(batch_id, from_events(events)), min(e.ts for e in events) / 1000)


def ev(ts: int, actor: str = "a", target: str = "b") -> Event:
    return Event(ts, actor, target, 3, "x")


def run(stream: TestStream, horizon_ms: int | None = None, context_ms: int = HOUR) -> list[Pane]:
    """Runs one shard's panes; checks that every pane analysed goes on as a result.

    The results are collected in the worker's memory rather than with assert_that: the DirectRunner
    drops timer output behind a watermark advanced straight to infinity (Prism holds it)."""
    recorder, results_token = Recorder(), uuid.uuid4().hex
    with TestPipeline(options=PipelineOptions(["--streaming"])) as p:
        results = (p | stream | beam.ParDo(SliceChunks(POLICY.slice_ms))
                   | AccountShardPanes(POLICY, context_ms, horizon_ms, recorder, shards=1))
        _ = results | beam.Map(lambda r: shared(results_token, list).append((r.start_ms, r.final, r.value)))
    assert sorted(shared(results_token, list)) == sorted((p.start_ms, p.final, len(p.events))
                                                        for p in recorder.panes())
    return recorder.panes()


def panes_of(panes: list[Pane], start: int) -> list[Pane]:
    return [p for p in panes if p.start_ms == start]


def test_on_time_then_final_pane_with_late_data() -> None:
    stream = (TestStream()
              .advance_watermark_to(T0 / 1000)
              .add_elements([batch("1", ev(T0 + 1_000), ev(T0 + 2_000))])
              .advance_watermark_to((T0 + HOUR) / 1000)  # the window [T0, T0+1h) is on time
              .add_elements([batch("2", ev(T0 + 3_000, actor="late"))])  # late, within the lateness
              .advance_watermark_to((T0 + HOUR + 600_000) / 1000)  # end + lateness: final
              .advance_watermark_to_infinity())
    panes = run(stream)
    window = panes_of(panes, T0)
    assert [(p.final, p.changed, len(p.events)) for p in window] == [(False, True, 2), (True, True, 3)]


def test_final_pane_without_late_data_is_not_analysed_again() -> None:
    stream = (TestStream()
              .advance_watermark_to(T0 / 1000)
              .add_elements([batch("1", ev(T0 + 1_000))])
              .advance_watermark_to((T0 + HOUR) / 1000)
              .advance_watermark_to((T0 + HOUR + 600_000) / 1000)
              .advance_watermark_to_infinity())
    panes = run(stream)
    assert [(p.final, p.changed) for p in panes_of(panes, T0)] == [(False, True)]


def test_a_watermark_jump_still_fires_panes_in_time_order() -> None:
    stream = (TestStream()
              .advance_watermark_to(T0 / 1000)
              .add_elements([batch("1", ev(T0 + 1_000))])
              .advance_watermark_to_infinity())
    panes = run(stream)
    # timers fire at their own times, in order: on time (the final pane has nothing new)
    assert [(p.final, p.changed) for p in panes_of(panes, T0)] == [(False, True)]
    # one event sits in four sliding windows, each analysed once
    assert Counter(p.start_ms for p in panes) == {T0 - 2_700_000: 1, T0 - 1_800_000: 1, T0 - 900_000: 1, T0: 1}


def test_context_reaches_back_before_the_window_and_replays_are_held_once() -> None:
    early = ev(T0 - 2 * HOUR + 5_000, actor="old")
    stream = (TestStream()
              .advance_watermark_to((T0 - 3 * HOUR) / 1000)
              .add_elements([batch("0", early)])
              .add_elements([batch("1", ev(T0 + 1_000))])
              .add_elements([batch("1", ev(T0 + 1_000))])  # the same batch again (a replay)
              .advance_watermark_to_infinity())
    panes = run(stream, context_ms=3 * HOUR)
    window = panes_of(panes, T0)[-1]
    assert len(window.events) == 1
    assert early in window.context.events() and len(window.context) == 2


def test_windows_before_the_horizon_are_context_only() -> None:
    stream = (TestStream()
              .advance_watermark_to((T0 - HOUR) / 1000)
              .add_elements([batch("1", ev(T0 - 1_000)), batch("2", ev(T0 + 1_000))])
              .advance_watermark_to_infinity())
    panes = run(stream, horizon_ms=T0, context_ms=2 * HOUR)
    assert {p.start_ms for p in panes} == {T0}
    assert [e.ts for e in panes[0].context.events()] == [T0 - 1_000, T0 + 1_000]
