"""WindowResults on the real Redis: users' documents written from this process's copy of them are
byte for byte what a writer that reads every user back from Redis writes, whatever the pane order,
and another process writing in between makes the copy be read again."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
import redis

from clout.influence.scores import InfluenceConfig
from clout.model.columns import from_events
from clout.model.events import Event
from clout.model.panes import Pane
from clout.model.windows import WindowPolicy
from clout.settings import Settings
from clout.store.client import RedisTarget
from clout.store.layout import KeyLayout
from clout.store.window_results import ResultsConfig, WindowResults

pytestmark = pytest.mark.servers
POLICY = WindowPolicy(size_s=3600, period_s=900, lateness_s=600)
DAY0 = 1_341_100_800_000
USERS = [f"u{i}" for i in range(60)]


def events_between(start_ms: int, end_ms: int, seed: int, n: int = 400) -> list[Event]:
    rnd = random.Random(seed)
    return sorted(Event(rnd.randrange(start_ms, end_ms), rnd.choice(USERS), rnd.choice(USERS[:25]), rnd.randrange(7))
                  for _ in range(n))


def pane(start_ms: int, seed: int, final: bool = False) -> Pane:
    end_ms = start_ms + POLICY.size_ms
    slices = {s: [e for e in events_between(start_ms, end_ms, seed) if s <= e.ts < s + POLICY.slice_ms]
              for s in range(start_ms, end_ms, POLICY.slice_ms)}
    events = [e for s in sorted(slices) for e in slices[s]]
    return Pane(start_ms, end_ms, from_events(events), {s: from_events(e) for s, e in slices.items()}, final=final,
                changed=True)


# A restart's replay: windows in order, then an older window recomputed (new data) after newer ones.
PANES = [pane(DAY0 + k * POLICY.slice_ms, seed=k) for k in range(6)] + [pane(DAY0 + POLICY.slice_ms, 99, final=True)]


def results(settings: Settings, prefix: str) -> ResultsConfig:
    return ResultsConfig(RedisTarget(settings.redis_url), KeyLayout(prefix), InfluenceConfig(history_len=4), POLICY,
                         retention_s=3600)


def user_docs(client: redis.Redis, prefix: str) -> dict[str, object]:
    layout = KeyLayout(prefix)
    return {user: (client.get(layout.user_latest(user)), client.hgetall(layout.user_history(user)))
            for user in USERS}


def write_all(writer_for: Callable[[int], WindowResults]) -> None:
    for i, p in enumerate(PANES):
        writer_for(i)(p, {})


@pytest.fixture
def clean_prefixes(settings: Settings, redis_client: redis.Redis) -> list[str]:
    prefixes = [f"{settings.key_prefix}{name}" for name in ("copy", "reread", "shared")]
    yield prefixes
    for prefix in prefixes:
        for key in redis_client.scan_iter(match=f"{prefix}:*", count=10_000):
            redis_client.unlink(key)


def test_users_written_from_the_copy_equal_users_read_back(settings: Settings, redis_client: redis.Redis,
                                                           clean_prefixes: list[str]) -> None:
    copy, reread, _ = clean_prefixes
    one_writer = WindowResults(results(settings, copy))
    write_all(lambda _: one_writer)
    # A new process-wide state per pane: every user is read back from Redis.
    write_all(lambda _: WindowResults(results(settings, reread)))
    expected = user_docs(redis_client, reread)
    assert any(history for _, history in expected.values())
    assert user_docs(redis_client, copy) == expected


def test_another_writer_in_between_makes_the_copy_be_read_again(settings: Settings, redis_client: redis.Redis,
                                                                clean_prefixes: list[str]) -> None:
    _, reread, shared = clean_prefixes
    first, second = results(settings, shared), results(settings, shared)  # two processes' state, one prefix
    writers = [WindowResults(first), WindowResults(second)]
    write_all(lambda i: writers[i % 2])
    write_all(lambda _: WindowResults(results(settings, reread)))
    assert user_docs(redis_client, shared) == user_docs(redis_client, reread)
