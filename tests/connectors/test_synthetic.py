"""The synthetic stream must be exact, reproducible and realistic enough to evaluate detectors on.

Every statistic here is recomputed in plain Python from the emitted events, independently of the
generator's numpy internals, so a test passing means the *stream* has the property.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import statistics
from collections import Counter, defaultdict

import orjson
import pytest

from clout.connectors.synthetic import GroundTruth, SyntheticConfig, SyntheticStream, write_truth
from clout.schemas import KINDS, InteractionEvent, parse_event

MINUTE = 60_000
HOUR = 3_600_000
CONFIG = SyntheticConfig(
    users=3_000, events=40_000, seed=11, bots=8, ring_size=10, ring_targets=6, purchase_accounts=120
)
TINY = SyntheticConfig(users=500, events=5_000, bots=3, ring_size=4, ring_targets=2, purchase_accounts=30)


@pytest.fixture(scope="module")
def stream() -> SyntheticStream:
    return SyntheticStream(CONFIG)


@pytest.fixture(scope="module")
def events(stream: SyntheticStream) -> list[InteractionEvent]:
    return list(stream)


@pytest.fixture(scope="module")
def truth(stream: SyntheticStream) -> GroundTruth:
    return stream.truth


def by_actor(events: list[InteractionEvent]) -> dict[str, list[InteractionEvent]]:
    acts: dict[str, list[InteractionEvent]] = defaultdict(list)
    for e in events:
        acts[e.actor].append(e)
    return acts


def planted(truth: GroundTruth) -> set[str]:
    return set(truth.bots) | set(truth.ring_members) | set(truth.purchase_accounts)


def gap_cv(evs: list[InteractionEvent]) -> float:
    """Coefficient of variation of inter-event times: ~1 for Poisson, ~0 for a clock."""
    gaps = [b.ts - a.ts for a, b in itertools.pairwise(evs)]
    return statistics.pstdev(gaps) / statistics.mean(gaps)


def top5_share(evs: list[InteractionEvent]) -> float:
    counts = Counter(e.target for e in evs)
    return sum(n for _, n in counts.most_common(5)) / len(evs)


def top_share(counts: Counter[str], fraction: float) -> float:
    ranked = [n for _, n in counts.most_common()]
    return sum(ranked[: max(1, int(len(ranked) * fraction))]) / sum(ranked)


def max_distinct_in_window(posts: list[tuple[int, str]], window_ms: int) -> int:
    """Most distinct accounts among (ts, account) pairs that fall inside any window of that length."""
    posts = sorted(posts)
    best, lo = 0, 0
    for hi in range(len(posts)):
        while posts[hi][0] - posts[lo][0] >= window_ms:
            lo += 1
        best = max(best, len({a for _, a in posts[lo : hi + 1]}))
    return best


# ----------------------------------------------------------------------------- exactness


def test_same_seed_gives_byte_identical_stream_and_other_seed_differs() -> None:
    first = [e.to_json() for e in SyntheticStream(TINY)]
    again = [e.to_json() for e in SyntheticStream(TINY)]
    other = [e.to_json() for e in SyntheticStream(dataclasses.replace(TINY, seed=TINY.seed + 1))]
    assert first == again
    assert first != other
    assert SyntheticStream(TINY).truth != SyntheticStream(dataclasses.replace(TINY, seed=8)).truth


def test_iterating_twice_gives_the_same_events(
    stream: SyntheticStream, events: list[InteractionEvent]
) -> None:
    assert list(stream) == events


def test_exact_count_sorted_and_inside_the_span(events: list[InteractionEvent]) -> None:
    assert len(events) == CONFIG.events
    stamps = [e.ts for e in events]
    assert stamps == sorted(stamps)
    assert CONFIG.start_ms <= stamps[0] and stamps[-1] < CONFIG.start_ms + CONFIG.days * 24 * HOUR


def test_every_event_validates_and_ids_are_unique(events: list[InteractionEvent]) -> None:
    for e in events:
        assert parse_event(e.to_json()) == e
        assert isinstance(e.ts, int)
        assert e.platform == CONFIG.platform
    assert len({e.event_id for e in events}) == len(events)
    assert all(e.event_id.startswith(f"{CONFIG.platform}:{CONFIG.seed}-") for e in events)


def test_kinds_are_mixed_plausibly(events: list[InteractionEvent]) -> None:
    share = {k: n / len(events) for k, n in Counter(e.kind for e in events).items()}
    assert set(share) == KINDS
    assert share["like"] == max(share.values())
    assert 0.1 < share["repost"] < 0.4
    assert all(share[k] > 0.02 for k in KINDS)


def test_tiny_streams_and_invalid_configs() -> None:
    bare = SyntheticConfig(users=300, events=2_000, bots=0, ring_size=0, ring_targets=0, purchase_accounts=0)
    stream = SyntheticStream(bare)
    assert len(list(stream)) == 2_000
    assert stream.truth.bots == stream.truth.ring_members == stream.truth.purchase_accounts == []
    for bad in (
        dataclasses.replace(CONFIG, events=1_000),  # cannot hold the planted anomalies
        dataclasses.replace(CONFIG, users=40),
        dataclasses.replace(CONFIG, camouflage=1.5),
        dataclasses.replace(CONFIG, ring_size=1),
        dataclasses.replace(CONFIG, days=0.01),
        dataclasses.replace(CONFIG, platform=" "),
    ):
        with pytest.raises(ValueError):
            SyntheticStream(bad)


# ----------------------------------------------------------------------------- ground truth


def test_truth_is_disjoint_and_every_id_appears(events: list[InteractionEvent], truth: GroundTruth) -> None:
    groups = [set(truth.bots), set(truth.ring_members), set(truth.ring_targets), set(truth.purchase_accounts)]
    groups.append({truth.purchase_target})
    assert sum(map(len, groups)) == len(set().union(*groups))
    sizes = (len(truth.bots), len(truth.ring_members), len(truth.ring_targets), len(truth.purchase_accounts))
    assert sizes == (CONFIG.bots, CONFIG.ring_size, CONFIG.ring_targets, CONFIG.purchase_accounts)
    actors, targets = {e.actor for e in events}, {e.target for e in events}
    assert planted(truth) <= actors
    assert set(truth.ring_targets) | {truth.purchase_target} <= targets


def test_ids_do_not_give_the_answer_away(events: list[InteractionEvent], truth: GroundTruth) -> None:
    pattern = re.compile(r"u\d{6,7}")
    everyone = {e.actor for e in events} | {e.target for e in events}
    assert all(pattern.fullmatch(account) for account in everyone)
    assert len(everyone) > CONFIG.users // 2


def test_write_truth_round_trips(tmp_path, truth: GroundTruth) -> None:
    path = tmp_path / "truth.json"
    write_truth(truth, path)
    loaded = orjson.loads(path.read_bytes())
    assert loaded == truth.to_dict()
    assert loaded["config"] == dataclasses.asdict(CONFIG)
    start, end = loaded["purchase_window_ms"]
    assert (start, end) == truth.purchase_window_ms
    assert path.read_text().startswith("{\n  ")


# ----------------------------------------------------------------------------- planted anomalies


def test_bots_are_more_regular_and_less_diverse_than_normal_users(
    events: list[InteractionEvent], truth: GroundTruth
) -> None:
    acts = by_actor(events)
    normal = [evs for actor, evs in acts.items() if actor not in planted(truth) and len(evs) >= 20]
    assert len(normal) >= 50
    normal_cv = statistics.median(gap_cv(evs) for evs in normal)
    normal_top5 = statistics.median(top5_share(evs) for evs in normal)
    normal_distinct = statistics.median(len({e.target for e in evs}) / len(evs) for evs in normal)
    assert normal_cv > 0.8  # humans are Poisson-like or burstier
    for bot in truth.bots:
        evs = acts[bot]
        assert len(evs) > 5 * statistics.median(len(v) for v in acts.values())
        assert gap_cv(evs) < 0.15 < normal_cv / 5
        assert top5_share(evs) > normal_top5
        assert len({e.target for e in evs}) / len(evs) < normal_distinct
        assert Counter(e.kind for e in evs).most_common(2)[0][0] in {"repost", "like"}


def test_bots_act_round_the_clock_and_nobody_answers_them(
    events: list[InteractionEvent], truth: GroundTruth
) -> None:
    bots = set(truth.bots)
    hours = Counter((e.ts // HOUR) % 24 for e in events if e.actor in bots)
    assert min(hours.values()) > 0.8 * max(hours.values())
    answered = sum(e.target in bots for e in events)
    assert answered <= 0.01 * sum(hours.values())


def test_camouflage_controls_how_normal_bots_look() -> None:
    def bot_kinds(camouflage: float) -> set[str]:
        stream = SyntheticStream(dataclasses.replace(TINY, camouflage=camouflage))
        return {e.kind for e in stream if e.actor in set(stream.truth.bots)}

    bare = SyntheticStream(dataclasses.replace(TINY, camouflage=0.0))
    bots = set(bare.truth.bots)
    per_bot = defaultdict(set)
    for e in bare:
        if e.actor in bots:
            per_bot[e.actor].add(e.target)
    assert all(len(targets) <= 6 for targets in per_bot.values())
    assert bot_kinds(0.0) == {"repost", "like"}
    assert len(bot_kinds(1.0)) >= 5


def test_ring_reposts_its_targets_together_within_seconds(
    events: list[InteractionEvent], truth: GroundTruth
) -> None:
    ring = set(truth.ring_members)
    quorum = int(0.75 * len(ring))
    for target in truth.ring_targets:
        reposts = sorted((e.ts, e.actor) for e in events if e.kind == "repost" and e.target == target)
        together = [p for p in reposts if p[1] in ring]
        episodes, i = 0, 0
        while i < len(together):
            window = [a for t, a in together if together[i][0] <= t < together[i][0] + 20_000]
            if len(set(window)) >= quorum:
                episodes += 1
            i += len(window)
        assert episodes >= 2, target
        outsiders = [p for p in reposts if p[1] not in ring]
        assert max_distinct_in_window(outsiders, 20_000) < quorum
    ring_reposters = {e.actor for e in events if e.kind == "repost" and e.target in set(truth.ring_targets)}
    assert ring <= ring_reposters


def test_ring_members_also_act_normally(events: list[InteractionEvent], truth: GroundTruth) -> None:
    ring, ring_targets = set(truth.ring_members), set(truth.ring_targets)
    other = Counter(e.actor for e in events if e.actor in ring and e.target not in ring_targets)
    assert set(other) == ring


def test_purchase_burst_is_concentrated_in_its_window(
    events: list[InteractionEvent], truth: GroundTruth
) -> None:
    start, end = truth.purchase_window_ms
    assert 10 * MINUTE <= end - start <= 30 * MINUTE
    span = CONFIG.days * 24 * HOUR
    assert CONFIG.start_ms + 0.3 * span < start < CONFIG.start_ms + 0.7 * span
    onto = [e for e in events if e.target == truth.purchase_target]
    inside = [e for e in onto if start <= e.ts < end]
    assert len(inside) >= 0.8 * len(onto)
    assert {e.kind for e in inside} <= {"like", "repost", "follow"}
    before = [e for e in onto if e.ts < start]
    assert len(before) / (start - CONFIG.start_ms) < 0.02 * len(inside) / (end - start)
    assert {e.actor for e in inside} >= set(truth.purchase_accounts)


def test_purchase_accounts_are_fresh_and_then_barely_act(
    events: list[InteractionEvent], truth: GroundTruth
) -> None:
    start, end = truth.purchase_window_ms
    buyers = set(truth.purchase_accounts)
    theirs = [e for e in events if e.actor in buyers]
    assert min(e.ts for e in theirs) >= start
    assert all(e.target != truth.purchase_target or e.ts < end for e in theirs)
    later = Counter(e.actor for e in theirs if e.ts >= end)
    assert sum(later.values()) <= 0.3 * len(buyers)
    assert max(Counter(e.actor for e in theirs).values()) <= 3
    assert not any(e.target in buyers for e in events)


# ----------------------------------------------------------------------------- normal behaviour


def test_popularity_and_activity_are_heavy_tailed(events: list[InteractionEvent]) -> None:
    assert top_share(Counter(e.target for e in events), 0.01) > 0.25
    assert top_share(Counter(e.actor for e in events), 0.01) > 0.08


def test_daily_rhythm_has_a_night_trough(events: list[InteractionEvent]) -> None:
    hours = Counter((e.ts // HOUR) % 24 for e in events)
    night = statistics.mean(hours[h] for h in (2, 3, 4, 5))
    peak = statistics.mean(hours[h] for h in (14, 15, 16, 17))
    assert night < 0.5 * peak


def test_normal_timing_is_irregular(events: list[InteractionEvent], truth: GroundTruth) -> None:
    acts = by_actor(events)
    normal = [evs for actor, evs in acts.items() if actor not in planted(truth) and len(evs) >= 20]
    cvs = [gap_cv(evs) for evs in normal]
    assert 0.9 < statistics.median(cvs) < 3  # Poisson-like, somewhat bursty (answers, threads)
    assert sum(cv < 0.3 for cv in cvs) < 0.01 * len(cvs)  # no humans keep a clock


def test_cascades_and_threads_link_up(events: list[InteractionEvent]) -> None:
    items = {e.content_id: e for e in events if e.content_id is not None}
    assert len(items) == sum(e.content_id is not None for e in events)
    assert all(e.content_id and e.parent_id for e in events if e.kind in ("reply", "quote"))
    assert all(e.content_id is None for e in events if e.kind in ("like", "follow", "message"))
    children = [(items[e.parent_id], e) for e in events if e.parent_id in items]
    assert all(p.ts < c.ts and c.target == p.actor for p, c in children)
    reshares = [c.ts - p.ts for p, c in children if p.kind == "repost" and c.kind == "repost"]
    assert len(reshares) > 0.02 * len(events)
    assert statistics.median(reshares) < 10 * MINUTE  # the audience reacts within minutes
    threads = [c for p, c in children if p.kind == "reply" and c.kind == "reply" and c.target == p.actor]
    assert len(threads) > 100


def test_engagement_is_partly_reciprocal(events: list[InteractionEvent], truth: GroundTruth) -> None:
    pairs = {(e.actor, e.target) for e in events if e.actor not in planted(truth)}
    mutual = sum((t, a) in pairs for a, t in pairs)
    assert mutual > 0.05 * len(pairs)
    follows = {(e.actor, e.target) for e in events if e.kind == "follow"}
    assert sum((t, a) in follows for a, t in follows) > 20
