"""WindowResults on the real Redis: users' documents are byte for byte the same whatever order the
windows are written in (windows are written concurrently by different workers), `latest` is the
newest window's with the long-term score of the history, and a recomputed window rewrites both."""

from __future__ import annotations

import random

import orjson
import pytest
import redis

from clout.anomalies.detect import Findings
from clout.influence.scores import InfluenceConfig, long_term_score, window_influence
from clout.model.columns import from_events
from clout.model.events import Event
from clout.model.windows import WindowPolicy
from clout.settings import Settings
from clout.store.client import RedisTarget
from clout.store.layout import KeyLayout
from clout.store.window_results import ResultsConfig, ScoredPane, WindowResults

pytestmark = pytest.mark.servers
POLICY = WindowPolicy(size_s=3600, period_s=900, lateness_s=600)
DAY0 = 1_341_100_800_000
USERS = [f"u{i}" for i in range(60)]


def events_between(start_ms: int, end_ms: int, seed: int, n: int = 400) -> list[Event]:
    rnd = random.Random(seed)
    return sorted(Event(rnd.randrange(start_ms, end_ms), rnd.choice(USERS), rnd.choice(USERS[:25]), rnd.randrange(7))
                  for _ in range(n))


def pane(start_ms: int, seed: int, final: bool = False) -> ScoredPane:
    end_ms = start_ms + POLICY.size_ms
    events = from_events(events_between(start_ms, end_ms, seed))
    return ScoredPane(start_ms, end_ms, final, events, window_influence(events, CONFIG), Findings())


CONFIG = InfluenceConfig(history_len=4)
WINDOWS = [pane(DAY0 + k * POLICY.slice_ms, seed=k) for k in range(6)]
RECOMPUTED = pane(DAY0 + 3 * POLICY.slice_ms, 99, final=True)  # an older window with new data, after newer ones


def results(settings: Settings, prefix: str) -> ResultsConfig:
    return ResultsConfig(RedisTarget(settings.redis_url), KeyLayout(prefix), CONFIG, POLICY, retention_s=3600)


def user_docs(client: redis.Redis, prefix: str) -> dict[str, object]:
    layout = KeyLayout(prefix)
    return {user: (client.get(layout.user_latest(user)), client.hgetall(layout.user_history(user)))
            for user in USERS}


@pytest.fixture
def clean_prefixes(settings: Settings, redis_client: redis.Redis) -> list[str]:
    prefixes = [f"{settings.key_prefix}{name}" for name in ("inorder", "shuffled", "other")]
    yield prefixes
    for prefix in prefixes:
        for key in redis_client.scan_iter(match=f"{prefix}:*", count=10_000):
            redis_client.unlink(key)


def test_users_documents_do_not_depend_on_the_order_windows_are_written_in(
        settings: Settings, redis_client: redis.Redis, clean_prefixes: list[str]) -> None:
    in_order, shuffled, _ = clean_prefixes
    writer = WindowResults(results(settings, in_order))
    for p in WINDOWS:
        writer.write(p)
    expected = user_docs(redis_client, in_order)
    assert any(history for _, history in expected.values())
    for seed in range(3):
        for key in redis_client.scan_iter(match=f"{shuffled}:*"):
            redis_client.unlink(key)
        other = WindowResults(results(settings, shuffled))
        for p in random.Random(seed).sample(WINDOWS, len(WINDOWS)):
            other.write(p)
        assert user_docs(redis_client, shuffled) == expected


def test_latest_is_the_newest_window_with_the_long_term_score_of_the_history(
        settings: Settings, redis_client: redis.Redis, clean_prefixes: list[str]) -> None:
    prefix = clean_prefixes[2]
    writer = WindowResults(results(settings, prefix))
    for p in [*WINDOWS, RECOMPUTED]:
        writer.write(p)
    checked = 0
    for latest, history in user_docs(redis_client, prefix).values():
        if latest is None:
            continue
        doc = orjson.loads(latest)
        entries = [orjson.loads(v) for v in history.values()]
        newest = max(e["end"] for e in entries)
        assert doc["end"] == newest
        assert newest - min(e["end"] for e in entries) < CONFIG.history_len * POLICY.period_s
        expected = long_term_score([(e["end"], e["score"]) for e in entries], newest, POLICY.period_s,
                                   CONFIG.half_life_s, CONFIG.history_len)
        assert doc["long_term"] == pytest.approx(expected, abs=0.006)
        checked += 1
    assert checked > 10
    recomputed = RECOMPUTED.raw
    wid = f"{RECOMPUTED.start_ms // 1000}-{RECOMPUTED.end_ms // 1000}"
    user = next(u for u, i in recomputed.items() if i.reach > 0)
    stored = orjson.loads(redis_client.hget(KeyLayout(prefix).user_history(user), wid))
    assert stored["score"] == recomputed[user].score
