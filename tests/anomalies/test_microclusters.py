"""MIDAS-R: a sudden burst from many sources into one target is flagged; steady traffic is not."""

from __future__ import annotations

import numpy as np
import pytest

from clout.anomalies.config import MidasConfig
from clout.anomalies.microclusters import EdgeScore, MidasR, chi_squared, microcluster_flags, shard_of
from clout.model.events import Event

CONFIG = MidasConfig(rows=4, buckets=1024, decay=0.5, threshold=3000.0, min_sources=50)


def steady_traffic(ticks: int, rng: np.random.Generator) -> list[tuple[str, str, int]]:
    """200 regulars each engaging one of 40 accounts per tick or two."""
    edges = []
    for tick in range(1, ticks + 1):
        for source in rng.choice(200, size=100, replace=False).tolist():
            edges.append((f"s{source}", f"t{rng.integers(40)}", tick))
    return edges


def score(edges: list[tuple[str, str, int]], config: MidasConfig) -> list[EdgeScore]:
    midas = MidasR(config)
    parts = midas.update_many([e[0] for e in edges], [e[1] for e in edges], [e[2] for e in edges])
    return [EdgeScore(s, d, t, float(p.max()), *map(float, p)) for (s, d, t), p in zip(edges, parts, strict=True)]


def test_sudden_many_source_burst_on_one_target_is_flagged_and_steady_traffic_is_not() -> None:
    rng = np.random.default_rng(5)
    edges = steady_traffic(200, rng)
    burst = [(f"fresh{i}", "quiet", 150 + i // 100) for i in range(200)]  # 200 new accounts within 2 ticks
    edges = sorted(edges + burst, key=lambda e: e[2])
    scored = score(edges, CONFIG)
    flags = microcluster_flags(scored, "0-3600", CONFIG)
    assert [f.user for f in flags] == ["quiet"]
    assert flags[0].detector == "microcluster" and flags[0].evidence["sources"] >= CONFIG.min_sources
    assert "distinct accounts" in flags[0].reasons[0]
    steady = [e.destination for e in scored if e.dst != "quiet" and e.tick > 20]
    assert np.percentile(steady, 99) < CONFIG.threshold


def test_steady_traffic_alone_flags_nothing() -> None:
    assert microcluster_flags(score(steady_traffic(120, np.random.default_rng(6)), CONFIG), "0-1", CONFIG) == []


def test_one_by_one_equals_batched_and_is_deterministic() -> None:
    edges = steady_traffic(30, np.random.default_rng(7))[:1500]
    one = MidasR(CONFIG)
    singles = [one.update(s, d, t) for s, d, t in edges]
    batched = MidasR(CONFIG).update_many([e[0] for e in edges], [e[1] for e in edges], [e[2] for e in edges])
    assert np.allclose(singles, batched.max(axis=1))
    again = MidasR(CONFIG).update_many([e[0] for e in edges], [e[1] for e in edges], [e[2] for e in edges])
    assert np.array_equal(batched, again)


def test_scoring_events_uses_event_time_ticks() -> None:
    events = [Event(60_000 * k + 5, f"s{k % 7}", f"t{k % 3}", 3) for k in range(200)]
    scored = MidasR(CONFIG).score_events(events)
    by_hand = MidasR(CONFIG).update_many([e.actor for e in events], [e.target for e in events],
                                         [e.ts // 60_000 for e in events])
    assert [s.tick for s in scored] == [e.ts // 60_000 for e in events]
    assert np.allclose([[s.edge, s.source, s.destination] for s in scored], by_hand)
    assert all(s.score == max(s.edge, s.source, s.destination) for s in scored)


def test_memory_is_constant_and_late_ticks_count_as_the_newest() -> None:
    midas = MidasR(CONFIG)
    size = midas.memory_bytes()
    midas.update_many([f"a{i}" for i in range(5000)], ["b"] * 5000, [1] * 5000)
    assert midas.memory_bytes() == size == 3 * CONFIG.rows * CONFIG.buckets * 24
    midas.update("a", "b", 10)
    midas.update("a", "b", 3)  # late: scored at tick 10, never rewinds
    assert midas.tick == 10


def test_chi_squared_matches_the_paper() -> None:
    a, s = np.array([10.0, 0.0, 4.0]), np.array([20.0, 0.0, 40.0])
    expected = [((10 - 20 / 10) * 10) ** 2 / (20 * 9), 0.0, ((4 - 4) * 10) ** 2 / (40 * 9)]
    assert chi_squared(a, s, 10) == pytest.approx(expected)
    assert chi_squared(a, s, 1).tolist() == [0.0, 0.0, 0.0]


def test_shards_are_stable_and_spread() -> None:
    shards = [shard_of(f"u{i}", 4) for i in range(1000)]
    assert shards == [shard_of(f"u{i}", 4) for i in range(1000)]
    assert min(np.bincount(shards)) > 200
