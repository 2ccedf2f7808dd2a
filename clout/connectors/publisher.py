"""One Kafka publisher for every connector: events to the interactions topic, bad records to the DLQ.

Events are keyed by ``actor``: one account's actions then stay in one partition, in order, which
the pipeline relies on for per-partition de-duplication (a duplicate lands beside its original)
and which keeps an actor's event-time order intact for the watermark.

Two ways in. ``publish``/``publish_encoded`` hand one record at a time to ``KafkaProducer.send``
(about 20 µs of Python per record: partitioner, accumulator, a future per record). ``publish_batch``
takes a run of already-serialised events and writes them as whole Kafka v2 record batches
(:class:`_BatchWriter`, about 2 µs per record), then hands the finished batches to the same
producer's accumulator, so the producer's sender still does the idempotent sequencing, retries,
compression and acks. The records on the wire are the same: keys, partitions, headers, timestamps.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import kafka
from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError, MessageSizeTooLargeError, UnknownError
from kafka.producer.producer_batch import ProducerBatch
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecordsBuilder
from kafka.record.util import encode_varint
from kafka.structs import TopicPartition

from clout.schemas import InteractionEvent, InvalidEvent, Reason
from clout.settings import Settings

# Throughput tuning for kafka-python: large batches and a short linger amortise the per-request
# cost (with idempotence only one batch per partition is in flight). 512 KiB stays below the
# broker's default message.max.bytes (1 MiB), so batches are not split. lz4, none and zstd made no
# measurable difference to bench/publish.py on 2 cores; lz4 keeps the log small at the least CPU.
PRODUCER_TUNING: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "max_in_flight_requests_per_connection": 5,
    "linger_ms": 20,
    "batch_size": 512 * 1024,
    "compression_type": "lz4",
    "retries": 2**31 - 1,
    "delivery_timeout_ms": 120_000,
}

log = logging.getLogger(__name__)

EVENT_ID_HEADER = "event_id"
REASON_HEADER = "reason"
DETAIL_HEADER = "detail"
SOURCE_HEADER = "source"
ORIGINAL_BYTES_HEADER = "original_bytes"  # set when a dead letter's value had to be cut

# A dead letter keeps the original bytes, up to this many (a 100 MB "line" must not fail the replay
# with MessageSizeTooLarge); a cut one says its original length in the `original_bytes` header.
MAX_DEAD_LETTER_BYTES = 256 * 1024
# The broker refuses records whose timestamp is more than log.message.timestamp.after.max.ms ahead
# of its clock (1 h by default since Kafka 4.0), failing the whole batch. Such events are valid by the
# schema (it bounds ts at 2100) but are dead-lettered here, one by one, with the reason.
MAX_AHEAD_OF_CLOCK_MS = 3_600_000 - 60_000

# (key = actor utf-8, value = InteractionEvent.to_json(), record timestamp ms, event_id utf-8)
EncodedEvent = tuple[bytes, bytes, int, bytes]

# The kafka-python releases whose producer internals _BatchWriter was written and checked against;
# anything else must pass _check_batch_internals() before the fast path is used.
TESTED_KAFKA_PYTHON = "3.0.12"
# Records publish_batch may have written but not yet seen acknowledged before it waits for the
# broker (about 50 MB of typical events): kafka-python 3 has no buffer_memory bound of its own.
MAX_UNSETTLED_RECORDS = 256 * 1024
# producer.flush() is called with this timeout, again and again until a call completes: a batch
# split under a waiting flush (MESSAGE_TOO_LARGE) leaves that flush waiting on a batch that will
# never complete, while the parts it became are new batches the next call waits for.
FLUSH_ROUND_SECONDS = 1.0
# The publisher gives up once no record has been acknowledged for the delivery timeout
# (Settings.kafka_delivery_timeout_s) plus this margin, which leaves the producer time to expire its
# own batches first. It must not rely on that expiry: kafka-python 3.0.12's idempotent producer,
# having lost its producer id with the broker, returns early from every sender loop while it waits
# for a new one (Sender.run_once) and never reaches the expiry, so `clout ingest` waited forever for
# a broker gone for good mid-publish (tests/faults, tests/connectors/test_broker_gone.py).
STALL_MARGIN_SECONDS = 30.0
# After giving up, how long to wait for the producer's I/O thread to fail the batches it still holds.
ABORT_WAIT_SECONDS = 10.0
# Keys whose partition is remembered (about 100 bytes each); then the memory starts afresh.
MAX_CACHED_KEYS = 1 << 20


@dataclass
class PublishCounts:
    published: int = 0
    rejected: int = 0
    failed: int = 0


class DeliveryFailed(RuntimeError):
    """Kafka refused or timed out some records; raised by flush() so no loss goes unnoticed."""


class UnsupportedKafkaClient(RuntimeError):
    """The installed kafka-python's producer internals differ from what publish_batch relies on."""


class Publisher:
    """Sends valid events and dead letters through one idempotent producer."""

    def __init__(self, settings: Settings, **tuning: Any) -> None:
        self.topic = settings.topic
        self.dlq_topic = settings.dlq_topic
        self.counts = PublishCounts()
        self._errors: list[BaseException] = []
        self._failed_since_flush = 0
        self._lock = threading.Lock()
        config = {**PRODUCER_TUNING, **delivery_config(settings.kafka_delivery_timeout_s), **tuning}
        self._producer = KafkaProducer(**settings.kafka_client_config(), **config)
        self._stall_s = config["delivery_timeout_ms"] / 1000 + STALL_MARGIN_SECONDS
        self._bootstrap = settings.kafka_bootstrap
        self._progress = _Progress()
        self._aborted = False
        self._writer: _BatchWriter | None = None

    def publish(self, event: InteractionEvent) -> None:
        self.publish_encoded(event.actor.encode(), event.to_json(), event.ts, event.event_id)

    def publish_encoded(self, key: bytes, value: bytes, ts_ms: int, event_id: str) -> None:
        """Publish an already-serialised event; the Kafka record timestamp is the event time."""
        if ts_ms > _clock_limit_ms():
            self._reject_ahead(value, ts_ms, event_id)
            return
        try:
            future = self._producer.send(self.topic, key=key, value=value, timestamp_ms=ts_ms,
                                         headers=[(EVENT_ID_HEADER, event_id.encode())])
        except KafkaTimeoutError as error:  # no metadata within max_block_ms: the broker is away
            raise DeliveryFailed(f"cannot publish to {self.topic!r}: Kafka at {self._bootstrap} did not answer "
                                 f"({error}); what it acknowledged before is in the topic") from None
        self._track(future)
        self.counts.published += 1
        self._keep_pace()

    def publish_batch(self, events: Sequence[EncodedEvent]) -> None:
        """Publish many serialised events as whole record batches, in order per partition.

        Same records as publish_encoded() for each event, at a fraction of the CPU. Nothing is held
        back between calls (every call ends with its batches queued for sending), so this suits
        bulk sources; a live source trickling single events should use publish_encoded().
        Raises DeliveryFailed at once if the topic's metadata cannot be had (e.g. it does not exist).
        """
        if not events:
            return
        events = self._without_future(events)
        try:
            writer = self._writer or self._open_writer()
            writer.write(events)
        except KafkaError as error:
            self.counts.failed += len(events)
            raise DeliveryFailed(f"cannot publish to {self.topic!r}: {error!r}") from error
        self.counts.published += len(events)
        self._keep_pace()

    def reject(self, raw: bytes, error: InvalidEvent, source: str) -> None:
        """Dead-letter the original bytes with the reason; nothing invalid is dropped silently."""
        headers = [
            (REASON_HEADER, error.reason.value.encode()),
            (DETAIL_HEADER, error.detail.encode(errors="backslashreplace")[:1024]),
            (SOURCE_HEADER, source.encode(errors="backslashreplace")[:1024]),
        ]
        if len(raw) > MAX_DEAD_LETTER_BYTES:
            headers.append((ORIGINAL_BYTES_HEADER, str(len(raw)).encode()))
            raw = raw[:MAX_DEAD_LETTER_BYTES]
        future = self._producer.send(self.dlq_topic, value=raw, headers=headers)
        self._track(future)
        self.counts.rejected += 1
        self._keep_pace()

    def _track(self, future: Any) -> None:
        """Count one record sent through send(), and settled when its future completes."""
        self._progress.add(1)
        future.add_callback(self._acknowledged)
        future.add_errback(self._failed)

    def _keep_pace(self) -> None:
        """Backpressure (kafka-python 3 has no buffer_memory bound of its own), and the stall limit:
        a broker that acknowledges nothing for it ends the publishing here, not after the source."""
        progress = self._progress
        if progress.unsettled() > MAX_UNSETTLED_RECORDS:
            if not progress.wait_below(MAX_UNSETTLED_RECORDS, self._stall_s):
                self._give_up()
        elif progress.stalled_for() > self._stall_s:
            self._give_up()

    def _without_future(self, events: Sequence[EncodedEvent]) -> Sequence[EncodedEvent]:
        """The events the broker will take; those too far ahead of the clock are dead-lettered."""
        limit = _clock_limit_ms()
        if max(event[2] for event in events) <= limit:
            return events
        kept = []
        for event in events:
            if event[2] > limit:
                self._reject_ahead(event[1], event[2], event[3].decode(errors="backslashreplace"))
            else:
                kept.append(event)
        return kept

    def _reject_ahead(self, value: bytes, ts_ms: int, event_id: str) -> None:
        ahead_s = (ts_ms - time.time() * 1000) / 1000
        detail = (f"ts {ts_ms} is {ahead_s:.0f} s ahead of this machine's clock; Kafka refuses records more "
                  "than log.message.timestamp.after.max.ms (1 h) ahead")
        self.reject(value, InvalidEvent(Reason.TS_OUT_OF_RANGE, detail), f"event {event_id}")

    def flush(self) -> None:
        """Wait until every record is acknowledged or has failed; raise DeliveryFailed if any failed."""
        self._flush_producer()
        self._settle_missing()
        with self._lock:
            errors, self._errors = self._errors, []
            failed, self._failed_since_flush = self._failed_since_flush, 0
        if errors:
            raise DeliveryFailed(f"{failed} record(s) were not delivered ({len(errors)} error(s)); "
                                 f"first error: {errors[0]!r}")

    def _flush_producer(self) -> None:
        """producer.flush() in rounds of FLUSH_ROUND_SECONDS until one completes (see there), or
        DeliveryFailed (_give_up) once nothing has been acknowledged for the stall limit."""
        if self._aborted:
            self._give_up()
        settled, since = self._progress.settled, time.monotonic()
        while True:
            try:
                self._producer.flush(timeout=FLUSH_ROUND_SECONDS)
                return
            except (KafkaTimeoutError, UnknownError):  # UnknownError: "Future not done", a split
                if self._progress.settled != settled:
                    settled, since = self._progress.settled, time.monotonic()
                if self._progress.stalled_for() > self._stall_s or time.monotonic() - since > self._stall_s:
                    self._give_up()

    def _settle_missing(self) -> None:
        """After a completed producer.flush() (or an abort) every record sent must have been settled
        (acknowledged or reported failed) by a callback; any other is reported as not delivered."""
        missing = self._progress.settle_rest()
        if missing:
            self._failed_records(missing, DeliveryFailed(f"{missing} record(s) were neither acknowledged nor failed"))

    def _give_up(self) -> None:
        """The broker acknowledged nothing for the stall limit: stop the producer, which fails every
        batch it still holds (so each record is counted acknowledged or not delivered), and raise."""
        self._abort_producer()
        self._settle_missing()
        raise DeliveryFailed(stalled_message(self._bootstrap, self._stall_s, self._progress.failed,
                                             self._progress.sent))

    def _abort_producer(self) -> None:
        """Sender.force_close(): its thread fails all incomplete batches (in flight or not) as it ends;
        KafkaProducer.close() would first flush, which waits for the broker, forever if need be."""
        if not self._aborted:
            self._aborted = True
            sender = self._producer._sender
            sender.force_close()
            sender.join(ABORT_WAIT_SECONDS)

    def close(self) -> None:
        """Flush (unless the publisher gave up already), then close the producer without waiting
        for a broker: after a failed flush, what is left is aborted, counted in the error raised."""
        try:
            if not self._aborted:
                self.flush()
        finally:
            if self._producer._accumulator.has_incomplete:
                self._abort_producer()
            try:
                self._producer.close(timeout=ABORT_WAIT_SECONDS)
            except KafkaError as error:
                log.warning("the Kafka producer did not close cleanly: %r", error)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_writer(self) -> _BatchWriter:
        """Needs the topic's partitions: without them (after max_block_ms) publish_batch fails at
        once, rather than after reading the rest of the source."""
        self._writer = _BatchWriter(self._producer, self.topic, self._failed_records, self._progress)
        return self._writer

    def _acknowledged(self, _metadata: Any) -> None:
        self._progress.settle(1, acknowledged=True)

    def _failed(self, error: BaseException) -> None:
        self._failed_records(1, error)
        self._progress.settle(1, acknowledged=False)

    def _failed_records(self, count: int, error: BaseException) -> None:
        with self._lock:
            self._errors.append(error)
            self.counts.failed += count
            self._failed_since_flush += count


def delivery_config(timeout_s: float) -> dict[str, int]:
    """Producer timeouts for Settings.kafka_delivery_timeout_s: kafka-python requires
    delivery_timeout_ms >= linger_ms + request_timeout_ms (30 s by default)."""
    if not timeout_s >= 1:
        raise ValueError(f"kafka_delivery_timeout_s must be at least 1 (seconds), got {timeout_s!r}")
    delivery_ms = int(timeout_s * 1000)
    return {"delivery_timeout_ms": delivery_ms,
            "request_timeout_ms": min(30_000, delivery_ms - PRODUCER_TUNING["linger_ms"])}


def stalled_message(bootstrap: str, stall_s: float, failed: int, sent: int) -> str:
    """One line: the broker, how long it was waited for, and what was and was not delivered."""
    return (f"Kafka at {bootstrap} acknowledged no record for {stall_s:.0f} s (the broker is gone or refuses "
            f"the writes): {failed:,} of {sent:,} records sent were not delivered (not acknowledged: some may "
            f"be in the topic; sent again they repeat only their event_id); the other {sent - failed:,} are in "
            "the topic")


def _clock_limit_ms() -> int:
    return int(time.time() * 1000) + MAX_AHEAD_OF_CLOCK_MS


_M = 0x5BD1E995
_U32 = 0xFFFFFFFF
_WORDS = struct.Struct("<I")


def murmur2(key: bytes) -> int:
    """Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), as kafka-python's
    DefaultPartitioner computes it, in about 2/3 of the time: half of a large replay's keys are
    new, so this is ~5% of the publishing CPU. tests/connectors/test_publisher.py checks it."""
    length = len(key)
    h = 0x9747B28C ^ length
    tail = length & ~3
    for (k,) in _WORDS.iter_unpack(key[:tail]):
        k = (k * _M) & _U32
        k = ((k ^ (k >> 24)) * _M) & _U32
        h = ((h * _M) & _U32) ^ k
    rest = length & 3
    if rest:
        if rest == 3:
            h ^= key[tail + 2] << 16
        if rest >= 2:
            h ^= key[tail + 1] << 8
        h = ((h ^ key[tail]) * _M) & _U32
    h = ((h ^ (h >> 13)) * _M) & _U32
    return h ^ (h >> 15)


class _Varints(dict[int, bytes]):
    """Zig-zag varint encodings by value, memoised: record batches repeat the same few lengths,
    offsets and timestamp deltas, and a dict lookup is ~20x cheaper than encoding in Python."""

    LIMIT = 1 << 18

    def __missing__(self, value: int) -> bytes:
        out = bytearray()
        encode_varint(value, out.append)
        encoded = bytes(out)
        if len(self) < self.LIMIT:
            self[value] = encoded
        return encoded


_VARINT = _Varints()
_VARINT.update((n, _VARINT[n]) for n in range(1 << 14))
# One v2 record after its length prefix (attributes 0, then timestamp delta, offset delta, key,
# value, and exactly one header, event_id); see https://kafka.apache.org/documentation/#record
_RECORD = (b"\x00%b%b%b%b%b%b\x02" + _VARINT[len(EVENT_ID_HEADER)] + EVENT_ID_HEADER.encode() + b"%b%b")


def _encode_records(events: Sequence[EncodedEvent], start: int, limit: int) -> tuple[bytes, int, int]:
    """Length-prefixed v2 records for events[start:], as many as fit in `limit` bytes (at least one).

    Returns (records, count, max timestamp); the batch's first timestamp is events[start]'s.
    """
    varint = _VARINT
    record = _RECORD
    first = max_ts = events[start][2]
    parts: list[bytes] = []
    size = 0
    for index in range(start, len(events)):
        key, value, ts, event_id = events[index]
        body = record % (varint[ts - first], varint[index - start], varint[len(key)], key,
                         varint[len(value)], value, varint[len(event_id)], event_id)
        prefix = varint[len(body)]
        size += len(prefix) + len(body)
        if size > limit and parts:
            break
        parts += (prefix, body)
        if ts > max_ts:
            max_ts = ts
    return b"".join(parts), len(parts) // 2, max_ts


class _BatchWriter:
    """Writes keyed records as finished record batches straight into a KafkaProducer's accumulator.

    Per record this costs one cached partition lookup and one bytes format, instead of send()'s
    partitioner call, accumulator lock, record builder and future. A batch enters the accumulator
    exactly where send() would have put a new one, so ordering per partition, idempotent sequence
    numbers, retries, compression and delivery timeouts are the producer's own. Failure is tracked
    with one callback per batch. Relies on kafka-python internals (checked at construction).
    """

    def __init__(self, producer: KafkaProducer, topic: str, on_failure: Callable[[int, BaseException], None],
                 progress: _Progress) -> None:
        _check_batch_internals(producer)
        self._producer = producer
        self._accumulator = producer._accumulator
        config = self._accumulator.config
        self._batch_size: int = config["batch_size"]
        self._compression: int = config["compression_attrs"]
        self._max_request: int = producer.config["max_request_size"]
        if config["message_version"] != 2:
            raise UnsupportedKafkaClient("publish_batch needs message format v2 (Kafka >= 0.11)")
        if producer._transaction_manager is not None and producer._transaction_manager.is_transactional():
            raise UnsupportedKafkaClient("publish_batch does not register partitions in transactions")
        self._topic = topic
        self._partitions: list[TopicPartition] = []
        self._partition_of: dict[bytes, int] = {}  # key -> index into self._partitions
        self._on_failure = on_failure
        self._progress = progress
        self._refresh_partitions()

    def write(self, events: Sequence[EncodedEvent]) -> None:
        """Group by partition (order kept within each), encode, and queue the batches (the caller
        waits for the broker when too many are unsettled: Publisher._keep_pace)."""
        self._refresh_partitions()
        partition_of = self._partition_of
        groups: list[list[EncodedEvent]] = [[] for _ in self._partitions]
        add = [group.append for group in groups]
        for event in events:
            index = partition_of.get(event[0])
            if index is None:
                index = self._partition(event[0])
            add[index](event)
        for tp, group in zip(self._partitions, groups, strict=True):
            if group:
                self._write_partition(tp, group)
        self._producer._sender.wakeup()

    def _refresh_partitions(self) -> None:
        partitions = sorted(self._producer.partitions_for(self._topic))
        if len(partitions) != len(self._partitions):
            self._partitions = [TopicPartition(self._topic, p) for p in partitions]
            self._partition_of = {}

    def _partition(self, key: bytes) -> int:
        """Kafka's default partitioner for keyed records (murmur2 over all partitions), cached."""
        if len(self._partition_of) >= MAX_CACHED_KEYS:
            self._partition_of.clear()
        index = self._partition_of[key] = (murmur2(key) & 0x7FFFFFFF) % len(self._partitions)
        return index

    def _write_partition(self, tp: TopicPartition, events: list[EncodedEvent]) -> None:
        limit = self._batch_size - DefaultRecordBatchBuilder.header_size_in_bytes()
        start = 0
        while start < len(events):
            records, count, max_ts = _encode_records(events, start, limit)
            self._enqueue(self._producer_batch(tp, records, count, events[start][2], max_ts))
            start += count

    def _producer_batch(self, tp: TopicPartition, records: bytes, count: int, first_ts: int,
                        max_ts: int) -> ProducerBatch:
        """A ProducerBatch holding `records`, in the state its builder has after `count` appends."""
        if len(records) > self._max_request and count == 1:
            raise MessageSizeTooLargeError(f"a record of {len(records)} bytes exceeds max_request_size")
        return ProducerBatch(tp, _filled_builder(self._compression, self._batch_size, records, count,
                                                 first_ts, max_ts))

    def _enqueue(self, batch: ProducerBatch) -> None:
        """Append to the partition's queue, as RecordAccumulator.append does for a new batch."""
        count = batch.record_count
        batch._record_futures = [_Delivery(self, batch.produce_future, count)] * count
        accumulator = self._accumulator
        with accumulator._tp_lock(batch.topic_partition):
            if accumulator._closed:
                raise KafkaError("the producer is closed")
            self._progress.add(count)  # before the batch is visible to the sender, which settles it
            accumulator._batches[batch.topic_partition].append(batch)
            accumulator._incomplete.add(batch)

    def settled(self, count: int, error: BaseException | None) -> None:
        """Sender thread: `count` records were acknowledged, or failed with `error`."""
        if error is not None:
            self._on_failure(count, error)
        self._progress.settle(count, acknowledged=error is None)


class _Progress:
    """Records handed to the producer and records it has settled (acknowledged or failed), with the
    time of the last acknowledgement: none for long while records wait is how a gone broker shows.
    Failures do not reset that clock: a producer expiring batch after batch is no progress."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.sent = self.settled = self.failed = 0  # failed: settled, but not acknowledged
        self._since = time.monotonic()

    def add(self, count: int) -> None:
        with self._changed:
            if self.sent == self.settled:
                self._since = time.monotonic()  # the stall clock starts with the first record waiting
            self.sent += count

    def settle(self, count: int, acknowledged: bool) -> None:
        with self._changed:
            self.settled += count
            if acknowledged:
                self._since = time.monotonic()
            else:
                self.failed += count
            self._changed.notify_all()

    def settle_rest(self) -> int:
        """Counts every record not settled yet as settled and failed; returns how many that was."""
        with self._changed:
            rest, self.settled = self.sent - self.settled, self.sent
            self.failed += rest
            return rest

    def unsettled(self) -> int:
        return self.sent - self.settled

    def stalled_for(self) -> float:
        """Seconds without an acknowledgement while records wait for the broker (0 if none wait)."""
        with self._changed:
            return time.monotonic() - self._since if self.sent > self.settled else 0.0

    def wait_below(self, unsettled: int, stall_s: float) -> bool:
        """Block while more than `unsettled` records wait for the broker; False once none has been
        acknowledged for `stall_s`."""
        with self._changed:
            while self.sent - self.settled > unsettled:
                if time.monotonic() - self._since > stall_s:
                    return False
                self._changed.wait(FLUSH_ROUND_SECONDS)
            return True


class _Delivery:
    """Delivery tracking for one written batch, standing in for all of its per-record futures.

    If the broker rejects a batch as too large, kafka-python splits it and calls rebind(new future,
    index) on each record's future (RecordAccumulator.split_and_reenqueue). One shared object
    follows the new batches, counting the records each carries, so every record is still settled
    exactly once. The old batch's future never completes; Publisher.flush copes (FLUSH_ROUND_SECONDS).
    """

    __slots__ = ("_counts", "_writer")

    def __init__(self, writer: _BatchWriter, produce_future: Any, count: int) -> None:
        self._writer = writer
        self._counts: dict[Any, int] = {}
        self._follow(produce_future, count)

    def rebind(self, produce_future: Any, _batch_index: int) -> None:
        if produce_future in self._counts:
            self._counts[produce_future] += 1
        else:
            self._follow(produce_future, 1)

    def _follow(self, produce_future: Any, count: int) -> None:
        self._counts[produce_future] = count
        produce_future.add_callback(self._done, produce_future)
        produce_future.add_errback(self._lost, produce_future)

    def _done(self, produce_future: Any, result: tuple[int, int, Any]) -> None:
        """A record_exceptions_fn in the result means the batch failed (ProducerBatch.done)."""
        record_exceptions = result[2]
        error = record_exceptions(0) if record_exceptions is not None else None
        self._writer.settled(self._counts[produce_future], error)

    def _lost(self, produce_future: Any, error: BaseException) -> None:
        self._writer.settled(self._counts[produce_future], error)


def _filled_builder(compression: int, batch_size: int, records: bytes, count: int, first_ts: int,
                    max_ts: int) -> MemoryRecordsBuilder:
    """A MemoryRecordsBuilder whose inner DefaultRecordBatchBuilder holds `records` (private fields:
    the same ones its append() maintains; _check_batch_internals proves the result byte-identical)."""
    builder = MemoryRecordsBuilder(2, compression, batch_size)
    inner = builder._builder
    inner._buffer += records
    inner._first_timestamp = first_ts
    inner._max_timestamp = max_ts
    inner._last_offset = count - 1
    inner._num_records = count
    builder._next_offset = count
    return builder


_internals_checked = False
# What _BatchWriter touches besides the builders: (object's name, attribute names).
_PRODUCER_INTERNALS = (("producer", ("_accumulator", "_sender", "_transaction_manager")),
                       ("accumulator", ("_tp_lock", "_batches", "_incomplete", "_closed", "delivery_timeout_ms")),
                       ("batch", ("_record_futures", "produce_future", "record_count")))


def _check_batch_internals(producer: KafkaProducer) -> None:
    """Fail with UnsupportedKafkaClient unless this kafka-python has the internals _BatchWriter uses
    and _filled_builder makes the very bytes send()'s builder makes (checked once per process)."""
    global _internals_checked
    objects = {"producer": producer, "accumulator": getattr(producer, "_accumulator", None),
               "batch": ProducerBatch(TopicPartition("t", 0), MemoryRecordsBuilder(2, 0, 1024))}
    missing = [f"{name}.{attr}" for name, attrs in _PRODUCER_INTERNALS for attr in attrs
               if not hasattr(objects[name], attr)]
    if missing:
        raise UnsupportedKafkaClient(_unsupported(f"missing {', '.join(missing)}"))
    if _internals_checked:
        return
    events = [(b"a", b'{"x":1}', 1_341_100_972_000, b"id-1"), (b"bb", b"v" * 300, 1_341_100_970_000, b"id-2"),
              (b"c", b"", 1_341_200_000_123, b"")]
    try:
        expected = MemoryRecordsBuilder(2, 0, 1 << 16)
        for key, value, ts, event_id in events:
            expected.append(ts, key, value, [(EVENT_ID_HEADER, event_id)])
        records, count, max_ts = _encode_records(events, 0, 1 << 16)
        actual = _filled_builder(0, 1 << 16, records, count, events[0][2], max_ts)
        for builder in (expected, actual):
            builder.set_producer_state(7, 1, 42, False)
            builder.close()
        same = bytes(expected.buffer()) == bytes(actual.buffer()) and actual.next_offset() == len(events)
    except (AttributeError, TypeError, ValueError) as error:
        raise UnsupportedKafkaClient(_unsupported(repr(error))) from error
    if not same:
        raise UnsupportedKafkaClient(_unsupported("record batches differ"))
    if kafka.__version__ != TESTED_KAFKA_PYTHON:
        log.warning("kafka-python %s passes publish_batch's checks but was not tested (%s was)",
                    kafka.__version__, TESTED_KAFKA_PYTHON)
    _internals_checked = True


def _unsupported(why: str) -> str:
    return (f"kafka-python {kafka.__version__} is not compatible with Publisher.publish_batch ({why}); "
            f"it was written for kafka-python {TESTED_KAFKA_PYTHON}: pin that version or use publish_encoded")
