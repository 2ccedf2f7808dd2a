"""Publish benchmark: the whole Higgs activity file through `clout ingest file`'s code path, read back.

Run from the repository root:  .venv/bin/python bench/publish.py [--bootstrap HOST:PORT] [--data-dir DIR]

1. publishes higgs-activity_time.txt.gz (read_source -> Publisher -> replay, as the CLI does) into
   a fresh 6-partition scratch topic;
2. consumes it back with a plain KafkaConsumer (all partitions assigned, from the beginning, until
   every end offset is reached) and checks the count, the counts by kind against a plain count of
   the raw file, and that each record's key, timestamp and event_id header match its value;
3. measures, in this same process, the CPU ceilings around it: orjson encode (to_json) of the same
   events, orjson decode (loads) and decode+validate (parse_event) of the consumed values, and the
   file decoders themselves;
then prints a summary table, deletes the scratch topics, and exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import orjson
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from clout.connectors.file import read_source
from clout.connectors.publisher import Publisher
from clout.connectors.replay import replay
from clout.progress import RateReporter
from clout.schemas import parse_event
from clout.settings import Settings

REPO = Path(__file__).resolve().parent.parent
HIGGS = Path("higgs-twitter") / "higgs-activity_time.txt.gz"
EXPECTED_EVENTS = 563_069
HIGGS_KINDS = {b"RT": "repost", b"MT": "mention", b"RE": "reply"}
PARTITIONS = 6


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    path = Path(args.data_dir) / HIGGS
    if not path.exists():
        print(f"missing dataset: {path}", file=sys.stderr)
        return 2
    topic = f"bench.publish.{uuid.uuid4().hex[:8]}"
    settings = Settings(kafka_bootstrap=args.bootstrap, topic=topic, dlq_topic=f"{topic}.dlq")
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap.split(","))
    admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in (topic, settings.dlq_topic)])
    rows: list[tuple[str, float, str]] = []
    load_before = os.getloadavg()[0]
    try:
        failures = _run(path, settings, rows)
    finally:
        admin.delete_topics([topic, settings.dlq_topic])
        admin.close()
    _print_table(rows)
    print(f"{os.cpu_count()} CPUs; 1-min load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after "
          "(the broker and anything else running share them)")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    print("all checks passed" if not failures else f"{len(failures)} check(s) failed", file=sys.stderr)
    return 1 if failures else 0


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default=os.environ.get("CLOUT_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    return parser.parse_args(argv)


def _run(path: Path, settings: Settings, rows: list[tuple[str, float, str]]) -> list[str]:
    """All phases; appends (phase, events/s, note) rows and returns the failed checks."""
    expected = _plain_kind_counts(path)
    failures = _check_equal("events in the raw file", sum(expected.values()), EXPECTED_EVENTS)

    started = time.perf_counter()
    with Publisher(settings) as publisher:
        summary = replay(read_source(path, "snap-higgs"), publisher, str(path))
    published_in = time.perf_counter() - started  # includes the final flush (all acknowledged)
    rows.append(("publish (clout ingest file path, acked)", summary.published / published_in,
                 f"{summary.published:,} events in {published_in:.2f} s"))
    failures += _check_equal("published", summary.published, EXPECTED_EVENTS)

    values, consumed_in, mismatched = _consume(settings)
    rows.append(("consume (plain KafkaConsumer)", len(values) / consumed_in,
                 f"{len(values):,} records in {consumed_in:.2f} s"))
    failures += _check_equal("consumed", len(values), EXPECTED_EVENTS)
    failures += _check_equal("records whose key/timestamp/event_id disagree with their value", mismatched, 0)
    kinds = Counter(orjson.loads(value)["kind"] for value in values)
    for kind, count in sorted(expected.items()):
        failures += _check_equal(f"consumed {kind}", kinds[kind], count)

    rows += _ceilings(path, values)
    return failures


def _plain_kind_counts(path: Path) -> Counter[str]:
    """The reference: the fourth field of each line of the raw file, counted without clout."""
    counts: Counter[str] = Counter()
    with gzip.open(path, "rb") as lines:
        for line in lines:
            fields = line.split()
            if fields:
                counts[HIGGS_KINDS.get(fields[-1], fields[-1].decode())] += 1
    return counts


def _consume(settings: Settings) -> tuple[list[bytes], float, int]:
    """Every value of the topic, the seconds it took to read them, and how many records broke the
    contract (key = actor, timestamp = ts, event_id header = event_id)."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap.split(","), enable_auto_commit=False,
                             group_id=None, fetch_max_bytes=64 * 1024 * 1024,
                             max_partition_fetch_bytes=16 * 1024 * 1024)
    partitions = [TopicPartition(settings.topic, p) for p in sorted(consumer.partitions_for_topic(settings.topic))]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    end = consumer.end_offsets(partitions)
    records = []
    reporter = RateReporter("consume", lambda: {"consumed": len(records)}, rate_of="consumed")
    started = time.perf_counter()
    while any(consumer.position(tp) < end[tp] for tp in partitions):
        for batch in consumer.poll(timeout_ms=1000, max_records=100_000).values():
            records += batch
        reporter.tick()
    elapsed = time.perf_counter() - started
    reporter.summary()
    consumer.close()
    return [record.value for record in records], elapsed, sum(not _conforms(record) for record in records)


def _conforms(record: object) -> bool:
    event = orjson.loads(record.value)  # type: ignore[attr-defined]
    return (record.key == event["actor"].encode() and record.timestamp == event["ts"]  # type: ignore[attr-defined]
            and record.headers == [("event_id", event["event_id"].encode())])  # type: ignore[attr-defined]


def _ceilings(path: Path, values: list[bytes]) -> list[tuple[str, float, str]]:
    """Single-thread CPU rates of the pieces, on the same data, in this process."""
    events = [line.result for line in read_source(path, "snap-higgs")]
    return [
        _rate("file decode, general path (read_source)", lambda: sum(1 for _ in read_source(path, "snap-higgs"))),
        _rate("file decode, fast path (encoded_chunks)",
              lambda: sum(len(c.events) for c in read_source(path, "snap-higgs").encoded_chunks())),
        _rate("orjson encode (InteractionEvent.to_json)", lambda: _count(event.to_json() for event in events)),
        _rate("orjson decode (orjson.loads)", lambda: _count(orjson.loads(value) for value in values)),
        _rate("decode + validate (parse_event)", lambda: _count(parse_event(value) for value in values)),
    ]


def _count(items: Iterable[object]) -> int:
    return sum(1 for _ in items)


def _rate(name: str, work: Callable[[], int]) -> tuple[str, float, str]:
    print(f"measuring {name} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    count = work()
    elapsed = time.perf_counter() - started
    return name, count / elapsed, f"{count:,} in {elapsed:.2f} s (CPU ceiling, no Kafka)"


def _check_equal(what: str, actual: int, expected: int) -> list[str]:
    return [] if actual == expected else [f"{what}: {actual:,}, expected {expected:,}"]


def _print_table(rows: list[tuple[str, float, str]]) -> None:
    width = max(len(name) for name, _, _ in rows)
    print(f"\n{'phase':<{width}}  {'events/s':>12}  detail")
    print(f"{'-' * width}  {'-' * 12}  {'-' * 40}")
    for name, rate, note in rows:
        print(f"{name:<{width}}  {rate:>12,.0f}  {note}")


if __name__ == "__main__":
    sys.exit(main())
