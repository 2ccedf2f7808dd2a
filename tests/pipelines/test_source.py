"""The source's per-partition decisions: lateness in partition order, and recently seen event ids."""

from __future__ import annotations

import time
from typing import NamedTuple

import pytest
import redis
from apache_beam.utils.timestamp import Timestamp
from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition

from clout.connectors.topics import create_topics
from clout.pipelines.dedup import RecentIds
from clout.pipelines.source import KafkaPartitionReader, PartitionMark, ReadAhead, SourceConfig, _ReadAheadGate
from clout.settings import Settings
from clout.store.client import RedisTarget
from clout.store.layout import KeyLayout


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


def closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens once the probe is closed


def test_a_reader_that_cannot_reach_the_broker_holds_its_watermark_and_does_not_finish() -> None:
    """Regression (tests/faults, broker SIGKILL): a reader started while the broker was away failed its
    bundle, and the job with it; and a broker that did not answer counted as an idle partition, whose
    watermark then followed the wall clock and whose run ended under --stop-when-idle."""
    from apache_beam.utils.timestamp import MIN_TIMESTAMP

    config = SourceConfig(client={"bootstrap_servers": f"127.0.0.1:{closed_port()}"}, topic="t", group="g",
                          start_offsets={0: 0}, idle_after_s=0.0, stop_when_idle_s=0.0)
    r = KafkaPartitionReader(config, 0, 0)
    assert r.start() is False  # no exception: the bundle goes on, with nothing read
    assert r.advance() is False
    assert r.idle_since is None and not r.finished
    assert r.get_watermark() == MIN_TIMESTAMP
    r.close()


HOUR = 3_600_000


def test_a_reader_waits_past_its_read_ahead_and_goes_on_as_results_are_sealed(settings: Settings,
                                                                               redis_client: redis.Redis) -> None:
    """Against a real Redis progress hash: the span starts at the results already final, or at the
    oldest unsealed batch read (a gap in the data cannot stall a reader), and a Redis that cannot be
    asked never pauses one."""
    key = KeyLayout(settings.key_prefix).progress("g")
    gate = _ReadAheadGate(ReadAhead(RedisTarget.from_settings(settings), key, span_ms=HOUR), check_every_s=0)
    assert not gate.holds(None)  # nothing read yet
    gate.read(0)
    assert not gate.holds(HOUR) and gate.holds(HOUR + 1)  # nothing sealed: from the oldest batch read
    redis_client.hset(key, "sealed_ms", 2 * HOUR)
    assert not gate.holds(3 * HOUR) and gate.holds(3 * HOUR + 1)
    gate.read(10 * HOUR)  # the data jumps: nothing between 2 h and 10 h will ever be sealed
    assert not gate.holds(11 * HOUR) and gate.holds(11 * HOUR + 1)
    gate.client.close()
    away = _ReadAheadGate(ReadAhead(RedisTarget(f"redis://127.0.0.1:{closed_port()}/0"), key, span_ms=HOUR),
                          check_every_s=0)
    away.read(0)
    assert not away.holds(100 * HOUR)


def test_a_read_ahead_too_short_to_finish_a_window_is_refused() -> None:
    from clout.pipelines.run import RunConfig

    with pytest.raises(ValueError, match="--read-ahead 3600s must be 0 or more than"):
        RunConfig(read_ahead_s=3600)
    assert RunConfig(read_ahead_s=0).read_ahead_s == 0


def test_a_reader_waiting_on_its_read_ahead_is_not_idle(settings: Settings, redis_client: redis.Redis) -> None:
    """An idle clock left running while a reader waits would move its watermark to the wall clock and
    close windows whose events are still to be read (seen in the broker fault trials)."""
    ahead = ReadAhead(RedisTarget.from_settings(settings), KeyLayout(settings.key_prefix).progress("g"), HOUR)
    config = SourceConfig(client=settings.kafka_client_config(), topic=settings.topic, group="g",
                          start_offsets={0: 0}, read_ahead=ahead)
    waiting = KafkaPartitionReader(config, 0, 0)
    waiting.max_event_ts, waiting.idle_since = 3 * HOUR, time.monotonic() - 60  # idle before it waited
    waiting.gate.read(HOUR)
    try:
        assert not waiting.advance()
        assert waiting.idle_since is None
        # neither the idle clock nor its newest event: the span past the oldest batch not yet sealed
        assert waiting.get_watermark() == Timestamp(micros=2 * HOUR * 1000)
    finally:
        waiting.close()


def test_an_idle_partition_moves_on_at_the_wall_clocks_pace_not_to_the_wall_clock() -> None:
    """Regression (tests/faults, broker SIGKILL beside a live connector): a replay's partitions sat at
    their end while the connector waited for the restarted broker; their watermark jumped to the wall
    clock, years past the replay, and the windows still to be published were closed under them."""
    r = reader()
    base = 1_340_000_000_000  # a replay: event time in 2012
    r._raw(Record(0, base, b"", []))
    r.idle_since = time.monotonic() - 60
    watermark = r.get_watermark().micros // 1000
    assert base - 30_000 + 60_000 <= watermark < base - 30_000 + 62_000
    assert r._raw(Record(1, watermark - 600_000, b"", [])).late_by_ms == 0  # still within the lateness
    assert r._raw(Record(2, watermark - 600_001, b"", [])).late_by_ms == 1  # late, not dropped later


def test_a_live_idle_partition_follows_the_wall_clock_and_never_passes_it() -> None:
    r = reader()
    now = int(time.time() * 1000)
    r._raw(Record(0, now - 5_000, b"", []))
    r.idle_since = time.monotonic() - 3_600
    assert abs(r.get_watermark().micros // 1000 - (now - 30_000)) < 2_000


def test_a_partition_that_read_nothing_holds_back_nothing_only_once_another_has_news() -> None:
    from apache_beam.utils.timestamp import MIN_TIMESTAMP

    r = reader()
    r.idle_since = time.monotonic() - 60
    assert r.get_watermark() == MIN_TIMESTAMP  # the whole topic empty: nothing to hold back yet
    r.news_since = time.monotonic()
    assert r.get_watermark() == MIN_TIMESTAMP  # news just now: the other partition's events are on their way
    r.news_since = time.monotonic() - 60
    assert abs(r.get_watermark().micros // 1000 - (int(time.time() * 1000) - 30_000)) < 2_000


def test_a_reader_rebuilt_from_its_checkpoint_judges_lateness_as_the_one_before() -> None:
    from clout.pipelines.source import KafkaSource

    r = reader()
    base = 1_340_000_000_000
    r._raw(Record(0, base, b"", []))
    r.idle_since = time.monotonic() - 3_600
    reported = r.get_watermark()
    mark = r.get_checkpoint_mark()
    rebuilt = KafkaSource(r.config, 0).create_reader(None, mark).reader
    assert rebuilt is not r  # r was never leased, so never on offer: rebuilt from the mark alone
    assert rebuilt.max_event_ts == base and rebuilt.watermark_ms == reported.micros // 1000
    assert rebuilt._raw(Record(1, base, b"", [])).late_by_ms > 0


def resumed_from(mark: PartitionMark, config: SourceConfig) -> KafkaPartitionReader:
    """What a later bundle's tracker gets for `mark` (its own `create_reader`), as Beam decodes the mark."""
    from apache_beam.coders import PickleCoder

    from clout.pipelines.source import KafkaSource

    coder = PickleCoder()
    return KafkaSource(config, 0).create_reader(None, coder.decode(coder.encode(mark)))


def test_the_next_bundle_takes_over_the_live_reader_and_the_lease_left_behind_cannot_close_it() -> None:
    """Flink keeps each bundle's DoFn instance (and Beam's reader cache in it) until its checkpoint, so
    the next bundle would otherwise rebuild the reader and lose its idle clock (issue 11's drain)."""
    from clout.pipelines.source import ReaderLease

    config = reader().config
    first = ReaderLease(KafkaPartitionReader(config, 0, 0))
    first.reader.idle_since = idle_since = time.monotonic() - 5
    mark = first.get_checkpoint_mark()
    second = resumed_from(mark, config)
    assert second.reader is first.reader and second.resumed and second.reader.idle_since == idle_since
    first.reader.consumer = consumer = object()
    first.close()  # the old instance's cache evicting its parked lease
    assert second.reader.consumer is consumer and second.reader.lease is second
    assert resumed_from(mark, config).reader is not second.reader  # taken once only


def test_a_lease_used_after_its_reader_was_taken_over_rebuilds_from_its_own_mark() -> None:
    from clout.pipelines.source import ReaderLease

    config = reader().config
    first = ReaderLease(KafkaPartitionReader(config, 0, 40))
    mark = first.get_checkpoint_mark()
    second = resumed_from(mark, config)
    second.reader.next_offset = 90  # read on by the bundle that took it over
    second.reader.advance = lambda timeout_ms=0: False  # no broker here
    rebuilt = first._live()
    assert rebuilt is not second.reader and rebuilt.next_offset == 40 and rebuilt.lease is first


def test_a_reader_is_not_handed_on_once_its_holder_reads_on_nor_once_finished() -> None:
    from clout.pipelines.source import ReaderLease

    config = reader().config
    lease = ReaderLease(KafkaPartitionReader(config, 0, 0))
    lease.reader.advance = lambda timeout_ms=0: False
    mark = lease.get_checkpoint_mark()
    lease.advance()  # Beam's own cache gave the lease back to the next bundle: it reads on from here
    assert resumed_from(mark, config).reader is not lease.reader
    lease.reader.finished = True
    assert resumed_from(lease.get_checkpoint_mark(), config).reader is not lease.reader


def gated_reader(settings: Settings, stop_when_idle_s: float = 60.0) -> KafkaPartitionReader:
    """A reader with a 6 h read-ahead on the real Redis progress hash, windows of 1 h every 15 min."""
    from clout.model.windows import WindowPolicy

    ahead = ReadAhead(RedisTarget.from_settings(settings), KeyLayout(settings.key_prefix).progress("g"), 6 * HOUR)
    config = SourceConfig(client={}, topic="t", group="g", start_offsets={0: 0}, read_ahead=ahead,
                          stop_when_idle_s=stop_when_idle_s, windows=WindowPolicy(3600, 900, 600))
    r = KafkaPartitionReader(config, 0, 0)
    r.gate.check_every_s = 0
    return r


def test_an_idle_readers_watermark_stays_within_the_read_ahead_of_the_sealed_results(
        settings: Settings, redis_client: redis.Redis) -> None:
    """Regression (tests/faults, broker SIGKILL): the replay's analysis lagged its reading by more than a
    day of event time; an idle reader's watermark ran on from its newest event and the windows' close
    dropped slices still on their way."""
    key = KeyLayout(settings.key_prefix).progress("g")
    redis_client.hset(key, "sealed_ms", 10 * HOUR)
    r = gated_reader(settings)
    r._raw(Record(0, 40 * HOUR, b"", []))
    r.gate.read(12 * HOUR)
    r.idle_since = time.monotonic() - 3_600  # an hour idle: uncapped, a whole hour past its newest event
    assert r.get_watermark() == Timestamp(micros=(12 * HOUR + 6 * HOUR) * 1000)
    redis_client.hset(key, "sealed_ms", 20 * HOUR)
    assert r.get_watermark() == Timestamp(micros=26 * HOUR * 1000)
    redis_client.hset(key, "sealed_ms", 0)  # results rebuilt from scratch: what was reported stands
    assert r.get_watermark() == Timestamp(micros=26 * HOUR * 1000)
    r.close()


def test_a_finishing_reader_drains_until_its_newest_window_is_sealed(settings: Settings,
                                                                    redis_client: redis.Redis) -> None:
    """--stop-when-idle: the reader reports the watermark past its newest window's final pane, and the
    final watermark only once the results are sealed that far."""
    from apache_beam.utils.timestamp import MAX_TIMESTAMP

    key = KeyLayout(settings.key_prefix).progress("g")
    redis_client.hset(key, "sealed_ms", 30 * HOUR)
    r = gated_reader(settings)
    newest = 32 * HOUR + 5 * 60_000  # in the slice from 32:00; its newest window ends 33:00, final 33:10
    r._raw(Record(0, newest, b"", []))
    r._finish(patience_s=60)
    assert r.drain is not None and not r.finished
    last_final = 33 * HOUR + 600_000
    assert r.get_watermark() == Timestamp(micros=(last_final + 900_000) * 1000)
    assert not r.advance()
    assert not r.finished
    redis_client.hset(key, "sealed_ms", last_final)
    assert not r.advance() and r.finished
    assert r.get_watermark() == MAX_TIMESTAMP
    r.close()


def test_a_drain_ends_when_the_results_stop_moving(settings: Settings, redis_client: redis.Redis) -> None:
    key = KeyLayout(settings.key_prefix).progress("g")
    redis_client.hset(key, "sealed_ms", HOUR)
    r = gated_reader(settings)
    r._raw(Record(0, 3 * HOUR, b"", []))
    r._finish(patience_s=0.3)
    r.advance()
    assert not r.finished
    time.sleep(0.2)
    redis_client.hset(key, "sealed_ms", 2 * HOUR)  # progress: the patience starts again
    r.advance()
    time.sleep(0.2)
    r.advance()
    assert not r.finished
    time.sleep(0.2)
    r.advance()
    assert r.finished
    r.close()


def reader_with_redis_away() -> KafkaPartitionReader:
    """A reader with a read-ahead whose Redis refuses every connection (no retries: each ask fails fast)."""
    from clout.model.windows import WindowPolicy

    away = ReadAhead(RedisTarget(f"redis://127.0.0.1:{closed_port()}/0", retries=0), "p", span_ms=6 * HOUR)
    config = SourceConfig(client={}, topic="t", group="g", start_offsets={0: 0}, read_ahead=away,
                          windows=WindowPolicy())
    return KafkaPartitionReader(config, 0, 0)


def test_a_reader_finishes_at_once_without_results_to_watch() -> None:
    """No read-ahead (nothing says how far the results are) or nothing read: the reader finishes as
    soon as it has sat idle long enough, as before drains existed."""
    plain = reader()
    plain._raw(Record(0, HOUR, b"", []))
    plain._finish(patience_s=60)
    assert plain.finished and plain.drain is None
    unreachable = reader_with_redis_away()
    unreachable._finish(patience_s=60)  # nothing read
    assert unreachable.finished


def test_a_drain_waits_out_a_redis_that_does_not_answer_for_its_patience_only() -> None:
    """A Redis blip is not the end of the results: the drain goes on; a Redis gone for good ends it
    after the patience, as results that stopped moving do."""
    unreachable = reader_with_redis_away()
    unreachable.gate.check_every_s = 0
    unreachable._raw(Record(0, HOUR, b"", []))
    unreachable._finish(patience_s=1.0)
    assert unreachable.drain is not None and not unreachable.finished
    time.sleep(1.2)
    unreachable.advance()
    assert unreachable.finished


def test_finalized_marks_commit_the_newest_offset_to_the_group_once(settings: Settings) -> None:
    """The real broker: the group's committed offset follows the marks (what Kafka's tools show as lag);
    a mark with an offset this process already committed sends nothing (the runner finalizes one per
    bundle, idle or not)."""
    create_topics(settings)
    config = SourceConfig(client=settings.kafka_client_config(), topic=settings.topic, group=settings.group,
                          start_offsets={0: 0}, out_of_orderness_ms=30_000, lateness_ms=600_000)
    tp = TopicPartition(settings.topic, 0)
    probe = KafkaConsumer(**settings.kafka_client_config(), group_id=settings.group, enable_auto_commit=False)
    try:
        PartitionMark(config, 0, 7).finalize_checkpoint()
        assert probe.committed(tp) == 7
        probe.commit({tp: OffsetAndMetadata(3, "", -1)})  # another committer moves the group
        PartitionMark(config, 0, 7).finalize_checkpoint()  # already committed by this process: not sent
        assert probe.committed(tp) == 3
        PartitionMark(config, 0, 9).finalize_checkpoint()
        assert probe.committed(tp) == 9
    finally:
        probe.close()
