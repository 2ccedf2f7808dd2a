"""WindowGraphs under TestStream: windows measured on keys of their own and accounts judged by shard
give, for every window, exactly what one process analysing the whole graph in order finds: the
same raw influence, the same flags (bots, bursts, microclusters from the shards; lockstep with the
earlier windows' groups; the account verdicts from each shard's state folded slice by slice) and
the same groups."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue

from clout.anomalies.accounts import AccountState, update
from clout.anomalies.config import Thresholds
from clout.anomalies.detect import ShardDetectors, in_order
from clout.anomalies.lockstep import find_lockstep
from clout.anomalies.verdicts import Context, candidates_of, flags_of, summarise
from clout.connectors.synthetic import SyntheticConfig, SyntheticStream
from clout.influence.scores import InfluenceConfig, window_influence
from clout.model.columns import canonical, from_events
from clout.model.events import Event
from clout.model.kinds import KIND_INDEX
from clout.model.panes import Pane
from clout.model.windows import WindowPolicy, parse_window_id, window_id
from clout.pipelines.account_verdicts import AccountSnapshots
from clout.pipelines.decode import EventBatch
from clout.pipelines.run import prism_args
from clout.pipelines.window_scores import WindowGraphs
from clout.pipelines.worker_memory import shared
from clout.settings import Settings
from clout.store.client import RedisTarget
from clout.store.layout import KeyLayout
from clout.store.window_results import ResultsConfig, ScoredPane

POLICY = WindowPolicy(size_s=3600, period_s=900, lateness_s=600)
THRESHOLDS = Thresholds()
SHARDS = 3


class Recorder:
    """Stands in for the Redis writer: each pane lands in a list shared by the test process."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.flag_writer = None

    def __call__(self, config: ResultsConfig) -> Recorder:
        return self

    def write(self, pane: ScoredPane) -> None:
        shared(self.token, list).append(pane)

    def close(self) -> None:
        pass


def synthetic_events() -> list[Event]:
    config = SyntheticConfig(users=400, events=6_000, seed=11, days=1.0, purchase_accounts=60)
    return [Event(e.ts, e.actor, e.target, KIND_INDEX[e.kind], e.platform) for e in SyntheticStream(config)]


def run_pipeline(events: list[Event]) -> list[ScoredPane]:
    token = uuid.uuid4().hex
    config = ResultsConfig(RedisTarget("redis://unused"), KeyLayout("t"), InfluenceConfig(), POLICY, 3600,
                           THRESHOLDS, None, shards=SHARDS)
    stream = TestStream().advance_watermark_to(events[0].ts / 1000 - 1)
    for i in range(0, len(events), 500):
        part = events[i:i + 500]
        stream = (stream.add_elements([TimestampedValue(EventBatch(("t", 0, i), from_events(part)), part[0].ts / 1000)])
                  .advance_watermark_to(part[0].ts / 1000))
    stream = stream.advance_watermark_to(events[-1].ts / 1000 + 6 * 3600).advance_watermark_to_infinity()
    # On Prism, as `clout run`: the DirectRunner does not hold the watermark for timer output, so a
    # window's scoring could fire before the shards' verdicts reach it.
    options = PipelineOptions(["--streaming", *prism_args(Settings())])
    with TestPipeline(options=options) as p:
        _ = (p | stream | WindowGraphs(config, 25 * 3_600_000, None, AccountSnapshots(None), True,
                                           results_factory=Recorder(token)))
    return shared(token, list)


def reference(events: list[Event]) -> dict[str, tuple[Any, ...]]:
    """Every window analysed in order by one process over the whole graph (each shard's detectors see
    every event; MIDAS-R keeps one sketch per target shard, as in the pipeline)."""
    detectors = [ShardDetectors(THRESHOLDS, POLICY, shard, SHARDS) for shard in range(SHARDS)]
    accounts = [AccountState.empty(shard, SHARDS) for shard in range(SHARDS)]
    folded = -(2**62)
    first = events[0].ts - events[0].ts % POLICY.slice_ms - POLICY.size_ms + POLICY.slice_ms
    last = events[-1].ts - events[-1].ts % POLICY.slice_ms
    out, earlier = {}, []
    for start in range(first, last + 1, POLICY.slice_ms):
        end = start + POLICY.size_ms
        slices = {}
        for s in range(end - 25 * 3_600_000, end, POLICY.slice_ms):
            rows = [e for e in events if s <= e.ts < s + POLICY.slice_ms]
            if rows:
                slices[s] = canonical(from_events(rows))
        window = canonical(from_events([e for e in events if start <= e.ts < end]))
        if not len(window):
            continue
        wid = window_id(start, end)
        pane = Pane(start, end, window, slices, final=True, changed=True)
        flags = [f for shard in detectors for f in shard.find(pane)]
        for s in sorted(s for s in slices if folded <= s < end):
            for state in accounts:
                update(state, slices[s])
        folded = end
        flags += account_verdicts(accounts, end)
        memory = [g for g in earlier if parse_window_id(g.window)[0] >= start - 24 * 3_600_000]
        lockstep = find_lockstep(window.events(), wid, THRESHOLDS.lockstep, memory)
        earlier += lockstep.groups
        out[wid] = (window_influence(window, InfluenceConfig()), in_order(flags + lockstep.flags), lockstep.groups)
    return out


def account_verdicts(states: list[AccountState], end: int) -> list[Any]:
    """Every shard's account verdicts at a window's end, against the Context of all their summaries."""
    configs = [replace(THRESHOLDS.account, window_ms=POLICY.size_ms, stream_start_ms=int(s.view("first_ms").min()))
               for s in states]
    context = Context.combine([summarise(s, end, c) for s, c in zip(states, configs, strict=True)],
                              THRESHOLDS.account)
    return [f for s, c in zip(states, configs, strict=True) for f in flags_of(candidates_of(s, end, c), context, c)]


def test_sharded_window_analysis_equals_one_process_over_the_whole_graph() -> None:
    events = synthetic_events()
    panes = run_pipeline(events)
    finals = {window_id(p.start_ms, p.end_ms): p for p in panes if p.final}
    expected = reference(events)
    assert set(finals) == set(expected)
    flagged = 0
    for wid, (raw, flags, groups) in expected.items():
        pane = finals[wid]
        assert pane.raw == raw, wid
        assert [f.to_dict() for f in pane.findings.flags] == [f.to_dict() for f in flags], wid
        assert pane.findings.groups == groups, wid
        flagged += len(flags)
    assert flagged > 0  # the planted bots, ring and purchased burst are found somewhere
    assert any(f.detector == "account" for _, flags, _ in expected.values() for f in flags)
