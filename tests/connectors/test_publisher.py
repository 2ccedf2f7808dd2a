"""The batched publishing path must put exactly the records send() would on the wire, or fail loudly.

Kafka tests (marked `servers`) run against the real broker of the test stack (tests/conftest.py),
each in scratch topics of its own that it deletes afterwards. The rest compare the fast paths with
kafka-python's and the schema's own code, byte for byte.
"""

from __future__ import annotations

import gzip
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.consumer.fetcher import ConsumerRecord
from kafka.partitioner.default import DefaultPartitioner
from kafka.partitioner.default import murmur2 as kafka_murmur2
from kafka.record.memory_records import MemoryRecordsBuilder

from clout.connectors.file import SourceLine, encode_event, encode_lines, read_source
from clout.connectors.publisher import (
    EVENT_ID_HEADER,
    DeliveryFailed,
    PublishCounts,
    Publisher,
    UnsupportedKafkaClient,
    _check_batch_internals,
    _encode_records,
    _filled_builder,
    murmur2,
)
from clout.connectors.replay import Pacing, replay
from clout.schemas import InteractionEvent, InvalidEvent, Reason
from clout.schemas.ids import is_platform
from clout.settings import Settings

TS = 1_341_100_972_000
kafka_test = pytest.mark.servers

# Lines of a Higgs-format file: good ones, and one of each way to be bad or to leave the fast path.
HIGGS_LINES = [
    b"223789 213163 1341100972 MT",
    b"376989 50329 1341101181 RT",
    b"# a comment",
    b"",
    b"223789 213163 1341100972 MT",  # a duplicate line at another position: another event
    b"1\t2\t1341101181\tRE",
    b"alice bob 1341101181 RT",
    b'qu"ote back\\slash 1341101181 RT',  # valid, but JSON needs escaping: general path
    b"per%cent 50% 1341101181 MT",
    b"\xc3\xa9t\xc3\xa9 \xe2\x82\xac 1341101181 MT",  # UTF-8 actors: general path
    b"\xff\xfe 12 1341101181 MT",  # not UTF-8: bad_id (never merged into one replaced id)
    b"\xc2\xa0 12 1341101181 MT",  # NBSP actor: empty once stripped
    b"\x1c 12 1341101181 MT",  # str whitespace, not bytes whitespace
    b"1 2 +1341101181 MT",
    b"1 2 1_341_101_181 MT",
    b"1 2 0001341101181 MT",
    b"1 2 -1341101181 MT",
    b"1 2 1341101181.5 MT",
    b"1 2 13411011810000 MT",  # out of range
    b"1 2 99 MT",  # seconds read as 1970
    b"1 2 1341101181 XX",
    b"1 2 1341101181",
    b"1 2 1341101181 MT extra",
    b"1 2\x0b1341101181\x0cMT\r",
    b"  7 8 1341101181 RE  ",
]


@pytest.fixture(scope="module")
def bootstrap(stack_settings: Settings) -> str:
    return stack_settings.kafka_bootstrap


@pytest.fixture(scope="module")
def admin(bootstrap: str) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=bootstrap.split(","))
    yield client
    client.close()


@pytest.fixture
def scratch(admin: KafkaAdminClient) -> Iterator:
    """make(partitions=6, **topic_configs) -> a fresh topic name (with its .dlq); all deleted after."""
    made: list[str] = []

    def make(partitions: int = 6, **configs: str) -> str:
        name = f"test.publisher.{uuid.uuid4().hex[:10]}"
        admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs),
                             NewTopic(f"{name}.dlq", 1, 1)])
        made.extend([name, f"{name}.dlq"])
        return name

    yield make
    admin.delete_topics(made)


def settings_for(bootstrap: str, topic: str) -> Settings:
    return Settings(kafka_bootstrap=bootstrap, topic=topic, dlq_topic=f"{topic}.dlq")


def consume_all(bootstrap: str, topic: str) -> list[ConsumerRecord]:
    """Every record of the topic, partition by partition in offset order."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    end = consumer.end_offsets(partitions)
    records: dict[int, list[ConsumerRecord]] = defaultdict(list)
    deadline = time.monotonic() + 60
    while any(consumer.position(tp) < end[tp] for tp in partitions) and time.monotonic() < deadline:
        for tp, batch in consumer.poll(timeout_ms=1000).items():
            records[tp.partition] += batch
    consumer.close()
    return [record for p in sorted(records) for record in records[p]]


def write_lines(path: Path, lines: list[bytes]) -> Path:
    with gzip.open(path, "wb") as handle:
        handle.write(b"\n".join(lines) + b"\n")
    return path


def events_for(actors: list[str], count: int, seed: int = 3) -> list[InteractionEvent]:
    rnd = random.Random(seed)
    return [InteractionEvent(event_id=f"test:{i}", ts=TS + rnd.randrange(-5_000_000, 5_000_000), platform="test",
                             actor=rnd.choice(actors), target=f"t{i % 97}", kind="mention",
                             content_id=str(i) if i % 3 else None, extra={"seq": i} if i % 5 == 0 else None)
            for i in range(count)]


# --- no broker needed ------------------------------------------------------------------------------


def test_murmur2_is_kafka_pythons():
    rnd = random.Random(1)
    keys = [rnd.randbytes(rnd.randrange(0, 70)) for _ in range(30_000)]
    keys += [str(i).encode() for i in range(30_000)] + ["ü€😀".encode() * n for n in range(9)]
    assert [murmur2(key) for key in keys] == [kafka_murmur2(key) for key in keys]


def test_record_batches_are_byte_identical_to_kafka_pythons_builder():
    rnd = random.Random(2)
    events = [(rnd.randbytes(rnd.choice([0, 1, 6, 63, 64, 200])),
               rnd.randbytes(rnd.choice([0, 1, 63, 64, 8191, 8192, 20_000])),
               TS + rnd.randrange(-10**9, 10**9), rnd.randbytes(rnd.choice([0, 33, 64])))
              for _ in range(300)]
    expected = MemoryRecordsBuilder(2, 0, 1 << 24)
    for key, value, ts, event_id in events:
        expected.append(ts, key, value, [(EVENT_ID_HEADER, event_id)])
    records, count, max_ts = _encode_records(events, 0, 1 << 24)
    actual = _filled_builder(0, 1 << 24, records, count, events[0][2], max_ts)
    for builder in (expected, actual):
        builder.set_producer_state(11, 2, 1000, False)
        builder.close()
    assert count == len(events)
    assert bytes(actual.buffer()) == bytes(expected.buffer())


def test_changed_kafka_python_internals_are_a_clear_error():
    with pytest.raises(UnsupportedKafkaClient, match=r"kafka-python .*missing producer\._accumulator.*pin"):
        _check_batch_internals(object())  # type: ignore[arg-type]


def test_batches_are_cut_where_kafka_pythons_builder_cuts_them():
    events = [(b"k", b"v" * 1000, TS + i, b"id") for i in range(50)]
    limit = 16_384 - 61
    _, count, _ = _encode_records(events, 0, limit)
    builder = MemoryRecordsBuilder(2, 0, 16_384)
    appended = sum(builder.append(ts, key, value, [(EVENT_ID_HEADER, eid)]) is not None
                   for key, value, ts, eid in events)
    assert count == appended


@pytest.mark.parametrize("fmt", ["snap-higgs", "snap-temporal"])
@pytest.mark.parametrize("platform", [None, "x", "per%cent", 'q"uote', "ünï", "   "])
def test_fast_edge_encoding_equals_the_general_path(tmp_path, fmt, platform):
    lines = HIGGS_LINES if fmt == "snap-higgs" else [b"src dst time"] + [b" ".join(line.split()[:3])
                                                                          for line in HIGGS_LINES]
    path = write_lines(tmp_path / "edges.txt.gz", lines)
    fast = list(read_source(path, fmt, platform).encoded_chunks(size=3))
    general = list(encode_lines(read_source(path, fmt, platform), size=3))

    def flat(chunks: list) -> tuple:
        return ([event for chunk in chunks for event in chunk.events],
                [(line.position, line.raw, line.result.reason, line.result.detail)
                 for chunk in chunks for line in chunk.rejects],
                sum(chunk.read for chunk in chunks))

    assert flat(fast) == flat(general)
    # a platform outside the id rule (clout/schemas/ids.py) invalidates every line
    assert bool(flat(fast)[0]) == is_platform(platform or "x")


def test_general_encoding_is_publish_encoded_arguments():
    event = InteractionEvent(event_id="x:1", ts=TS, platform="x", actor="ü", target="b", kind="like",
                             lang="de", extra={"n": 1})
    assert encode_event(event) == ("ü".encode(), event.to_json(), TS, b"x:1")


# --- against the broker ----------------------------------------------------------------------------


@kafka_test
def test_partitions_are_the_default_partitioners(bootstrap, scratch):
    ours, theirs = scratch(), scratch()
    rnd = random.Random(5)
    actors = [str(n) for n in range(1500)] + ["".join(rnd.choice("aé€😀_-") for _ in range(rnd.randrange(1, 12)))
                                              for _ in range(1500)]
    events = [(actor.encode(), b"{}", TS, str(i).encode()) for i, actor in enumerate(actors)]
    with Publisher(settings_for(bootstrap, ours)) as publisher:
        publisher.publish_batch(events)
    producer = KafkaProducer(bootstrap_servers=bootstrap.split(","))
    assert isinstance(producer.config["partitioner"], DefaultPartitioner)
    futures = [producer.send(theirs, key=key, value=value) for key, value, _, _ in events]
    producer.flush()
    expected = {key: future.get().partition for (key, *_), future in zip(events, futures, strict=True)}
    producer.close()
    records = consume_all(bootstrap, ours)
    assert len(records) == len(events)
    assert {record.key: record.partition for record in records} == expected
    assert len(set(expected.values())) == 6


@kafka_test
def test_records_carry_key_value_timestamp_and_event_id_exactly(bootstrap, scratch, tmp_path):
    topic = scratch()
    path = write_lines(tmp_path / "higgs.txt.gz", HIGGS_LINES)
    expected = [line.result for line in read_source(path, "snap-higgs") if isinstance(line.result, InteractionEvent)]
    generated = events_for(["ü", "a b", "1"], 500)
    with Publisher(settings_for(bootstrap, topic)) as publisher:
        summary = replay(read_source(path, "snap-higgs"), publisher, "higgs")
        replay(iter([SourceLine(i, b"", e) for i, e in enumerate(generated)]), publisher, "generated")
    assert summary.published == len(expected)
    by_id = {event.event_id: event for event in expected + generated}
    records = consume_all(bootstrap, topic)
    assert len(records) == len(by_id) == len(expected) + len(generated)
    for record in records:
        event_id = dict(record.headers)[EVENT_ID_HEADER].decode()
        event = by_id.pop(event_id)
        assert record.key == event.actor.encode()
        assert record.value == event.to_json() == orjson.dumps(event.to_dict())
        assert record.timestamp == event.ts and record.timestamp_type == 0
        assert record.headers == [(EVENT_ID_HEADER, event_id.encode())]
    assert not by_id


@kafka_test
def test_order_within_each_partition_is_publication_order(bootstrap, scratch):
    topic = scratch()
    events = events_for([f"actor{n}" for n in range(40)], 20_000)
    sent: list[InteractionEvent] = []
    with Publisher(settings_for(bootstrap, topic)) as publisher:
        for start in range(0, len(events), 3000):
            block = events[start:start + 3000]
            publisher.publish_batch([encode_event(event) for event in block[:2500]])
            for event in block[2500:]:  # the send() path, interleaved on the same partitions
                publisher.publish(event)
            sent += block
    records = consume_all(bootstrap, topic)
    position = {event.event_id: index for index, event in enumerate(sent)}
    by_partition: dict[int, list[int]] = defaultdict(list)
    for record in records:
        by_partition[record.partition].append(position[dict(record.headers)[EVENT_ID_HEADER].decode()])
    assert sum(len(seen) for seen in by_partition.values()) == len(sent)
    for seen in by_partition.values():
        assert seen == sorted(seen)


@kafka_test
def test_invalid_lines_go_to_the_dlq_with_reason_detail_and_source(bootstrap, scratch, tmp_path):
    topic = scratch()
    path = write_lines(tmp_path / "higgs.txt.gz", HIGGS_LINES)
    lines = list(read_source(path, "snap-higgs"))
    invalid = [line for line in lines if isinstance(line.result, InvalidEvent)]
    with Publisher(settings_for(bootstrap, topic)) as publisher:
        summary = replay(read_source(path, "snap-higgs"), publisher, "higgs.gz")
    assert summary.rejected == len(invalid) >= 9
    assert summary.published == len(lines) - len(invalid)
    dead = consume_all(bootstrap, f"{topic}.dlq")
    assert [record.value for record in dead] == [line.raw for line in invalid]
    for record, line in zip(dead, invalid, strict=True):
        headers = dict(record.headers)
        assert set(headers) == {"reason", "detail", "source"}
        assert headers["reason"] == line.result.reason.value.encode()
        assert headers["detail"] == line.result.detail.encode()
        assert headers["source"] == f"higgs.gz:{line.position}".encode()
    assert {Reason(dict(r.headers)["reason"].decode()) for r in dead} >= {
        Reason.BAD_SOURCE_LINE, Reason.UNKNOWN_KIND, Reason.WRONG_TYPE, Reason.TS_OUT_OF_RANGE, Reason.EMPTY_ID}
    assert len(consume_all(bootstrap, topic)) == summary.published


@kafka_test
def test_flush_raises_delivery_failed_when_the_broker_refuses_records(bootstrap, scratch):
    topic = scratch(**{"message.timestamp.before.max.ms": "86400000"})  # 2012 events are too old
    events = [encode_event(event) for event in events_for(["a", "b", "c"], 100)]
    publisher = Publisher(settings_for(bootstrap, topic), request_timeout_ms=2000, delivery_timeout_ms=3000)
    try:
        publisher.publish_batch(events)
        with pytest.raises(DeliveryFailed, match="100 record"):
            publisher.flush()
        assert publisher.counts.failed == 100
    finally:
        publisher._producer.close(timeout=5)


@kafka_test
def test_a_missing_topic_fails_at_once_not_after_the_source(bootstrap):
    missing = f"test.publisher.missing.{uuid.uuid4().hex[:8]}"  # auto.create.topics.enable=false
    publisher = Publisher(settings_for(bootstrap, missing), max_block_ms=1000)
    started = time.monotonic()
    try:
        with pytest.raises(DeliveryFailed, match="cannot publish"):
            publisher.publish_batch([(b"a", b"{}", TS, b"1")])
        assert time.monotonic() - started < 10
        assert publisher.counts.failed == 1 and publisher.counts.published == 0
    finally:
        publisher._producer.close(timeout=5)


@kafka_test
def test_batches_the_broker_splits_are_still_delivered_in_order_and_counted(bootstrap, scratch):
    topic = scratch(partitions=2, **{"max.message.bytes": "20000"})  # far below our batch size
    events = [(b"k%d" % (i % 50), b'{"seq":%06d,"pad":"%s"}' % (i, b"x" * 80), TS + i, b"e%d" % i)
              for i in range(3000)]
    with Publisher(settings_for(bootstrap, topic), compression_type=None) as publisher:
        publisher.publish_batch(events)
        publisher.flush()
        assert publisher.counts == PublishCounts(published=3000)
    records = consume_all(bootstrap, topic)
    assert sorted(record.value for record in records) == sorted(value for _, value, _, _ in events)
    seqs: dict[bytes, list[int]] = defaultdict(list)
    for record in records:
        seqs[record.key].append(int(record.value[7:13]))
    assert all(seen == sorted(seen) for seen in seqs.values())


@kafka_test
def test_paced_replay_still_publishes_event_by_event(bootstrap, scratch, tmp_path):
    topic = scratch()
    path = write_lines(tmp_path / "higgs.txt.gz", HIGGS_LINES[:2])
    with Publisher(settings_for(bootstrap, topic)) as publisher:
        summary = replay(read_source(path, "snap-higgs"), publisher, "higgs", Pacing(rate=1000))
    assert summary.published == 2
    assert len(consume_all(bootstrap, topic)) == 2


def test_lines_read_before_a_broken_gzip_are_still_chunked(tmp_path):
    whole = write_lines(tmp_path / "whole.txt.gz", [b"%d 2 1341100972 MT" % n for n in range(50_000)])
    broken = tmp_path / "broken.txt.gz"
    broken.write_bytes(whole.read_bytes()[:-2000])
    before: list[SourceLine] = []
    with pytest.raises(EOFError):
        before.extend(read_source(broken, "snap-higgs"))
    chunks = []
    with pytest.raises(EOFError):
        chunks.extend(read_source(broken, "snap-higgs").encoded_chunks(size=1000))
    assert 1000 < len(before) < 50_000
    assert [event for chunk in chunks for event in chunk.events] == [encode_event(line.result) for line in before]
