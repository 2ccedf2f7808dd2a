"""The account shards' step (FoldAccounts) under TestStream, against a plain-Python fold of the same
slices: the same Summary and candidates at every window end, so the same verdicts; a human-paced
amplifier is flagged, a one-day fan and the crowd are not. And the worker's copy of a shard's state
equals what a rebuild from its bags and snapshot gives, late and duplicate chunks included."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from clout.anomalies.accounts import AccountState, update
from clout.anomalies.config import VerdictConfig
from clout.anomalies.verdicts import Context, candidates_of, flags_of, summarise
from clout.model.columns import EventColumns, from_events
from clout.model.events import Event
from clout.model.kinds import KIND_INDEX
from clout.model.windows import WindowPolicy
from clout.pipelines.account_verdicts import AccountPane, AccountShards, AccountSnapshots, FoldAccounts
from clout.pipelines.run import prism_args
from clout.pipelines.worker_memory import shared
from clout.settings import Settings

HOUR, DAY = 3_600_000, 86_400_000
START = 1_341_100_800_000  # a midnight, UTC
POLICY = WindowPolicy(size_s=3600, period_s=900, lateness_s=600)
CONFIG = replace(VerdictConfig(), window_ms=POLICY.size_ms)
SHARDS = 2
REPOST, REPLY, MENTION = KIND_INDEX["repost"], KIND_INDEX["reply"], KIND_INDEX["mention"]


def crowd_and_planted(days: int = 4) -> list[Event]:
    """Humans awake 8:00-23:00 on a day or two each, often answered; a bot reposting five paid
    accounts at human pace (log-normal gaps) every day; a fan, known since the first day, reposting
    them 60 times on the last one."""
    rng = np.random.default_rng(5)
    events = []
    for i in range(50):
        for day in rng.choice(days, size=2, replace=False).tolist():
            for t in np.sort(rng.integers(8 * HOUR, 23 * HOUR, int(rng.integers(3, 20)))).tolist():
                friend = f"friend{rng.integers(150)}"
                events.append(Event(START + day * DAY + t, f"human{i}", friend, int(rng.choice([REPOST, REPLY,
                                                                                              MENTION]))))
                if rng.random() < 0.4:
                    events.append(Event(START + day * DAY + t + 60_000, friend, f"human{i}", REPLY))
    gaps = rng.lognormal(np.log(30 * 60_000), 1.0, size=2000)
    for t in (START + np.cumsum(gaps)).astype(np.int64).tolist():
        if t < START + days * DAY and t % DAY >= 8 * HOUR:
            events.append(Event(t, "bot", f"paid{rng.integers(5)}", REPOST))
    for t in np.sort(rng.integers(0, 12 * HOUR, 60)).tolist():
        events.append(Event(START + (days - 1) * DAY + 9 * HOUR + t, "fan", f"paid{rng.integers(5)}", REPOST))
    for minute in (0, 20, 45):
        events.append(Event(START + 9 * HOUR + minute * 60_000, "fan", f"friend{minute}", REPLY))
    return sorted(events)


def by_slice(events: list[Event]) -> dict[int, EventColumns]:
    slices: dict[int, list[Event]] = {}
    for e in events:
        slices.setdefault(e.ts - e.ts % POLICY.slice_ms, []).append(e)
    return {s: from_events(rows) for s, rows in sorted(slices.items())}


def window_flags(panes: dict[int, list[AccountPane]]) -> dict[int, list[dict[str, Any]]]:
    """Per window start, the verdicts of every shard's candidates against the Context of all summaries."""
    out = {}
    for start, parts in sorted(panes.items()):
        parts = sorted(parts, key=lambda p: p.shard)
        assert [p.shard for p in parts] == list(range(SHARDS)), start
        context = Context.combine([p.summary for p in parts], CONFIG)
        out[start] = [f.to_dict() for p in parts for f in flags_of(p.candidates, context, CONFIG)]
    return out


def reference(slices: dict[int, EventColumns]) -> dict[int, AccountPane]:
    """One process: every slice into every shard's state in order; each window's panes at its end."""
    states = [AccountState.empty(k, SHARDS) for k in range(SHARDS)]
    ends = sorted({start + POLICY.size_ms for s in slices for start in POLICY.window_starts(s)})
    panes: dict[int, list[AccountPane]] = {}
    folded = -(2**62)
    for end in ends:
        for s in [s for s in slices if folded <= s < end]:
            for state in states:
                update(state, slices[s])
        folded = end
        for k, state in enumerate(states):
            config = replace(CONFIG, stream_start_ms=int(state.view("first_ms").min()))
            panes.setdefault(end - POLICY.size_ms, []).append(
                AccountPane(k, end - POLICY.size_ms, summarise(state, end, config), candidates_of(state, end, config)))
    return panes


class _Collect(beam.DoFn):
    def __init__(self, token: str) -> None:
        self.token = token

    def process(self, element: tuple[int, AccountPane]) -> None:
        shared(self.token, list).append(element)


def run_shards(slices: dict[int, EventColumns]) -> dict[int, list[AccountPane]]:
    token = uuid.uuid4().hex
    first = next(iter(slices))
    stream = TestStream().advance_watermark_to(first / 1000 - 1)
    for s, cols in slices.items():
        chunk = (("t", s), s, cols)
        stream = stream.add_elements([TimestampedValue(chunk, s / 1000)]).advance_watermark_to(s / 1000)
        if s % (6 * HOUR) == 0:
            stream = stream.add_elements([TimestampedValue(chunk, s / 1000)])  # a replayed chunk: held once
    stream = stream.advance_watermark_to_infinity()
    options = PipelineOptions(["--streaming", *prism_args(Settings())])
    with TestPipeline(options=options) as p:
        _ = (p | stream | AccountShards(POLICY, CONFIG, SHARDS, AccountSnapshots(None), None, single_worker=True)
             | beam.ParDo(_Collect(token)))
    panes: dict[int, list[AccountPane]] = {}
    for start, pane in shared(token, list):
        panes.setdefault(start, []).append(pane)
    return panes


def test_account_shards_equal_one_process_folding_every_slice_in_order() -> None:
    slices = by_slice(crowd_and_planted())
    got, expected = run_shards(slices), reference(slices)
    assert sorted(got) == sorted(expected)
    for start in expected:
        mine = {p.shard: p for p in got[start]}
        for pane in expected[start]:
            other = mine[pane.shard]
            assert other.candidates.names == pane.candidates.names, start
            assert other.summary.band_keys.tolist() == pane.summary.band_keys.tolist(), start
            assert other.summary.campaign_keys.tolist() == pane.summary.campaign_keys.tolist(), start
    flags = window_flags(got)
    assert flags == window_flags(expected)
    users = {f["user"] for per in flags.values() for f in per}
    assert "bot" in users
    assert "fan" not in users and not any(u.startswith("human") for u in users)


# --- the worker's copy against a rebuild from state ----------------------------------------------


class _Bag:
    def __init__(self) -> None:
        self.items: list[Any] = []

    def add(self, item: Any) -> None:
        self.items.append(item)

    def read(self) -> list[Any]:
        return list(self.items)

    def clear(self) -> None:
        self.items = []


class _Value:
    def __init__(self) -> None:
        self.value: Any = None

    def read(self) -> Any:
        return self.value

    def write(self, value: Any) -> None:
        self.value = value


class _Timer:
    def set(self, when: Any, dynamic_timer_tag: str = "") -> None:
        pass


def test_the_cached_state_equals_a_rebuild_from_bags_and_snapshot_with_late_and_duplicate_chunks() -> None:
    """Bags and snapshot as plain objects (what Beam state holds is what they hold); the DoFn's own
    calls, in a fixed order with a chunk that comes after its slice was folded and a replayed one."""
    fold = FoldAccounts(POLICY, CONFIG, SHARDS, AccountSnapshots(None), None, single_worker=False, grace_ms=0)
    fold.setup()
    state = {"bags": tuple(_Bag() for _ in range(4)), "receipts": tuple(_Bag() for _ in range(4)),
             "snapshot": _Value()}
    kwargs = {**{f"bag{i}": state["bags"][i] for i in range(4)}, **{f"rcpt{i}": state["receipts"][i] for i in range(4)},
              "snapshot": state["snapshot"], "due": _Timer(), "key": 1}
    slices = by_slice(crowd_and_planted(days=3))
    held_back = sorted(slices)[40]  # comes an hour after its slice was folded
    emitted = []
    for s, cols in slices.items():
        if s != held_back:
            list(fold.process((1, (("t", s), s, cols)), **kwargs))
        if s == held_back + 4 * POLICY.slice_ms:
            list(fold.process((1, (("t", held_back), held_back, slices[held_back])), **kwargs))
            list(fold.process((1, (("t", held_back), held_back, slices[held_back])), **kwargs))  # a replay
        emitted += fold.fire(when=Timestamp(micros=(s + POLICY.lateness_s * 1000) * 1000), **kwargs)
    entry = fold.cache.peek(1)
    cached = entry.value
    rebuilt = fold._rebuild(1, state["bags"], state["snapshot"])
    assert cached.state.to_bytes() == rebuilt.state.to_bytes()
    assert (cached.folded_ms, cached.snapshot_ms, cached.ends) == (rebuilt.folded_ms, rebuilt.snapshot_ms, rebuilt.ends)
    assert {k: sorted(v) for k, v in cached.pending.items()} == {k: sorted(v) for k, v in rebuilt.pending.items()}
    assert cached.snapshot_ms > START + DAY  # snapshots were taken and bags cleared behind them
    assert sum(len(b.items) for b in state["bags"]) < len(slices) + 4 * 24 * 3
    assert emitted and all(isinstance(p, AccountPane) for _, p in emitted)
