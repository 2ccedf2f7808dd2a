"""File replay: SNAP temporal edge lists, CSV with a column mapping, and JSONL of InteractionEvents.

Each reader yields, per source line, either an InteractionEvent or an InvalidEvent carrying the
original bytes, so the caller can dead-letter exactly the bad lines and publish all the rest.

For bulk replay, read_source(...).encoded_chunks() gives the same lines already serialised for
Kafka, in chunks. For the SNAP edge formats this skips the InteractionEvent (decode, validate,
to_json: ~5 µs a line) wherever the result is provably the same bytes (see _EdgeEncoder), which
is most of what makes `clout ingest file` fast; anything else takes the general path.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import zlib
from binascii import hexlify
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from clout.schemas import InteractionEvent, InvalidEvent, Reason, event_from_dict, event_id_for, parse_event
from clout.schemas.event import MAX_TS_MS, MIN_TS_MS
from clout.schemas.ids import MAX_ID_LENGTH

if TYPE_CHECKING:
    from clout.connectors.publisher import EncodedEvent

HIGGS_KINDS = {b"RT": "repost", b"MT": "mention", b"RE": "reply"}


@dataclass(frozen=True)
class SourceLine:
    """One line of the source: its 1-based position, the raw bytes, and what it decoded to."""

    position: int
    raw: bytes
    result: InteractionEvent | InvalidEvent


@dataclass(frozen=True)
class CsvMapping:
    """Which CSV column feeds which event field; constants for fields the file does not have."""

    actor: str = "source"
    target: str = "target"
    ts: str = "time"
    kind: str | None = None  # column name; falls back to `constant_kind`
    constant_kind: str = "message"
    ts_unit: str = "s"  # "s" or "ms"
    columns: list[str] | None = None  # names for a headerless file, in order
    extra: list[str] = field(default_factory=list)  # columns copied into `extra`


def open_lines(path: str | Path | IO[bytes]) -> IO[bytes]:
    """Binary line stream; `.gz` is decompressed transparently. An open binary stream is used as is
    (the fuzzer and tests feed bytes without a file)."""
    if hasattr(path, "read"):
        return path  # type: ignore[return-value]
    path = Path(path)
    if path.suffix == ".gz":
        return io.BufferedReader(gzip.open(path, "rb"), buffer_size=1 << 20)  # type: ignore[arg-type]
    return open(path, "rb", buffering=1 << 20)


def read_source(path: str | Path, fmt: str, platform: str | None = None,
                mapping: CsvMapping | None = None) -> SourceLines:
    """Every line of the file, decoded by the named format (an iterator of SourceLine)."""
    return SourceLines(path, fmt, platform, mapping)


@dataclass
class EncodedChunk:
    """A run of consecutive source lines, ready to publish: the valid ones serialised, in order,
    and the invalid ones as SourceLines for the DLQ. `read` counts both."""

    events: list[EncodedEvent]
    rejects: list[SourceLine]
    read: int


# Lines per EncodedChunk: big enough to fill record batches of several partitions, small enough
# for prompt progress lines and a few MB of memory.
CHUNK_LINES = 8192
# The fast SNAP encoding is compared with the general path on one line in this many.
CHECK_EVERY = 4096


class SourceLines(Iterator[SourceLine]):
    """What read_source returns: an iterator of SourceLine, exactly as before.

    For bulk publishing it also offers encoded_chunks(): the same lines already serialised, which
    for the SNAP edge formats skips building an InteractionEvent per line (see _EdgeEncoder).
    Use one or the other, once.
    """

    def __init__(self, path: str | Path, fmt: str, platform: str | None, mapping: CsvMapping | None) -> None:
        self._args = (path, fmt, platform, mapping)
        self._lines: Iterator[SourceLine] | None = None

    def __next__(self) -> SourceLine:
        if self._lines is None:
            self._lines = _read_lines(*self._args)
        return next(self._lines)

    def encoded_chunks(self, size: int = CHUNK_LINES) -> Iterator[EncodedChunk]:
        """The whole source as EncodedChunks of `size` lines, in source order."""
        if self._lines is not None:
            raise RuntimeError("this source is already being read line by line")
        self._lines = iter(())
        path, fmt, platform, _mapping = self._args
        if fmt in EDGE_FORMATS:
            return _chunks(_encoded_edges(path, fmt, platform or EDGE_FORMATS[fmt]), size)
        return encode_lines(_read_lines(*self._args), size)


def encode_lines(lines: Iterable[SourceLine], size: int = CHUNK_LINES) -> Iterator[EncodedChunk]:
    """Any SourceLines as EncodedChunks: each valid event serialised exactly as Publisher.publish does."""
    return _chunks((line if isinstance(line.result, InvalidEvent) else encode_event(line.result)
                    for line in lines), size)


def _chunks(results: Iterable[EncodedEvent | SourceLine], size: int) -> Iterator[EncodedChunk]:
    """Per-line results (an encoded event, or the SourceLine of an invalid line) in chunks of `size`.

    If reading fails (a truncated or corrupt .gz, an I/O error), the lines read before the failure
    are still yielded, as they would have been published one by one, and then the error goes on.
    """
    chunk = EncodedChunk([], [], 0)
    try:
        for result in results:
            if isinstance(result, SourceLine):
                chunk.rejects.append(result)
            else:
                chunk.events.append(result)
            chunk.read += 1
            if chunk.read >= size:
                yield chunk
                chunk = EncodedChunk([], [], 0)
    except (OSError, EOFError, zlib.error):
        if chunk.read:
            yield chunk
        raise
    if chunk.read:
        yield chunk


def encode_event(event: InteractionEvent) -> EncodedEvent:
    """(key, value, timestamp, event id) of the Kafka record for one event."""
    return event.actor.encode(), event.to_json(), event.ts, event.event_id.encode()


def _read_lines(path: str | Path, fmt: str, platform: str | None = None,
                mapping: CsvMapping | None = None) -> Iterator[SourceLine]:
    decoders: dict[str, Callable[[bytes, int], InteractionEvent]] = {
        "snap-higgs": _higgs_decoder(platform or "twitter"),
        "snap-temporal": _temporal_decoder(platform or "snap"),
        "jsonl": lambda raw, _position: parse_event(raw),
    }
    if fmt == "csv":
        yield from _read_csv(path, platform or "csv", mapping or CsvMapping())
        return
    if fmt not in decoders:
        raise ValueError(f"unknown format {fmt!r}; choose one of {sorted([*decoders, 'csv'])}")
    decode = decoders[fmt]
    for position, raw in _content_lines(path, fmt):
        yield SourceLine(position, raw, _decode(decode, raw, position))


def _content_lines(path: str | Path, fmt: str) -> Iterator[tuple[int, bytes]]:
    """(1-based position, line without its end) for each line that carries data: blank lines,
    `#` comments and a snap-temporal header line are skipped."""
    with open_lines(path) as lines:
        for position, line in enumerate(lines, start=1):
            raw = line.rstrip(b"\r\n")
            if not raw.strip() or raw.startswith(b"#"):
                continue
            if position == 1 and fmt == "snap-temporal" and _is_header(raw):
                continue
            yield position, raw


def _decode(decode: Callable[[bytes, int], InteractionEvent], raw: bytes,
            position: int) -> InteractionEvent | InvalidEvent:
    try:
        return decode(raw, position)
    except InvalidEvent as error:
        return error


def _higgs_decoder(platform: str) -> Callable[[bytes, int], InteractionEvent]:
    """`userA userB unix_seconds RT|MT|RE`: userA retweeted / mentioned / replied to userB."""

    def decode(raw: bytes, position: int) -> InteractionEvent:
        fields = raw.split()
        if len(fields) != 4:
            raise InvalidEvent(Reason.BAD_SOURCE_LINE, f"line {position}: expected 4 fields, got {len(fields)}")
        kind = HIGGS_KINDS.get(fields[3])
        if kind is None:
            raise InvalidEvent(Reason.UNKNOWN_KIND, f"line {position}: kind {fields[3]!r} is not RT, MT or RE")
        return _edge(platform, fields[0], fields[1], fields[2], kind, raw, position)

    return decode


def _temporal_decoder(platform: str) -> Callable[[bytes, int], InteractionEvent]:
    """`src dst unix_seconds`, as in SNAP's temporal networks (CollegeMsg): a message src -> dst."""

    def decode(raw: bytes, position: int) -> InteractionEvent:
        fields = raw.split()
        if len(fields) != 3:
            raise InvalidEvent(Reason.BAD_SOURCE_LINE, f"line {position}: expected 3 fields, got {len(fields)}")
        return _edge(platform, fields[0], fields[1], fields[2], "message", raw, position)

    return decode


def _edge(platform: str, actor: bytes, target: bytes, seconds: bytes, kind: str, raw: bytes,
          position: int) -> InteractionEvent:
    try:
        ts = int(seconds) * 1000
    except ValueError:
        raise InvalidEvent(Reason.WRONG_TYPE, f"line {position}: timestamp {seconds!r} is not an integer") from None
    record = {
        "v": 1,
        "event_id": event_id_for(platform, record=raw, position=position),
        "ts": ts,
        "platform": platform,
        "actor": actor.decode(errors="surrogateescape"),  # undecodable bytes stay visible: bad_id, not a merge
        "target": target.decode(errors="surrogateescape"),
        "kind": kind,
    }
    return event_from_dict(record)


def _is_header(raw: bytes) -> bool:
    fields = raw.split()
    return bool(fields) and not fields[-1].isdigit()


# The SNAP edge formats and their default platform.
EDGE_FORMATS = {"snap-higgs": "twitter", "snap-temporal": "snap"}
# Bytes that JSON-encode as themselves (printable ASCII but quote and backslash), are not str
# whitespace and are allowed in account ids (no braces or glob characters, clout/schemas/ids.py);
# plus the ASCII whitespace that bytes.split() cuts on.
_PLAIN = bytes(b for b in range(0x21, 0x7F) if b not in b'"\\{}*?[]')
_PLAIN_OR_SPACE = _PLAIN + b" \t\n\r\x0b\x0c"


class _EdgeEncoder:
    """Serialises a SNAP edge line straight to its Kafka record, when that is provably the same.

    encode() returns None unless the line has the right number of fields (split as the general
    decoders split), a known kind, a timestamp of ASCII digits whose ms are in range, and only
    _PLAIN bytes between the separators; the platform must be _PLAIN too. Then, in the general path
    (decoder, event_from_dict, to_json): actor and target decode to themselves and are non-blank,
    int() reads the same number, so nothing can be rejected; the event id is event_id_for's (same
    blake2b); and orjson writes to_dict's keys in order, compactly, strings verbatim, i.e. exactly
    the template. Every other line takes the general path. check() compares both on sample lines,
    so a change to the schema or to event_id_for that the template misses fails loudly.
    """

    def __init__(self, fmt: str, platform: str) -> None:
        self.fields = 4 if fmt == "snap-higgs" else 3
        self.kinds = {code: kind.encode() for code, kind in HIGGS_KINDS.items()} if self.fields == 4 else {}
        name = platform.encode()
        self.usable = bool(name) and not name.translate(None, _PLAIN) and b"%" not in name  # % for the template
        self.template = (b'{"v":1,"event_id":"' + name + b':h%b","ts":%d,"platform":"' + name
                         + b'","actor":"%b","target":"%b","kind":"%b"}')
        self.id_prefix = name + b":h"

    def encode(self, raw: bytes, position: int) -> EncodedEvent | None:
        fields = raw.split()
        if len(fields) != self.fields or raw.translate(None, _PLAIN_OR_SPACE):
            return None
        kind = self.kinds.get(fields[3]) if self.fields == 4 else b"message"
        seconds = fields[2]
        if kind is None or not seconds.isdigit() or max(len(fields[0]), len(fields[1])) > MAX_ID_LENGTH:
            return None
        ts = int(seconds) * 1000
        if not MIN_TS_MS <= ts < MAX_TS_MS:
            return None
        digest = hexlify(hashlib.blake2b(raw, digest_size=12, person=position.to_bytes(16, "big")).digest())
        return fields[0], self.template % (digest, ts, fields[0], fields[1], kind), ts, self.id_prefix + digest

    def check(self, encoded: EncodedEvent, general: InteractionEvent | InvalidEvent) -> None:
        """Fail loudly if the template and the general path ever disagree (e.g. schema changes)."""
        if isinstance(general, InvalidEvent) or encoded != encode_event(general):
            raise AssertionError(f"fast SNAP encoding {encoded!r} differs from the general path's {general!r}")


def _encoded_edges(path: str | Path, fmt: str, platform: str) -> Iterator[EncodedEvent | SourceLine]:
    """Each line of a SNAP edge file, encoded (fast when _EdgeEncoder can, cross-checked now and
    then), or as the SourceLine of an invalid line."""
    fast = _EdgeEncoder(fmt, platform)
    decode = _higgs_decoder(platform) if fmt == "snap-higgs" else _temporal_decoder(platform)
    checked_at = -CHECK_EVERY
    for index, (position, raw) in enumerate(_content_lines(path, fmt)):
        encoded = fast.encode(raw, position) if fast.usable else None
        if encoded is None:
            result = _decode(decode, raw, position)
            yield SourceLine(position, raw, result) if isinstance(result, InvalidEvent) else encode_event(result)
            continue
        if index - checked_at >= CHECK_EVERY:
            fast.check(encoded, _decode(decode, raw, position))
            checked_at = index
        yield encoded


def _read_csv(path: str | Path, platform: str, mapping: CsvMapping) -> Iterator[SourceLine]:
    with open_lines(path) as handle:
        # surrogateescape: undecodable bytes survive into the row (and back into `raw`), to be refused there.
        text = io.TextIOWrapper(handle, encoding="utf-8", errors="surrogateescape", newline="")
        reader = csv.reader(text)
        try:
            names = mapping.columns or next(reader, None)
        except csv.Error:
            names = None
        if names is None:
            return
        first = 1 if mapping.columns else 2
        for position, row in enumerate(_csv_rows(reader), start=first):
            if isinstance(row, csv.Error):
                error = InvalidEvent(Reason.BAD_SOURCE_LINE, f"line {reader.line_num}: {row}")
                yield SourceLine(position, f"<unparsed CSV line {reader.line_num}>".encode(), error)
                continue
            raw = ",".join(row).encode(errors="surrogateescape")
            if not row:
                continue
            yield SourceLine(position, raw, _decode(_csv_decoder(names, mapping, platform, row), raw, position))


def _csv_rows(reader: Iterator[list[str]]) -> Iterator[list[str] | csv.Error]:
    """The rows, with a malformed one (a field past csv's size limit, a stray NUL) as its error in
    its place: the reader goes on with the next line, so one bad line does not end the replay."""
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield error


def _csv_decoder(names: list[str], mapping: CsvMapping, platform: str,
                 row: list[str]) -> Callable[[bytes, int], InteractionEvent]:
    def decode(raw: bytes, position: int) -> InteractionEvent:
        if len(row) != len(names):
            raise InvalidEvent(Reason.BAD_SOURCE_LINE,
                               f"line {position}: expected {len(names)} columns, got {len(row)}")
        if any(_undecodable(value) for value in row):
            raise InvalidEvent(Reason.BAD_SOURCE_LINE, f"line {position}: not valid UTF-8")
        values = dict(zip(names, row, strict=True))
        try:
            ts = int(float(values[mapping.ts]) * (1000 if mapping.ts_unit == "s" else 1))
        except (KeyError, ValueError, OverflowError):  # OverflowError: inf, 1e400
            raise InvalidEvent(Reason.WRONG_TYPE,
                               f"line {position}: column {mapping.ts!r} is not a number") from None
        record = {
            "v": 1,
            "event_id": event_id_for(platform, record=raw, position=position),
            "ts": ts,
            "platform": platform,
            "actor": values.get(mapping.actor),
            "target": values.get(mapping.target),
            "kind": values.get(mapping.kind) if mapping.kind else mapping.constant_kind,
            "extra": {name: values[name] for name in mapping.extra if name in values} or None,
        }
        return event_from_dict(record)

    return decode


def _undecodable(value: str) -> bool:
    """Did surrogateescape have to stand in for bytes that are not UTF-8?"""
    try:
        value.encode()
    except UnicodeEncodeError:
        return True
    return False
