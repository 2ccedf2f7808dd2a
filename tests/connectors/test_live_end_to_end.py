"""Replayed live sources through `clout ingest bluesky|mastodon` and the real pipeline (`clout run` on Prism)
into Redis: a user's score and the per-platform leaderboards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest
import redis
from live_servers import JetstreamReplay, MastodonReplay
from test_bluesky import EXPECTED, independent_reading
from test_mastodon import SSE, TOKEN, WS

from clout.connectors.topics import create_topics
from clout.settings import Settings

pytestmark = pytest.mark.servers


def clout(settings: Settings, *args: str, timeout: float, **env_vars: str) -> tuple[str, str]:
    names = ("kafka_bootstrap", "redis_url", "topic", "dlq_topic", "flags_topic", "group", "key_prefix", "state_dir")
    env = {**os.environ, **{f"CLOUT_{n.upper()}": str(getattr(settings, n)) for n in names}, **env_vars}
    result = subprocess.run([sys.executable, "-m", "clout.cli", *args], env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout, result.stderr


def test_jetstream_replay_reaches_redis_through_the_pipeline(settings: Settings, redis_client: redis.Redis,
                                                            tmp_path: Path) -> None:
    mine = settings.replace(state_dir=tmp_path)
    create_topics(mine)
    server = JetstreamReplay(EXPECTED)
    server.drop_after = [70]
    with server.running() as url:
        ingested, _ = clout(mine, "ingest", "bluesky", "--url", url, "--stop-when-idle", "2", "--backoff", "0.05",
                         timeout=120)
    summary = json.loads(ingested)
    assert summary["reconnects"] == 1 and summary["published"] > summary["events"] // 2
    output = "".join(clout(mine, "run", "--from-beginning", "--stop-when-idle", "3", timeout=600))
    repeated = summary["published"] - 134
    assert "events_valid" in output and f"duplicates_dropped {repeated:,}" in output, output[-3000:]

    received = Counter(target for (_kind, _actor, target), n in independent_reading(EXPECTED).items()
                       for _ in range(n))
    top, count = received.most_common(1)[0]
    prefix = f"{mine.key_prefix}:v1"
    windows = [w.decode() for w in redis_client.zrange(f"{prefix}:scored", 0, -1)]
    assert windows
    activity = orjson.loads(redis_client.hget(f"{prefix}:win:{{{windows[-1]}}}:activity", top))
    assert sum(activity["received"].values()) == count
    latest = orjson.loads(redis_client.get(f"{prefix}:user:{{{top}}}:latest"))
    assert latest["platform"] == "bluesky" and 1 <= latest["score"] <= 100
    board = redis_client.zrevrange(f"{prefix}:win:{{{windows[-1]}}}:lb:score:platform:bluesky", 0, -1,
                                   withscores=True)
    engaged_by_others = {target for (_kind, actor, target) in independent_reading(EXPECTED) if actor != target}
    assert top.encode() in dict(board) and {u.decode() for u, _ in board} == engaged_by_others
    print(f"pipeline: {top} received {count}, score {latest['score']}; bluesky board {len(board)} users; "
          f"{repeated} repeated records dropped")


def test_mastodon_streams_reach_the_per_instance_leaderboard(settings: Settings, redis_client: redis.Redis,
                                                             tmp_path: Path) -> None:
    mine = settings.replace(state_dir=tmp_path)
    create_topics(mine)
    server = MastodonReplay(SSE, WS, TOKEN)
    with server.running_sse() as instance:
        for stream in ("public", "user:notification"):  # in event-time order, as a live stream would be
            clout(mine, "ingest", "mastodon", "--instance", instance, "--stream", stream, "--stop-when-idle", "2",
                  timeout=120, CLOUT_MASTODON_ACCESS_TOKEN=TOKEN)
    output = "".join(clout(mine, "run", "--from-beginning", "--stop-when-idle", "3", timeout=600))
    assert "events_valid 2" in output, output[-3000:]
    prefix = f"{mine.key_prefix}:v1"
    window = redis_client.zrevrange(f"{prefix}:scored", 0, 0)[0].decode()
    board = redis_client.zrevrange(f"{prefix}:win:{{{window}}}:lb:score:platform:mastodon:127.0.0.1", 0, -1)
    assert {user.decode() for user in board} == {"disarray@pl.nulled.red", "alice@127.0.0.1"}
