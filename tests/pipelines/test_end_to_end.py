"""Kafka -> Beam (Prism) -> Redis against the real servers, checked against an independent recount."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis
from kafka import KafkaProducer
from recount import (
    Interaction,
    differences,
    influence_differences,
    networkx_pagerank,
    read_back,
    read_influence,
    recount,
    recount_influence_parts,
    snapshot,
)
from scipy.stats import spearmanr

from clout.anomalies.flag import DETECTORS
from clout.connectors.file import read_source
from clout.connectors.publisher import Publisher
from clout.connectors.replay import replay
from clout.connectors.topics import create_topics
from clout.schemas import InteractionEvent
from clout.settings import Settings

pytestmark = pytest.mark.servers
HIGGS_KIND = {"RT": "repost", "MT": "mention", "RE": "reply"}


def higgs_interactions(path: Path, limit: int | None = None) -> list[Interaction]:
    """The raw file read with plain Python: actor, target, ts in ms, kind."""
    out = []
    with gzip.open(path, "rt") as handle:
        for n, line in enumerate(handle):
            if limit is not None and n >= limit:
                break
            actor, target, ts, kind = line.split()
            out.append((actor, target, int(ts) * 1000, HIGGS_KIND[kind]))
    return out


def run_env(settings: Settings) -> dict[str, str]:
    names = ("kafka_bootstrap", "redis_url", "topic", "dlq_topic", "flags_topic", "group", "key_prefix")
    return {**os.environ, **{f"CLOUT_{name.upper()}": getattr(settings, name) for name in names}}


def start_run(settings: Settings, *flags: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "clout.cli", "run", "--from-beginning", "--stop-when-idle", "4", *flags]
    return subprocess.Popen(command, env=run_env(settings), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, timeout: float = 1800) -> str:
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # its own session: Prism and all, not left running
        raise
    assert process.returncode == 0, output[-4000:]
    print(summary_line(output))  # shown by pytest when a later assertion fails
    return output


def summary_line(output: str) -> str:
    return next((line for line in reversed(output.splitlines()) if line.startswith("clout run done")), "no summary")


def publish(settings: Settings, path: Path, fmt: str = "snap-higgs") -> None:
    create_topics(settings)
    with Publisher(settings) as publisher:
        replay(read_source(path, fmt), publisher, str(path), progress_interval=30)


# The restart test kills a replay of the first 78 hours (two quiet days and the start of the surge
# that follows the announcement): long enough that the restart skips windows that closed before the
# kill and reads their groups back from Redis, short enough to run three times.
RESTART_EVENTS = 100_000
KILL_AFTER_SEALED_MS = 60 * 3_600_000  # event time past the first event sealed before the kill


def fresh_topic(settings: Settings, path: Path) -> Settings:
    """`path` published to the topics named in `settings`, which are deleted first if they exist."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(**settings.kafka_client_config())
    existing = set(admin.list_topics())
    ours = (settings.topic, settings.dlq_topic, settings.flags_topic)
    if set(ours) & existing:
        admin.delete_topics([t for t in ours if t in existing])
        time.sleep(2)
    admin.close()
    publish(settings, path)
    return settings


@pytest.fixture(scope="module")
def higgs_topic(stack_settings: Settings, higgs_path: Path) -> Settings:
    """The whole real Higgs file, published once for the tests of this module."""
    return fresh_topic(stack_settings.replace(topic="e2e.higgs", dlq_topic="e2e.higgs.dlq",
                                              flags_topic="e2e.higgs.flags"), higgs_path)


@pytest.fixture(scope="module")
def higgs_start_path(higgs_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first RESTART_EVENTS lines of the Higgs file (it is in time order)."""
    with gzip.open(higgs_path, "rb") as handle:
        lines = [next(handle) for _ in range(RESTART_EVENTS)]
    path = tmp_path_factory.mktemp("higgs") / "higgs-start.txt"
    path.write_bytes(b"".join(lines))
    return path


@pytest.fixture(scope="module")
def higgs_start_topic(stack_settings: Settings, higgs_start_path: Path) -> Settings:
    return fresh_topic(stack_settings.replace(topic="e2e.higgs-start", dlq_topic="e2e.higgs-start.dlq",
                                              flags_topic="e2e.higgs-start.flags"), higgs_start_path)


@pytest.fixture(scope="module")
def higgs_raw(higgs_path: Path) -> list[Interaction]:
    return higgs_interactions(higgs_path)


@pytest.fixture(scope="module")
def higgs_recount(higgs_raw: list[Interaction]) -> dict[str, dict]:
    return recount(higgs_raw)


def uninterrupted(topic: Settings) -> Iterator[tuple[Settings, str, redis.Redis]]:
    """One uninterrupted run over the topic, under a group and key prefix of its own; its keys are
    deleted afterwards."""
    tag = uuid.uuid4().hex[:8]
    mine = topic.replace(group=f"g{tag}", key_prefix=f"test{tag}")
    output = finish(start_run(mine))
    client = redis.Redis.from_url(mine.redis_url)
    yield mine, output, client
    for key in client.scan_iter(match=f"{mine.key_prefix}:*", count=10_000):
        client.delete(key)
    client.close()


@pytest.fixture(scope="module")
def higgs_run(higgs_topic: Settings) -> Iterator[tuple[Settings, str, redis.Redis]]:
    """The whole week uninterrupted: what the recount and networkx tests read."""
    yield from uninterrupted(higgs_topic)


@pytest.fixture(scope="module")
def higgs_start_run(higgs_start_topic: Settings) -> Iterator[tuple[Settings, str, redis.Redis]]:
    """The first 78 hours uninterrupted: the reference of the restart test."""
    yield from uninterrupted(higgs_start_topic)


@pytest.mark.slow
def test_higgs_replay_equals_recount(higgs_run: tuple[Settings, str, redis.Redis], higgs_recount: dict,
                                    higgs_raw: list[Interaction]) -> None:
    mine, output, client = higgs_run
    assert "events_valid 563,069" in output, output[-2000:]
    assert differences(higgs_recount, read_back(client, mine.key_prefix)) == []
    influence = read_influence(client, mine.key_prefix)
    assert influence_differences(recount_influence_parts(higgs_raw), influence) == []


@pytest.mark.slow
def test_higgs_network_influence_agrees_with_networkx(higgs_run: tuple[Settings, str, redis.Redis],
                                                      higgs_raw: list[Interaction]) -> None:
    """The three busiest windows: PageRank from Redis against networkx on edges rebuilt from the raw file."""
    mine, _, client = higgs_run
    influence = read_influence(client, mine.key_prefix)
    busiest = sorted(influence, key=lambda w: len(influence[w]), reverse=True)[:3]
    for window in busiest:
        reference = networkx_pagerank(higgs_raw, window)
        ours = {user: value["network"] for user, value in influence[window].items()}  # users who were engaged
        users = sorted(ours)
        rho = spearmanr([reference[u] for u in users], [ours[u] for u in users]).statistic
        assert rho >= 0.999, (window, rho)
        # Structurally equivalent users tie exactly: compare to 12 significant digits, ties by id.
        top_reference = set(sorted(reference, key=lambda u: (-float(f"{reference[u]:.12g}"), u))[:100])
        top_ours = set(sorted(users, key=lambda u: (-float(f"{ours[u]:.12g}"), u))[:100])
        assert top_reference == top_ours, (window, len(users), top_reference ^ top_ours)


@pytest.mark.slow
def test_restart_after_sigkill_equals_an_uninterrupted_run(higgs_start_topic: Settings, higgs_raw: list[Interaction],
                                                           higgs_start_run: tuple[Settings, str, redis.Redis],
                                                           redis_client: redis.Redis, settings: Settings) -> None:
    mine = higgs_start_topic.replace(group=settings.group, key_prefix=settings.key_prefix)
    first = start_run(mine)
    progress_key = f"{mine.key_prefix}:v1:progress:{{{mine.group}}}"
    kill_at = higgs_raw[0][2] + KILL_AFTER_SEALED_MS
    deadline = time.monotonic() + 600
    while int(redis_client.hget(progress_key, "sealed_ms") or -1) < kill_at:
        assert first.poll() is None, "the pipeline finished before it could be killed mid-stream"
        assert time.monotonic() < deadline, "no progress within 10 minutes"
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # the pipeline and its Prism runner, mid-stream
    first.wait()
    output = finish(start_run(mine))
    assert "resuming" in output, output[-2000:]
    assert differences(recount(higgs_raw[:RESTART_EVENTS]), read_back(redis_client, mine.key_prefix)) == []
    reference, client = higgs_start_run[0], higgs_start_run[2]
    expected, got = snapshot(client, reference.key_prefix), snapshot(redis_client, mine.key_prefix)
    # Exact: counts, influence, leaderboards, users' latest and history, flagged sets, groups. A flag's
    # announcement (stream) and a user's newest flag record follow the order panes came in, which
    # Prism's processing lag can change; for those the test checks what holds whatever the order.
    order_dependent = (":flags", ":flags:stream", ":announced")
    exact = {key for key in expected if not key.endswith(order_dependent)}
    restarted = {key for key in got if not key.endswith(order_dependent)}
    assert (sorted(exact - restarted)[:20], sorted(restarted - exact)[:20]) == ([], [])  # (only before, only after)
    assert [key for key in sorted(exact) if expected[key] != got[key]][:5] == []
    assert_same_account_snapshots(client, reference, redis_client, mine)
    for prefix in (reference.key_prefix, mine.key_prefix):
        assert_every_final_flag_announced_once(redis_client if prefix == mine.key_prefix else client, prefix)


def account_snapshots(client: redis.Redis, settings: Settings) -> dict[str, dict[bytes, bytes]]:
    """Each account shard's snapshots (`<shards>:<shard>` -> day -> bytes) of the run's group."""
    head = f"{settings.key_prefix}:v1:accounts:{{{settings.group}}}:"
    return {key.decode()[len(head):]: client.hgetall(key) for key in client.scan_iter(match=head + "*")}


def assert_same_account_snapshots(client: redis.Redis, reference: Settings, other_client: redis.Redis,
                                  other: Settings) -> None:
    """The restarted run's account state, snapshot by snapshot, is the uninterrupted run's: the
    restart resumed from one of them and folded the same slices after it."""
    expected, got = account_snapshots(client, reference), account_snapshots(other_client, other)
    assert expected and sorted(expected) == sorted(got)
    for shard, days in expected.items():
        common = set(days) & set(got[shard])
        assert common, shard
        assert [day for day in sorted(common) if days[day] != got[shard][day]] == [], shard


def assert_every_final_flag_announced_once(client: redis.Redis, prefix: str) -> None:
    announced = [orjson.loads(fields[b"flag"]) for _, fields in client.xrange(f"{prefix}:v1:flags:stream")]
    keys = [(f["window"], f["detector"], f["user"]) for f in announced]
    assert len(keys) == len(set(keys)), "a flag was announced twice"
    final = set()
    for window in (w.decode() for w in client.zrange(f"{prefix}:v1:scored", 0, -1)):
        for detector in DETECTORS:
            final |= {(window, detector, u.decode())
                      for u in client.zrange(f"{prefix}:v1:win:{{{window}}}:flagged:{detector}", 0, -1)}
    assert final and final <= set(keys)


def test_duplicates_are_not_double_counted(settings: Settings, redis_client: redis.Redis, higgs_path: Path,
                                           tmp_path: Path) -> None:
    with gzip.open(higgs_path, "rb") as handle:
        lines = handle.read().splitlines()[100_000:120_000]
    piece = tmp_path / "slice.txt"
    piece.write_bytes(b"\n".join(lines) + b"\n")
    publish(settings, piece)
    publish(settings, piece)  # the same slice again, by mistake: same event ids
    output = finish(start_run(settings))
    assert "duplicates_dropped 20,000" in output, output[-2000:]
    expected = recount((a.decode(), b.decode(), int(t) * 1000, HIGGS_KIND[k.decode()])
                       for a, b, t, k in map(bytes.split, lines))
    assert differences(expected, read_back(redis_client, settings.key_prefix)) == []


def test_poison_records_go_to_the_dlq_and_good_ones_are_all_counted(settings: Settings,
                                                                     redis_client: redis.Redis) -> None:
    create_topics(settings)
    producer = KafkaProducer(**settings.kafka_client_config())
    poison = [b"{not json", b"[]", b'{"v": 1}', b'{"v": 9, "event_id": "x"}', b"\xff\xfe", b""]
    good: list[Interaction] = []
    base = 1_700_000_000_000
    for i in range(3_000):
        event = InteractionEvent(event_id=f"p:{i}", ts=base + i * 1_000, platform="p", actor=f"a{i % 37}",
                                 target=f"t{i % 11}", kind=("like", "repost", "reply")[i % 3])
        producer.send(settings.topic, key=event.actor.encode(), value=event.to_json(), timestamp_ms=event.ts)
        good.append((event.actor, event.target, event.ts, event.kind))
        if i % 500 == 0:
            for raw in poison:
                producer.send(settings.topic, key=b"x", value=raw, timestamp_ms=base + i * 1_000)
    producer.flush()
    producer.close()
    output = finish(start_run(settings))
    assert f"events_rejected {6 * len(poison):,}" in output, output[-2000:]
    assert differences(recount(good), read_back(redis_client, settings.key_prefix)) == []
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**settings.kafka_client_config())
    tp = TopicPartition(settings.dlq_topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    letters = []
    while len(letters) < 6 * len(poison):
        batch = consumer.poll(timeout_ms=5_000).get(tp, [])
        assert batch, f"only {len(letters)} dead letters arrived"
        letters.extend(batch)
    consumer.close()
    reasons = sorted({dict(r.headers)["reason"].decode() for r in letters})
    assert reasons == ["missing_field", "not_json", "not_object", "unsupported_version"]
    assert sorted(r.value for r in letters) == sorted(poison * 6)
