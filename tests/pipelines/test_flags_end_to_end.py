"""A synthetic run with planted anomalies, Kafka -> Beam (Prism) -> Redis: the planted bots, the
amplification ring and the bought burst's target end up flagged in Redis, on the flag stream and on
the `flags` Kafka topic; the clean leaderboard drops what the flagged accounts inflated."""

from __future__ import annotations

import orjson
import pytest
import redis
from kafka import KafkaConsumer, TopicPartition
from test_end_to_end import finish, start_run

from clout.connectors.publisher import Publisher
from clout.connectors.replay import events_as_lines, replay
from clout.connectors.synthetic import SyntheticConfig, SyntheticStream
from clout.connectors.topics import create_topics
from clout.settings import Settings

pytestmark = pytest.mark.servers


def flags_on_topic(settings: Settings) -> list[dict]:
    consumer = KafkaConsumer(**settings.kafka_client_config())
    tp = TopicPartition(settings.flags_topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    end = consumer.end_offsets([tp])[tp]
    records = []
    while len(records) < end:
        records.extend(consumer.poll(timeout_ms=5_000).get(tp, []))
    consumer.close()
    return [orjson.loads(r.value) for r in records]


def test_planted_anomalies_are_flagged_everywhere(settings: Settings, redis_client: redis.Redis) -> None:
    stream = SyntheticStream(SyntheticConfig(users=5_000, events=100_000, seed=7))
    truth = stream.truth
    create_topics(settings)
    with Publisher(settings) as publisher:
        replay(events_as_lines(stream), publisher, "synthetic", progress_interval=30)
    output = finish(start_run(settings))
    prefix = settings.key_prefix

    on_stream = [orjson.loads(fields[b"flag"]) for _, fields in redis_client.xrange(f"{prefix}:v1:flags:stream")]
    by_detector: dict[str, set[str]] = {}
    for flag in on_stream:
        by_detector.setdefault(flag["detector"], set()).add(flag["user"])
    assert set(truth.bots) <= by_detector.get("bot", set()), output[-1500:]
    assert set(truth.ring_members) <= by_detector.get("lockstep", set())
    assert truth.purchase_target in by_detector.get("burst", set()) | by_detector.get("microcluster", set())
    assert not by_detector.get("bot", set()) & set(truth.ring_members)  # each planted kind by its own detector

    # the Kafka topic carries exactly the stream's flags; each (user, window, detector) once
    on_topic = flags_on_topic(settings)
    key = lambda f: (f["user"], f["window"], f["detector"])  # noqa: E731
    assert sorted(map(key, on_topic)) == sorted(map(key, on_stream))
    assert len(set(map(key, on_stream))) == len(on_stream)

    # every flag carries reasons and evidence, and the user's current flags are readable
    bot = sorted(truth.bots)[0]
    stored = orjson.loads(redis_client.hget(f"{prefix}:v1:user:{{{bot}}}:flags", "bot"))
    assert stored["reasons"] and stored["evidence"] and 0.0 <= stored["score"] <= 1.0

    # a ring's groups are stored with their members; a group that a window's later pane (late events)
    # no longer finds has its record deleted, so some announced groups may have none
    group_ids = sorted({f["group"] for f in on_stream if f["detector"] == "lockstep"})
    records = redis_client.mget([f"{prefix}:v1:group:{{{gid}}}" for gid in group_ids])
    groups = [orjson.loads(record) for record in records if record is not None]
    assert groups, f"no record for any of the {len(group_ids)} announced lockstep groups"
    for group in groups:
        assert set(group["members"]) <= set(truth.ring_members) and len(group["targets"]) >= 3
