"""Kafka -> Beam (Prism) -> a real 3-master Redis Cluster: the first day of real Higgs equals the
independent recount, and `clout query`, the read API and the Python client read it back from the
cluster. The same pipeline and readers as on one Redis; only the URL says `redis+cluster://`."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from recount import (
    Interaction,
    differences,
    influence_differences,
    read_back,
    read_influence,
    recount,
    recount_influence_parts,
)
from redis.cluster import RedisCluster
from serving.serving_harness import running_app
from test_end_to_end import HIGGS_KIND, assert_every_final_flag_announced_once, finish, publish, run_env, start_run

from clout.serving.client import CloutClient
from clout.settings import Settings
from clout.store.client import sync_client
from clout.store.layout import KeyLayout

pytestmark = pytest.mark.servers
DAY_S = 86_400


@pytest.fixture(scope="module")
def first_day(higgs_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Interaction]]:
    """The first 24 hours of the (time-sorted) file, as a file to publish and as raw tuples."""
    lines = []
    with gzip.open(higgs_path, "rb") as handle:
        for line in handle:
            if lines and int(line.split()[2]) >= int(lines[0].split()[2]) + DAY_S:
                break
            lines.append(line)
    piece = tmp_path_factory.mktemp("higgs") / "first-day.txt"
    piece.write_bytes(b"".join(lines))
    raw = [(a.decode(), b.decode(), int(t) * 1000, HIGGS_KIND[k.decode()]) for a, b, t, k in map(bytes.split, lines)]
    return piece, raw


@pytest.fixture(scope="module")
def cluster_run(stack_settings: Settings, redis_cluster_url: str,
                first_day: tuple[Path, list[Interaction]]) -> Iterator[tuple[Settings, str, RedisCluster]]:
    """`clout run` over the first day, its results in the cluster."""
    tag = uuid.uuid4().hex[:8]
    mine = stack_settings.replace(topic=f"t{tag}.interactions", dlq_topic=f"t{tag}.interactions.dlq",
                                  flags_topic=f"t{tag}.flags", group=f"g{tag}", key_prefix=f"test{tag}",
                                  redis_url=redis_cluster_url)
    publish(mine, first_day[0])
    output = finish(start_run(mine))
    client = sync_client(redis_cluster_url)
    assert isinstance(client, RedisCluster)
    yield mine, output, client
    for key in list(client.scan_iter(match=f"{mine.key_prefix}:*", count=10_000)):  # every master
        client.unlink(key)
    client.close()


def test_first_day_on_the_cluster_equals_the_recount(cluster_run: tuple[Settings, str, RedisCluster],
                                                     first_day: tuple[Path, list[Interaction]]) -> None:
    mine, output, client = cluster_run
    raw = first_day[1]
    assert f"events_valid {len(raw):,}" in output, output[-2000:]
    assert differences(recount(raw), read_back(client, mine.key_prefix)) == []
    assert influence_differences(recount_influence_parts(raw), read_influence(client, mine.key_prefix)) == []
    keys = list(client.scan_iter(match=f"{mine.key_prefix}:*", count=10_000))
    assert len({client.get_node_from_key(key).name for key in keys}) == 3  # the results span every master
    assert_every_final_flag_announced_once(client, mine.key_prefix)  # flags too (the first day has some)


def query(settings: Settings, *args: str) -> object:
    done = subprocess.run([sys.executable, "-m", "clout.cli", "query", *args], env=run_env(settings),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_query_api_and_client_read_the_cluster(cluster_run: tuple[Settings, str, RedisCluster],
                                               first_day: tuple[Path, list[Interaction]]) -> None:
    mine, _, client = cluster_run
    expected = recount(first_day[1])
    layout = KeyLayout(mine.key_prefix)
    window = max(expected, key=lambda w: len(expected[w]))  # the busiest window
    user = max(expected[window], key=lambda u: (expected[window][u]["in"], u))
    newest = [w.decode() for w in client.zrevrange(layout.windows(), 0, 2)]

    assert query(mine, "windows", "--last", "3") == newest
    assert query(mine, "user", user, "--window", window) == {"user": user, "window": window, **expected[window][user]}
    top = query(mine, "top", "--window", window, "--metric", "received", "--limit", "1")
    assert top["top"] == [{"user": user, "received": expected[window][user]["in"]}]
    assert query(mine, "score", user)["history"]
    assert query(mine, "flags", "--limit", "3")

    with CloutClient(mine.redis_url, mine.key_prefix, mine.retention_seconds) as reader:
        view = reader.user_in_window(user, window)
        assert view.activity is not None and view.activity.model_dump(by_alias=True) == expected[window][user]
        board = reader.leaderboard(window, "received", limit=5)
        assert board.entries[0].user == user and board.entries[0].value == expected[window][user]["in"]
        assert [w.id for w in reader.windows(limit=3).windows] == newest
        scored = reader.user(user)
        with running_app(mine) as api:
            assert api.get(f"/v1/users/{user}/windows/{window}").json() == view.model_dump(mode="json", by_alias=True)
            assert api.get(f"/v1/windows/{window}/leaderboard?board=received&limit=5").json() == board.model_dump(
                mode="json")
            assert api.get(f"/v1/users/{user}").json() == scored.model_dump(mode="json", by_alias=True)
            assert api.get("/v1/windows/latest/flagged").status_code == 200
            assert api.get("/readyz").status_code in (200, 503)  # answers from the cluster (503: replayed data is old)
