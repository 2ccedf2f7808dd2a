"""Window assignment and the per-batch pre-aggregation, against plain-Python definitions."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue
from hypothesis import given
from hypothesis import strategies as st
from recount import recount

from clout.model.columns import from_events
from clout.model.events import Event
from clout.model.kinds import KIND_ORDER
from clout.model.windows import WindowPolicy
from clout.pipelines.aggregates import ENGAGERS, SENT, EngagementCounts, merge_into
from clout.pipelines.decode import EventBatch

POLICY = WindowPolicy(size_s=3600, period_s=900, lateness_s=600)


@given(st.integers(631_152_000_000, 4_102_444_800_000))
def test_window_starts_are_every_window_holding_the_time(ts: int) -> None:
    starts = POLICY.window_starts(ts)
    brute = [s for s in range(ts - ts % 900_000 - 3_600_000, ts + 1, 900_000) if s <= ts < s + 3_600_000]
    assert sorted(starts) == brute and len(starts) == 4


def test_fixed_windows_hold_one_window() -> None:
    assert WindowPolicy(size_s=600, period_s=600).window_starts(1_700_000_000_123) == [1_699_999_800_000]


def _totals(deltas: list) -> dict:
    """((start, shard), (id, by_user)) deltas -> {window id: {user: activity JSON dict}} as the sink writes."""
    merged: dict = {}
    for (start, _shard), (_id, by_user) in deltas:
        merge_into(merged.setdefault(start, {}), by_user)
    out = {}
    for start, users in merged.items():
        window = f"{start // 1000}-{(start + POLICY.size_ms) // 1000}"
        out[window] = {u: {"received": {KIND_ORDER[i]: n for i, n in enumerate(a[:SENT]) if n},
                           "sent": {KIND_ORDER[i]: n for i, n in enumerate(a[SENT:ENGAGERS]) if n},
                           "engagers": len(a[ENGAGERS]), "in": sum(a[:SENT]), "out": sum(a[SENT:ENGAGERS])}
                       for u, a in users.items()}
    return out


def test_engagement_counts_under_out_of_order_batches() -> None:
    """Batches arrive out of event-time order and span several windows; every event lands in each
    of its windows exactly once, whatever the batch boundaries."""
    base = 1_341_100_800_000
    raw = [(f"a{i % 7}", f"t{i % 5}", base + (i * 7_919_000) % 10_800_000, KIND_ORDER[i % 7]) for i in range(400)]
    batches = [raw[i:i + 37] for i in range(0, len(raw), 37)][::-1]  # newest batch first
    stream = TestStream()
    for n, batch in enumerate(batches):
        events = [Event(ts, actor, target, KIND_ORDER.index(kind)) for actor, target, ts, kind in batch]
        first = min(e.ts for e in events) / 1000
        stream = stream.add_elements([TimestampedValue(EventBatch(("t", 0, n), from_events(events)), first)])
    stream = stream.advance_watermark_to_infinity()
    with TestPipeline(options=beam.options.pipeline_options.PipelineOptions(["--streaming"])) as p:
        deltas = p | stream | EngagementCounts(POLICY, shards=3)
        everything = deltas | beam.WindowInto(beam.window.FixedWindows(10**10))  # one window, closed at the end
        collected = everything | beam.CombineGlobally(beam.combiners.ToListCombineFn()).without_defaults()
        result = collected | beam.Map(_totals)
        assert_that(result, equal_to([recount(raw)]))
