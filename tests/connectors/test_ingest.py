"""File replay into the real Kafka: everything published, bad lines exactly in the DLQ with reasons."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from clout.connectors.file import read_source
from clout.connectors.publisher import Publisher
from clout.connectors.replay import replay
from clout.connectors.topics import create_topics
from clout.settings import Settings

pytestmark = pytest.mark.servers
HIGGS_KIND = {"RT": "repost", "MT": "mention", "RE": "reply"}


def consume_all(settings: Settings, topic: str) -> list:
    """Every record of the topic, read with a plain consumer until each partition's end."""
    consumer = KafkaConsumer(**settings.kafka_client_config(), enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    ends = consumer.end_offsets(partitions)
    records = []
    while any(consumer.position(tp) < ends[tp] for tp in partitions):
        for batch in consumer.poll(timeout_ms=1000, max_records=50_000).values():
            records.extend(batch)
    consumer.close()
    return records


def publish_file(settings: Settings, path: Path, fmt: str) -> dict:
    create_topics(settings)
    with Publisher(settings) as publisher:
        return replay(read_source(path, fmt), publisher, str(path)).as_dict()


@pytest.mark.slow
def test_whole_higgs_file_round_trips_with_exact_counts_by_kind(settings: Settings, higgs_path: Path) -> None:
    with gzip.open(higgs_path, "rt") as handle:
        expected = Counter(HIGGS_KIND[line.split()[3]] for line in handle)
    assert expected == {"repost": 354_930, "mention": 171_237, "reply": 36_902}

    summary = publish_file(settings, higgs_path, "snap-higgs")
    assert (summary["read"], summary["published"], summary["rejected"]) == (563_069, 563_069, 0)

    records = consume_all(settings, settings.topic)
    assert Counter(orjson.loads(r.value)["kind"] for r in records) == expected
    assert consume_all(settings, settings.dlq_topic) == []


def test_corrupted_copy_sends_exactly_its_bad_lines_to_the_dlq(settings: Settings, higgs_path: Path,
                                                               tmp_path: Path) -> None:
    with gzip.open(higgs_path, "rb") as handle:
        good = [next(handle).rstrip(b"\n") for _ in range(2_000)]
    bad = {
        b"1 2 notatime RT": "wrong_type",
        b"1 2 1341100972 XX": "unknown_kind",
        b"1 2 1341100972": "bad_source_line",
        b"1 2 3 4 5": "bad_source_line",
        b"1 2 1 RT": "ts_out_of_range",
    }
    lines = []
    for i, line in enumerate(good):
        lines.append(line)
        if i % 400 == 0:
            lines.extend(bad)
    corrupted = tmp_path / "corrupted.txt.gz"
    corrupted.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))

    summary = publish_file(settings, corrupted, "snap-higgs")
    assert (summary["published"], summary["rejected"]) == (len(good), 5 * len(bad))

    published = consume_all(settings, settings.topic)
    events = [orjson.loads(r.value) for r in published]
    got = Counter((e["actor"], e["target"], e["ts"] // 1000, e["kind"]) for e in events)
    want = Counter((a.decode(), b.decode(), int(t), HIGGS_KIND[k.decode()]) for a, b, t, k in map(bytes.split, good))
    assert got == want
    letters = consume_all(settings, settings.dlq_topic)
    reasons = Counter((r.value, dict(r.headers)["reason"].decode()) for r in letters)
    assert reasons == Counter({(raw, reason): 5 for raw, reason in bad.items()})
    assert all(dict(r.headers)["source"].startswith(str(corrupted).encode()) for r in letters)
