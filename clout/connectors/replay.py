"""Drive a source into Kafka: pacing (as fast as possible, real time x N, or a fixed rate),
time rebasing, dead-lettering of bad lines, progress lines and the closing summary.

Unpaced replays go in chunks through Publisher.publish_batch (whole record batches, and for the
SNAP edge formats no InteractionEvent objects at all); paced ones publish event by event, so that
each event leaves when it is due.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from clout.connectors.file import EncodedChunk, SourceLine, SourceLines, encode_lines
from clout.connectors.publisher import DeliveryFailed, Publisher
from clout.progress import RateReporter
from clout.schemas import InteractionEvent, InvalidEvent


@dataclass(frozen=True)
class Pacing:
    """How fast to replay. `speed` N replays event time at N x real time; `rate` caps events/s;
    `rebase` shifts every timestamp so that the first event happens now."""

    speed: float | None = None
    rate: float | None = None
    rebase: bool = False


@dataclass
class ReplaySummary:
    read: int
    published: int
    rejected: int
    seconds: float

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


def replay(lines: Iterable[SourceLine], publisher: Publisher, source: str, pacing: Pacing = Pacing(),
           progress_interval: float = 2.0) -> ReplaySummary:
    """Publish every valid line, dead-letter every invalid one, and flush before returning."""
    read = 0
    reporter = RateReporter(
        f"ingest {source}",
        lambda: {"read": read, "published": publisher.counts.published, "rejected": publisher.counts.rejected},
        rate_of="read", interval=progress_interval)

    def done(count: int) -> None:
        nonlocal read
        read += count
        reporter.tick()

    started = time.monotonic()
    try:
        if pacing == Pacing():
            for chunk in _chunks(lines):
                done(chunk.read)  # before publishing: a DeliveryFailed below names the lines read
                publisher.publish_batch(chunk.events)
                for line in chunk.rejects:
                    _publish_line(line, publisher, source)
        else:
            for line in _paced(lines, pacing):
                done(1)
                _publish_line(line, publisher, source)
        publisher.flush()
    except DeliveryFailed as error:  # say how far the source got: the rest of it was not even sent
        raise DeliveryFailed(f"{error}; {read:,} lines of {source} were read") from None
    reporter.summary()
    return ReplaySummary(read, publisher.counts.published, publisher.counts.rejected,
                         round(time.monotonic() - started, 3))


def _chunks(lines: Iterable[SourceLine]) -> Iterator[EncodedChunk]:
    """A file source encodes itself (fastest); any other iterable of lines is encoded here."""
    return lines.encoded_chunks() if isinstance(lines, SourceLines) else encode_lines(lines)


def _publish_line(line: SourceLine, publisher: Publisher, source: str) -> None:
    if isinstance(line.result, InvalidEvent):
        publisher.reject(line.raw, line.result, f"{source}:{line.position}")
    else:
        publisher.publish(line.result)


def events_as_lines(events: Iterable[InteractionEvent]) -> Iterator[SourceLine]:
    """Generated events are valid by construction; give them the shape file lines have."""
    for position, event in enumerate(events, start=1):
        yield SourceLine(position, b"", event)


def _paced(lines: Iterable[SourceLine], pacing: Pacing) -> Iterator[SourceLine]:
    if pacing == Pacing():
        yield from lines
        return
    wall_start = time.monotonic()
    shift: int | None = None
    first_ts: int | None = None
    for count, line in enumerate(lines):
        event = line.result
        if isinstance(event, InteractionEvent):
            if first_ts is None:
                first_ts = event.ts
                shift = int(time.time() * 1000) - event.ts if pacing.rebase else 0
            _wait(wall_start, _due(event.ts - first_ts, count, pacing))
            if shift:
                line = dataclasses.replace(line, result=dataclasses.replace(event, ts=event.ts + shift))
        yield line


def _due(event_offset_ms: int, count: int, pacing: Pacing) -> float:
    """Seconds after the start at which this event may be sent."""
    by_speed = event_offset_ms / 1000 / pacing.speed if pacing.speed else 0.0
    by_rate = count / pacing.rate if pacing.rate else 0.0
    return max(by_speed, by_rate)


def _wait(wall_start: float, due: float) -> None:
    delay = wall_start + due - time.monotonic()
    if delay > 0.001:
        time.sleep(delay)
