"""Hostile input through the real broker and the real pipeline: every line is a clean event or a
reasoned dead letter, and nothing reaches Redis outside the key layout."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import redis
from hostile import CASES, layout_key, record
from kafka import KafkaProducer
from test_ingest import consume_all

from clout.connectors.file import read_source
from clout.connectors.publisher import MAX_DEAD_LETTER_BYTES, ORIGINAL_BYTES_HEADER, Publisher
from clout.connectors.replay import replay
from clout.connectors.topics import create_topics
from clout.schemas import Reason, parse_event
from clout.schemas.ids import is_account_id
from clout.settings import Settings

pytestmark = pytest.mark.servers

HUGE = b"x" * (2 * 1024 * 1024)  # a 2 MiB "line": more than Kafka takes in one record
# Higgs lines with hostile ids: (line, expected reason or None)
HIGGS = [
    (b"1 2 1341100972 RT", None),
    (b"a:b c:d 1341100972 MT", None),
    (b"a{1} 2 1341100972 RT", Reason.BAD_ID),
    (b"1 [2] 1341100972 RE", Reason.BAD_ID),
    (b"* ? 1341100972 RE", Reason.BAD_ID),
    (b"a\\b 2 1341100972 RT", Reason.BAD_ID),
    (b"\xff\xfe 2 1341100972 RT", Reason.BAD_ID),
    (b"a\x00 2 1341100972 RT", Reason.BAD_ID),
    (b"1 2 99999999999999999999 RT", Reason.TS_OUT_OF_RANGE),
    (b"1 2 -1 RT", Reason.TS_OUT_OF_RANGE),
    (b"1 2 1e9 RT", Reason.WRONG_TYPE),
    (b"1 2 1341100972 XX", Reason.UNKNOWN_KIND),
    (b"1 2 1341100972", Reason.BAD_SOURCE_LINE),
    (b"a" * 129 + b" 2 1341100972 RT", Reason.BAD_ID),
]


def jsonl_lines() -> list[tuple[bytes, Reason | None]]:
    """The cases as a connector must treat them: a valid event more than an hour ahead of the clock
    (the broker would refuse it) is dead-lettered with ts_out_of_range."""
    now = int(time.time() * 1000)
    ahead = record(900, ts=now + 2 * 3_600_000)
    cases = [(raw, Reason.TS_OUT_OF_RANGE if reason is None and parse_event(raw).ts > now + 3_600_000 else reason)
             for _name, raw, reason in CASES]
    return [*cases, (HUGE, Reason.TOO_LARGE), (ahead, Reason.TS_OUT_OF_RANGE)]


def replay_file(settings: Settings, path: Path, fmt: str) -> None:
    with Publisher(settings) as publisher:
        replay(read_source(path, fmt), publisher, str(path), progress_interval=60)


def outcome_by_line(settings: Settings, path: Path, lines: int) -> tuple[dict[int, str], dict[tuple, object]]:
    """Dead letters by source line (their reason), and published events by source line."""
    letters = consume_all(settings, settings.dlq_topic)
    by_line: dict[int, str] = {}
    for letter in letters:
        headers = dict(letter.headers)
        source = headers["source"].decode()
        if source.startswith("event "):  # refused at publish time (clock): find its line by event id
            event_id = source.removeprefix("event ")
            by_line[next(n for n, (raw, _) in enumerate(jsonl_lines(), 1) if event_id.encode() in raw)] = \
                headers["reason"].decode()
            continue
        by_line[int(source.rsplit(":", 1)[1])] = headers["reason"].decode()
        if len(letter.value) == MAX_DEAD_LETTER_BYTES:
            assert int(headers[ORIGINAL_BYTES_HEADER]) == len(HUGE)
    events = {(r.partition, r.offset): parse_event(r.value) for r in consume_all(settings, settings.topic)}
    assert len(by_line) + len(events) == lines, (len(by_line), len(events), lines)
    return by_line, events


def test_every_hostile_line_is_an_event_or_a_reasoned_dead_letter(settings: Settings, tmp_path: Path) -> None:
    create_topics(settings)
    lines = jsonl_lines()
    jsonl = tmp_path / "hostile.jsonl"
    jsonl.write_bytes(b"\n".join(raw for raw, _ in lines) + b"\n")
    replay_file(settings, jsonl, "jsonl")
    letters, events = outcome_by_line(settings, jsonl, len(lines))
    expected = {n: reason.value for n, (_raw, reason) in enumerate(lines, 1) if reason is not None}
    assert letters == expected
    assert all(is_account_id(e.actor) and is_account_id(e.target) for e in events.values())


def test_hostile_ids_in_a_higgs_file(settings: Settings, tmp_path: Path) -> None:
    create_topics(settings)
    path = tmp_path / "hostile.txt"
    path.write_bytes(b"\n".join(line for line, _ in HIGGS) + b"\n")
    replay_file(settings, path, "snap-higgs")
    letters, events = outcome_by_line(settings, path, len(HIGGS))
    assert letters == {n: reason.value for n, (_line, reason) in enumerate(HIGGS, 1) if reason is not None}
    assert sorted(e.actor for e in events.values()) == ["1", "a:b"]


def test_pipeline_keeps_every_hostile_id_out_of_redis(settings: Settings, redis_client: redis.Redis) -> None:
    """The pipeline defends itself too: hostile records produced straight to the topic (no connector)."""
    create_topics(settings)
    producer = KafkaProducer(**settings.kafka_client_config(), max_request_size=4 * 1024 * 1024)
    base = 1_700_000_000_000
    for i in range(400):  # enough ordinary traffic to close windows
        value = record(10_000 + i, ts=base + i * 20_000, actor=f"u{i % 13}", target=f"v{i % 7}")
        producer.send(settings.topic, key=f"u{i % 13}".encode(), value=value, timestamp_ms=base + i * 20_000)
    bad = [raw for _name, raw, reason in CASES if reason is not None]
    for raw in bad:
        producer.send(settings.topic, key=b"hostile", value=raw, timestamp_ms=base + 1_000)
    producer.flush()
    producer.close()
    env = {**os.environ, **{f"CLOUT_{k.upper()}": str(getattr(settings, k)) for k in
                                       ("kafka_bootstrap", "redis_url", "topic", "dlq_topic", "flags_topic", "group",
                                        "key_prefix")}}
    run = subprocess.run([sys.executable, "-m", "clout.cli", "run", "--from-beginning", "--stop-when-idle", "4",
                          "--window", "900", "--period", "900", "--lateness", "0"],
                         env=env, capture_output=True, text=True, timeout=600)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    assert f"events_rejected {len(bad):,}" in output, output[-2000:]
    key = layout_key(settings.key_prefix)
    keys = [k.decode() for k in redis_client.scan_iter(match=f"{settings.key_prefix}:*", count=10_000)]
    assert keys and [k for k in keys if not key.fullmatch(k)] == []
    for name in keys:
        if name.endswith(":activity"):
            assert all(is_account_id(u.decode()) for u in redis_client.hkeys(name))
        elif ":lb:" in name:
            assert all(is_account_id(u.decode()) for u in redis_client.zrange(name, 0, -1))
    assert orjson.loads(redis_client.hget(next(k for k in keys if k.endswith(":activity")), "v0"))["in"] > 0
