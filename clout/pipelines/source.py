"""A Python-native unbounded Kafka source on kafka-python (Beam's `UnboundedSource` API).

One split per partition. Each element the source emits is a *batch* of raw records from one
partition (not one record): Beam's Python per-element cost is the known limit of a local runner,
and batching lets later steps pre-aggregate before the shuffle. A batch is timestamped with its
earliest event, and the watermark never passes the earliest event of the batches emitted in this
bundle or the one before: a runner may move the watermark on before the next stage has processed
a bundle's output (Prism does), and those events must not turn late on the way.

Watermark per partition: the highest event time seen minus a bounded out-of-orderness. A partition
that has been idle (at its end) for `idle_after_s` stops holding the watermark back: its event time
goes on at the pace of the wall clock from where its events stopped (never past the wall clock minus
the same bound), which is what a live stream's event time does. It does not jump to the wall clock: a
replay runs thousands of times faster than real time, and a connector that pauses (a broker restart)
would otherwise close every window whose events it has still to publish. A partition that has read
nothing follows the wall clock, but only once another partition has news (while the whole topic is
empty there is nothing to hold back). Lateness is judged against the highest watermark the reader
reported, so a record is either counted in a window still open or dead-lettered as late, never
dropped in between. With `stop_when_idle_s`, a partition that has sat at its end that long finishes,
so replays and backfills end by themselves. With a read-ahead it first drains: it reports the
watermark at which the newest window it read is final, waits until the results are sealed that far
(or stop moving for as long again), and only then reports the final watermark. Jumping to the end at
once would fire every window's close while the analysis still had days of slices in flight. What a
reader has seen (newest event, watermark reported) travels in its checkpoint mark, so a reader
rebuilt elsewhere judges lateness as the one before it.

A broker that does not answer is not an idle partition: "at its end" is confirmed with the broker
(at most once a second) before idle time counts, and a reader that cannot reach the broker emits
nothing, holds its watermark and keeps trying (tests/faults: broker SIGKILL and restart, a lossy
link). Otherwise an outage longer than `idle_after_s` would move the watermark to the wall clock
and dead-letter everything published meanwhile as too late, and `stop_when_idle_s` would end a
run while the connector still had records to publish.

A replay reads far faster than the pipeline analyses, and a runner without backpressure (Prism)
would hold the whole replay in flight: every window open at once, gigabytes for the Higgs week. With
`read_ahead`, a reader pauses while the newest event it has read is more than `span_ms` of event time
past the results already final (the progress hash's `sealed_ms`, or the oldest unsealed batch it
read, so a gap in the data cannot stall it). A paused reader is not idle: its watermark holds. Its
watermark, idle or not, never runs more than the same span past that point either (it never moves
back behind what it reported): an idle partition's clock must not close windows whose slices the
analysis has still to merge (tests/faults, broker SIGKILL: a replay's analysis a day behind its
reading had chunks dropped at their windows' close). A live stream never gets that far ahead; a
Redis that cannot be asked never pauses a reader nor caps its watermark.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from apache_beam.coders import Coder, PickleCoder
from apache_beam.io.unbounded_source import CheckpointMark, UnboundedReader, UnboundedSource
from apache_beam.metrics import Metrics
from apache_beam.utils.timestamp import MAX_TIMESTAMP, MIN_TIMESTAMP, Timestamp
from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError
from redis.exceptions import RedisError

from clout.model.windows import WindowPolicy
from clout.pipelines.worker_memory import shared
from clout.store.client import RedisTarget

EVENT_ID_HEADER = "event_id"
# The first poll after a seek waits this long for the first fetch (a zero-timeout poll has sent none
# yet): a reader whose first advance comes back empty with nothing to hold the watermark is one that
# Flink's runner may finish at once when its Impulse source shuts down (issue 11).
FIRST_POLL_MS = 500
# How often a reader at its end asks the broker whether that is still the end, and how long it waits.
CONFIRM_END_EVERY_S = 1.0
CONFIRM_END_TIMEOUT_MS = 2_000
CONNECT_TIMEOUT_MS = 10_000  # a reader's bootstrap; a broker away longer is retried every CONFIRM_END_EVERY_S
_NAMESPACE = "clout.source"
log = logging.getLogger(__name__)


class RawRecord(NamedTuple):
    """What the pipeline needs of a Kafka record; the value is decoded later, with the DLQ at hand.

    `late_by_ms` > 0 marks a record that arrived further behind its partition's watermark than the
    allowed lateness: it is dead-lettered as `too_late` rather than counted.
    """

    offset: int
    ts: int
    value: bytes
    late_by_ms: int = 0


class RecordBatch(NamedTuple):
    topic: str
    partition: int
    records: list[RawRecord]


@dataclass(frozen=True)
class ReadAhead:
    """How far (event time) a reader may run ahead of the results already final, and where it reads
    how far they are: `progress_key`'s `sealed_ms` (recovery.RecordProgress writes it)."""

    redis: RedisTarget
    progress_key: str
    span_ms: int


@dataclass(frozen=True)
class SourceConfig:
    """Where to read and how the watermark behaves. `start_offsets` maps partition -> first offset."""

    client: dict[str, Any]
    topic: str
    group: str
    start_offsets: dict[int, int]
    out_of_orderness_ms: int = 30_000
    lateness_ms: int = 600_000
    idle_after_s: float = 10.0
    stop_when_idle_s: float | None = None
    max_batch: int = 2_000
    dedup_horizon_ms: int = 3_600_000
    read_ahead: ReadAhead | None = None
    windows: WindowPolicy | None = None  # with read_ahead: how far a finishing reader drains


class Seen(NamedTuple):
    """What a reader has seen that decides lateness: the newest event time, and the highest watermark
    it reported (ms; None before the first)."""

    max_event_ts: int | None
    watermark_ms: int | None


class PartitionMark(CheckpointMark):
    """Resume position of one partition. Finalizing commits it to the consumer group (absolute, so a
    repeated or out-of-order commit is harmless), which is how lag shows up in Kafka's tools."""

    def __init__(self, config: SourceConfig, partition: int, next_offset: int, unsealed: tuple[int, ...] = (),
                 seen: Seen | None = None) -> None:
        self.config = config
        self.partition = partition
        self.next_offset = next_offset
        self.unsealed = unsealed  # the read-ahead gate's batches read and not yet sealed, for the next reader
        self.seen = seen  # what the reader had seen, so the next one judges lateness the same way

    def finalize_checkpoint(self) -> None:
        """A commit that fails (the broker away) is skipped: commits are absolute, and the next
        checkpoint's carries a later offset. Progress for restarts is in Redis, not here."""
        try:
            _committer(self.config).commit(self.config.topic, self.partition, self.next_offset)
        except KafkaError as error:
            log.warning("offset commit for %s/%d skipped: %r", self.config.topic, self.partition, error)


class KafkaSource(UnboundedSource):
    def __init__(self, config: SourceConfig, partition: int | None = None) -> None:
        self.config = config
        self.partition = partition

    def __eq__(self, other: object) -> bool:
        """Equal sources read the same. Beam's source coder memoizes by equality, and a resumed
        restriction's source is a new object each bundle: without this, every resumption pickled and
        bz2-compressed the source anew (about 3 % of the worker's CPU in the bench profile)."""
        return isinstance(other, KafkaSource) and (self.partition, self.config) == (other.partition, other.config)

    def __hash__(self) -> int:
        return hash((self.config.topic, self.config.group, self.partition))

    def split(self, desired_num_splits: int, options: Any = None) -> Iterable[KafkaSource]:
        if self.partition is not None:
            return [self]
        return [KafkaSource(self.config, p) for p in sorted(self.config.start_offsets)]

    def create_reader(self, options: Any, checkpoint_mark: PartitionMark | None) -> ReaderLease:
        """The live reader the bundle before left at `checkpoint_mark` if this process has it, else one
        rebuilt from the mark (which holds everything that decides what is read and when it is late)."""
        if self.partition is None:
            raise ValueError("KafkaSource must be split into partitions before reading")
        if checkpoint_mark is None:
            return ReaderLease(KafkaPartitionReader(self.config, self.partition,
                                                    self.config.start_offsets[self.partition]))
        live = _HAND_OFF.take(checkpoint_mark)
        if live is not None:
            return ReaderLease(live, resumed=True)
        return ReaderLease(KafkaPartitionReader.from_mark(self.config, checkpoint_mark))

    def get_checkpoint_mark_coder(self) -> Coder:
        return PickleCoder()

    def default_output_coder(self) -> Coder:
        return PickleCoder()


class KafkaPartitionReader(UnboundedReader):
    """Reads one partition in batches; `advance()` polls with a zero timeout so it never blocks."""

    def __init__(self, config: SourceConfig, partition: int, offset: int) -> None:
        self.config = config
        self.tp = TopicPartition(config.topic, partition)
        self.next_offset = offset
        self.max_event_ts: int | None = None
        self.watermark_ms: int | None = None  # the highest watermark reported: nothing behind it is on time
        self.current: RecordBatch | None = None
        self.current_min_ts = 0
        self.bundle_min_ts: int | None = None
        self.previous_bundle_min_ts: int | None = None
        self.idle_since: float | None = None
        self.news_since: float | None = None  # monotonic time another partition was first seen to have records
        self.finished = False
        self.drain: _Drain | None = None  # set once the partition is done: results being sealed before it finishes
        self.consumer: KafkaConsumer | None = None
        self.end_confirmed_at: float | None = None  # monotonic time the broker last said we are at the end
        self.connect_after = 0.0
        self.gate = _ReadAheadGate(config.read_ahead)
        self.records_read = Metrics.counter(_NAMESPACE, "records_read")
        self.lease: ReaderLease | None = None  # the one holder that may drive and close this reader
        self.offered_as: tuple | None = None  # the mark it is on offer at for the next bundle (_HandOff)

    @classmethod
    def from_mark(cls, config: SourceConfig, mark: PartitionMark) -> KafkaPartitionReader:
        reader = cls(config, mark.partition, mark.next_offset)
        reader.gate.unsealed = list(mark.unsealed)
        if mark.seen is not None:
            reader.max_event_ts, reader.watermark_ms = mark.seen
        return reader

    def start(self) -> bool:
        if not self._connect():
            return False
        return self.advance(timeout_ms=FIRST_POLL_MS)

    def _connect(self) -> bool:
        """Opens the consumer at `next_offset`; False (and no data) while the broker cannot be reached."""
        if self.consumer is not None:
            return True
        if time.monotonic() < self.connect_after:
            return False
        try:
            consumer = KafkaConsumer(**self.config.client, group_id=None, enable_auto_commit=False,
                                     max_poll_records=self.config.max_batch, fetch_max_bytes=16 << 20,
                                     max_partition_fetch_bytes=8 << 20, bootstrap_timeout_ms=CONNECT_TIMEOUT_MS,
                                     auto_offset_reset="none")  # never skip: see advance()
        except KafkaError as error:
            log.warning("Kafka unreachable for %s/%d, retrying: %r", self.tp.topic, self.tp.partition, error)
            self.connect_after = time.monotonic() + CONFIRM_END_EVERY_S
            self._unreachable()
            return False
        consumer.assign([self.tp])
        consumer.seek(self.tp, self.next_offset)
        self.consumer = consumer
        return True

    def advance(self, timeout_ms: int = 0) -> bool:
        if self.drain is not None:  # done reading: only waits for the results to be sealed
            self.current = None
            self.finished = self.finished or self.drain.done(self.gate)
            return False
        if not self._connect():
            self.current = None
            return False
        if self.gate.holds(self.max_event_ts):
            # Waiting, not at its end: an idle clock left running would move the watermark to the wall
            # clock and close windows whose events are still to be read.
            self.current = None
            self.idle_since = None
            return False
        try:
            polled = self.consumer.poll(timeout_ms=timeout_ms, max_records=self.config.max_batch).get(self.tp, [])
        except KafkaError as error:
            # Out of range or truncated, typically while a restarted broker recovers its log: a reset
            # policy would jump to the end and skip records silently (tests/faults). Ask again later.
            log.warning("Kafka answered %r for %s/%d at offset %d; retrying there", error, self.tp.topic,
                        self.tp.partition, self.next_offset)
            self.consumer.seek(self.tp, self.next_offset)
            self.current = None
            self._unreachable()
            return False
        if not polled:
            self.current = None
            self._note_idle()
            return False
        self.idle_since = None
        self.next_offset = polled[-1].offset + 1
        self.records_read.inc(len(polled))
        records = [self._raw(r) for r in polled]
        self.current_min_ts = min(r.ts for r in records)
        self.gate.read(self.current_min_ts)
        if self.bundle_min_ts is None or self.current_min_ts < self.bundle_min_ts:
            self.bundle_min_ts = self.current_min_ts
        self.current = RecordBatch(self.tp.topic, self.tp.partition, records)
        return True

    def get_current(self) -> RecordBatch:
        return self.current

    def get_current_timestamp(self) -> Timestamp:
        return Timestamp(micros=self.current_min_ts * 1000)

    def get_watermark(self) -> Timestamp:
        if self.finished:
            return MAX_TIMESTAMP
        if self.drain is not None:
            watermark = self.drain.watermark_ms
        else:
            watermark = self._idle_watermark_ms() if self._idle() else self._reading_watermark_ms()
        cap = self.gate.cap_ms()
        if watermark is not None and cap is not None:
            watermark = min(watermark, cap)
        if self.watermark_ms is not None and (watermark is None or watermark < self.watermark_ms):
            watermark = self.watermark_ms  # a watermark reported is never taken back
        if watermark is None:
            return MIN_TIMESTAMP
        self.watermark_ms = watermark
        return Timestamp(micros=watermark * 1000)

    def _idle(self) -> bool:
        return self.idle_since is not None and time.monotonic() - self.idle_since >= self.config.idle_after_s

    def _reading_watermark_ms(self) -> int | None:
        if self.max_event_ts is None:
            return None
        watermark = self.max_event_ts - self.config.out_of_orderness_ms
        held = [t for t in (self.bundle_min_ts, self.previous_bundle_min_ts) if t is not None]
        if held:  # batches of this bundle and the one before may not have reached the next stage yet
            watermark = min(watermark, *held)
        return watermark

    def _idle_watermark_ms(self) -> int | None:
        """Event time goes on at the wall clock's pace from where the partition's events stopped, up to
        the wall clock: a live stream's idle partition soon follows the wall clock, while a paused
        replay's moves seconds of its event time, not years."""
        bound = self.config.out_of_orderness_ms
        wall = int(time.time() * 1000) - bound
        if self.max_event_ts is None:
            news = self.news_since is not None and time.monotonic() - self.news_since >= self.config.idle_after_s
            return wall if news else None
        stopped = self.max_event_ts - bound
        idle_ms = int((time.monotonic() - self.idle_since) * 1000)
        return max(stopped, min(wall, stopped + idle_ms))

    def get_checkpoint_mark(self) -> PartitionMark:
        """Called at each bundle boundary: the watermark hold moves on by one bundle."""
        self.previous_bundle_min_ts, self.bundle_min_ts = self.bundle_min_ts, None
        return PartitionMark(self.config, self.tp.partition, self.next_offset, tuple(self.gate.unsealed),
                             Seen(self.max_event_ts, self.watermark_ms))

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close(autocommit=False)
            self.consumer = None
        if self.gate.client is not None:
            self.gate.client.close()
            self.gate.client = None

    def _raw(self, record: Any) -> RawRecord:
        """Lateness is decided here, in partition order, so a replay decides it the same way: behind the
        newest event less the out-of-orderness, or behind a watermark reported while the partition
        was idle, by more than the allowed lateness."""
        ts = record.timestamp
        on_time_from = self._on_time_from_ms()
        late_by = 0 if on_time_from is None else max(0, on_time_from - self.config.lateness_ms - ts)
        if self.max_event_ts is None or ts > self.max_event_ts:
            self.max_event_ts = ts
        return RawRecord(record.offset, ts, record.value, late_by)

    def _on_time_from_ms(self) -> int | None:
        """The event time lateness counts back from: the newest event less the out-of-orderness, or the
        highest watermark reported if that is later (it is only while the partition was idle)."""
        newest = None if self.max_event_ts is None else self.max_event_ts - self.config.out_of_orderness_ms
        return max((t for t in (newest, self.watermark_ms) if t is not None), default=None)

    def _note_idle(self) -> None:
        """Track how long the partition has sat at its end; finish after `stop_when_idle_s`."""
        at_end = self._at_end()
        if at_end is None:
            self._unreachable()
            return
        if not at_end:
            self.idle_since = None
            return
        now = time.monotonic()
        self.idle_since = self.idle_since or now
        limit = self.config.stop_when_idle_s
        if limit is not None and now - self.idle_since >= limit:
            self._finish(limit)

    def _finish(self, patience_s: float) -> None:
        """Done reading: drain first where the results can be watched (a read-ahead), else finish."""
        windows = self.config.windows
        if self.gate.limit is None or windows is None or self.max_event_ts is None:
            self.finished = True
            return
        last_final = windows.last_final_ms(self.max_event_ts)
        self.drain = _Drain(sealed_at_ms=last_final, watermark_ms=last_final + windows.slice_ms,
                            patience_s=patience_s)
        self.finished = self.drain.done(self.gate)

    def _at_end(self) -> bool | None:
        """Whether the partition is at its end; None when the broker cannot say (unreachable).

        The fetcher's high-water mark stays at its last value while the broker is away, so "at the
        end" by it is confirmed with the broker itself, at most once every CONFIRM_END_EVERY_S."""
        end = self.consumer.highwater(self.tp)
        if end is not None and self.next_offset < end:
            return False
        now = time.monotonic()
        if end is not None and self.end_confirmed_at is not None and now - self.end_confirmed_at < CONFIRM_END_EVERY_S:
            return True
        try:
            end = self.consumer.end_offsets([self.tp], timeout_ms=CONFIRM_END_TIMEOUT_MS)[self.tp]
        except KafkaError:
            return None
        self.end_confirmed_at = now
        if self.max_event_ts is None and self.news_since is None and self._others_have_news():
            self.news_since = now
        return self.next_offset >= end

    def _others_have_news(self) -> bool:
        """Whether another partition got records since the run started: only then may a partition that
        has read nothing stop holding the watermark back (there is nothing to hold back before)."""
        others = [TopicPartition(self.tp.topic, p) for p in self.config.start_offsets if p != self.tp.partition]
        try:
            ends = self.consumer.end_offsets(others, timeout_ms=CONFIRM_END_TIMEOUT_MS) if others else {}
        except KafkaError:
            return False
        return any(ends[tp] > self.config.start_offsets[tp.partition] for tp in others)

    def _unreachable(self) -> None:
        """No answer from the broker: not idle, so the watermark holds and the run does not finish."""
        self.idle_since = None
        self.end_confirmed_at = None


class ReaderLease(UnboundedReader):
    """What Beam holds of a partition reader: the right to drive it until the next bundle takes it over.

    Beam parks a started reader for the next bundle in a cache of the DoFn instance. A runner that
    finalizes bundles only at its own checkpoints (Flink, every `--checkpointing_interval`) keeps
    each such instance busy until then, so the next bundle runs on a new instance with an empty
    cache: every resume would rebuild the reader, with a new Kafka consumer each time and its clocks
    (idle since, end confirmed, the watermark hold of the bundle before) reset, so an idle partition
    never finishes and a stop-with-drain never ends (issue 11). So a reader cut at a checkpoint is
    also offered to the process (`_HandOff`), and the bundle that resumes from that mark takes it
    over. The lease it leaves behind, still parked in the old cache, can then neither drive nor
    close the reader; used after all (a residual resumed twice), it rebuilds from its own last mark,
    as on a worker that never had the reader. The reader is only ever a cache of what the mark holds.
    """

    def __init__(self, reader: KafkaPartitionReader, resumed: bool = False) -> None:
        self.reader = reader
        self.resumed = resumed  # already started by an earlier bundle: `start()` only reads on
        self.last_mark: PartitionMark | None = None
        reader.lease = self

    def _live(self) -> KafkaPartitionReader:
        if self.reader.lease is not self:
            if self.last_mark is None:
                raise RuntimeError("a reader lease was taken over before it cut a checkpoint")
            self.reader = KafkaPartitionReader.from_mark(self.reader.config, self.last_mark)
            self.reader.lease, self.resumed = self, False
        _HAND_OFF.withdraw(self.reader)
        return self.reader

    def start(self) -> bool:
        reader = self._live()
        return reader.advance() if self.resumed else reader.start()

    def advance(self) -> bool:
        return self._live().advance()

    def get_current(self) -> RecordBatch:
        return self.reader.get_current()

    def get_current_timestamp(self) -> Timestamp:
        return self.reader.get_current_timestamp()

    def get_watermark(self) -> Timestamp:
        return self.reader.get_watermark()

    def get_checkpoint_mark(self) -> PartitionMark:
        reader = self._live()
        self.last_mark = reader.get_checkpoint_mark()
        if not reader.finished:
            _HAND_OFF.offer(self.last_mark, reader)
        return self.last_mark

    def close(self) -> None:
        if _HAND_OFF.release(self.reader, self):
            self.reader.close()


def _mark_key(mark: PartitionMark) -> tuple:
    return mark.config.topic, mark.config.group, mark.partition, mark.next_offset, mark.unsealed, mark.seen


class _HandOff:
    """Readers cut at a checkpoint, each until the bundle that resumes from that mark takes it over or
    its holder uses it again; dropped (not closed: the lease still parked in Beam's cache closes it)
    after `keep_s` or beyond `max_size`. One per worker process."""

    def __init__(self, keep_s: float = 60.0, max_size: int = 256) -> None:
        self.keep_s, self.max_size = keep_s, max_size
        self._lock = threading.Lock()
        self._offered: OrderedDict[tuple, tuple[KafkaPartitionReader, float]] = OrderedDict()

    def offer(self, mark: PartitionMark, reader: KafkaPartitionReader) -> None:
        now = time.monotonic()
        with self._lock:
            self._drop(reader)
            reader.offered_as = _mark_key(mark)
            self._offered[reader.offered_as] = (reader, now)
            while self._offered and (len(self._offered) > self.max_size
                                     or next(iter(self._offered.values()))[1] < now - self.keep_s):
                _, (dropped, _) = self._offered.popitem(last=False)
                dropped.offered_as = None

    def take(self, mark: PartitionMark) -> KafkaPartitionReader | None:
        """The reader left at exactly `mark`, now the caller's to lease; None if this process has none."""
        with self._lock:
            reader, _ = self._offered.pop(_mark_key(mark), (None, 0.0))
            if reader is None:
                return None
            reader.offered_as = None
            if reader.lease is None or reader.config != mark.config:
                return None
            reader.lease = None  # the old lease's hold ends here; the new lease takes it next
            return reader

    def withdraw(self, reader: KafkaPartitionReader) -> None:
        """The holder reads on: the offered mark is no longer where the reader stands."""
        if reader.offered_as is not None:
            with self._lock:
                self._drop(reader)

    def release(self, reader: KafkaPartitionReader, lease: ReaderLease) -> bool:
        """Whether `lease` still holds `reader` (so closing it is the lease's to do); it then holds no more."""
        with self._lock:
            if reader.lease is not lease:
                return False
            reader.lease = None
            self._drop(reader)
            return True

    def _drop(self, reader: KafkaPartitionReader) -> None:
        """Under the lock: `reader` is no longer on offer."""
        key, reader.offered_as = reader.offered_as, None
        if key is not None and self._offered.get(key, (None, 0.0))[0] is reader:
            del self._offered[key]


_HAND_OFF = _HandOff()


class Progress(NamedTuple):
    """What Redis last said of the results: whether it answered, and `sealed_ms` (None: nothing yet)."""

    answered: bool
    sealed_ms: int | None


class _ReadAheadGate:
    """Says when a reader has run `span_ms` of event time past the results already final, and how far
    its watermark may go. Redis is asked at most every `check_every_s`; every decision between two
    answers reads the same one."""

    def __init__(self, limit: ReadAhead | None, check_every_s: float = CONFIRM_END_EVERY_S) -> None:
        self.limit = limit
        self.check_every_s = check_every_s
        self.client: Any = None
        self.unsealed: list[int] = []  # earliest event of each batch read since the last seal seen
        self.base: int | None = None  # where the span starts; None: do not hold
        self._progress = Progress(False, None)
        self._asked_at = -float("inf")

    def read(self, batch_min_ts: int) -> None:
        if self.limit is not None:
            self.unsealed.append(batch_min_ts)

    def holds(self, newest_ts: int | None) -> bool:
        if self.limit is None or newest_ts is None:
            return False
        self.progress()
        return self.base is not None and newest_ts > self.base + self.limit.span_ms

    def cap_ms(self) -> int | None:
        """The furthest watermark the results allow (the span past the base); None: no cap."""
        if self.limit is None:
            return None
        self.progress()
        return None if self.base is None else self.base + self.limit.span_ms

    def progress(self) -> Progress:
        """Redis's answer, asked afresh once `check_every_s` has passed; the base follows each answer."""
        now = time.monotonic()
        if self.limit is not None and now - self._asked_at >= self.check_every_s:
            self._asked_at = now
            self._progress = self._ask()
            self.base = self._base(self._progress)
        return self._progress

    def _ask(self) -> Progress:
        try:
            if self.client is None:
                self.client = self.limit.redis.connect()
            sealed = self.client.hget(self.limit.progress_key, "sealed_ms")
        except RedisError as error:
            log.warning("read-ahead check skipped (Redis: %r)", error)
            return Progress(False, None)
        return Progress(True, int(sealed) if sealed is not None else None)

    def _base(self, progress: Progress) -> int | None:
        """max(sealed, the oldest unsealed batch read); None when Redis could not be asked."""
        if not progress.answered:
            return None
        if progress.sealed_ms is not None:
            self.unsealed = [t for t in self.unsealed if t > progress.sealed_ms]
        oldest = min(self.unsealed, default=None)
        candidates = [t for t in (progress.sealed_ms, oldest) if t is not None]
        return max(candidates) if candidates else None


@dataclass
class _Drain:
    """A finished partition's last wait: it reports `watermark_ms` (past the final pane of the newest
    window it read) until the results are sealed to `sealed_at_ms`, or they have not moved for
    `patience_s` (nothing more is coming: the run ends as it would without a drain). A Redis that
    does not answer is results that do not move: a blip is waited out, a Redis gone for good ends
    the drain after the same patience."""

    sealed_at_ms: int
    watermark_ms: int
    patience_s: float
    last_sealed: int | None = None
    moved_at: float = field(default_factory=time.monotonic)

    def done(self, gate: _ReadAheadGate) -> bool:
        answered, sealed = gate.progress()
        if answered and sealed is not None and sealed >= self.sealed_at_ms:
            return True
        now = time.monotonic()
        if answered and sealed != self.last_sealed:
            self.last_sealed, self.moved_at = sealed, now
        return now - self.moved_at >= self.patience_s


class _Committer:
    """One group-member-less consumer per process, used only to commit offsets for the group. The
    runner finalizes a checkpoint after every bundle, read or idle; an offset this process has
    already committed is not sent again (a broker round trip each, for lag display only)."""

    def __init__(self, config: SourceConfig) -> None:
        self._consumer = KafkaConsumer(**config.client, group_id=config.group, enable_auto_commit=False)
        self._lock = threading.Lock()
        self._committed: dict[tuple[str, int], int] = {}

    def commit(self, topic: str, partition: int, next_offset: int) -> None:
        with self._lock:
            if self._committed.get((topic, partition)) == next_offset:
                return
            self._consumer.commit({TopicPartition(topic, partition): OffsetAndMetadata(next_offset, "", -1)})
            self._committed[(topic, partition)] = next_offset


def _committer(config: SourceConfig) -> _Committer:
    key = ("committer", repr(sorted(config.client.items())), config.group)
    return shared(key, lambda: _Committer(config))
