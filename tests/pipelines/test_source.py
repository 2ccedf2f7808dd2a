"""The source's per-partition decisions: lateness in partition order, and recently seen event ids."""

from __future__ import annotations

from typing import NamedTuple

from clout.pipelines.dedup import RecentIds
from clout.pipelines.source import KafkaPartitionReader, SourceConfig


class Record(NamedTuple):
    """The fields of a kafka-python ConsumerRecord that the reader reads."""

    offset: int
    timestamp: int
    value: bytes
    headers: list


def reader(lateness_ms: int = 600_000) -> KafkaPartitionReader:
    config = SourceConfig(client={}, topic="t", group="g", start_offsets={0: 0}, out_of_orderness_ms=30_000,
                          lateness_ms=lateness_ms)
    return KafkaPartitionReader(config, 0, 0)


def test_lateness_is_measured_behind_the_partition_watermark() -> None:
    r = reader()
    base = 1_700_000_000_000
    assert r._raw(Record(0, base, b"", [])).late_by_ms == 0
    assert r._raw(Record(1, base - 630_000, b"", [])).late_by_ms == 0  # exactly at bound + lateness
    assert r._raw(Record(2, base - 630_001, b"", [])).late_by_ms == 1
    assert r._raw(Record(3, base + 5_000, b"", [])).late_by_ms == 0
    assert r._raw(Record(4, base - 630_000, b"", [])).late_by_ms == 5_000  # the watermark moved on


def test_recent_ids_forget_beyond_the_horizon() -> None:
    ids = RecentIds(horizon_ms=1_000)
    assert not ids.seen("a", 10_000)
    assert ids.seen("a", 10_000)
    assert not ids.seen("b", 10_500)
    assert not ids.seen("c", 11_600)  # moves the horizon past a's and b's times
    assert len(ids) == 1
    assert not ids.seen("a", 10_000)
    assert ids.seen("c", 11_600)
