"""File replay: SNAP temporal edge lists, CSV with a column mapping, and JSONL of InteractionEvents.

Each reader yields, per source line, either an InteractionEvent or an InvalidEvent carrying the
original bytes, so the caller can dead-letter exactly the bad lines and publish all the rest.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from clout.schemas import InteractionEvent, InvalidEvent, Reason, event_from_dict, event_id_for, parse_event

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


def open_lines(path: str | Path) -> IO[bytes]:
    """Binary line stream; `.gz` is decompressed transparently."""
    path = Path(path)
    if path.suffix == ".gz":
        return io.BufferedReader(gzip.open(path, "rb"), buffer_size=1 << 20)  # type: ignore[arg-type]
    return open(path, "rb", buffering=1 << 20)


def read_source(path: str | Path, fmt: str, platform: str | None = None,
                mapping: CsvMapping | None = None) -> Iterator[SourceLine]:
    """Every line of the file, decoded by the named format."""
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
    with open_lines(path) as lines:
        for position, line in enumerate(lines, start=1):
            raw = line.rstrip(b"\r\n")
            if not raw.strip() or raw.startswith(b"#"):
                continue
            if position == 1 and fmt == "snap-temporal" and _is_header(raw):
                continue
            yield SourceLine(position, raw, _decode(decode, raw, position))


def _decode(decode: Callable[[bytes, int], InteractionEvent], raw: bytes, position: int) -> InteractionEvent | InvalidEvent:
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
        "actor": actor.decode(errors="replace"),
        "target": target.decode(errors="replace"),
        "kind": kind,
    }
    return event_from_dict(record)


def _is_header(raw: bytes) -> bool:
    fields = raw.split()
    return bool(fields) and not fields[-1].isdigit()


def _read_csv(path: str | Path, platform: str, mapping: CsvMapping) -> Iterator[SourceLine]:
    with open_lines(path) as handle:
        text = io.TextIOWrapper(handle, encoding="utf-8", errors="replace", newline="")
        reader = csv.reader(text)
        names = mapping.columns or next(reader, None)
        if names is None:
            return
        first = 1 if mapping.columns else 2
        for position, row in enumerate(reader, start=first):
            raw = ",".join(row).encode()
            if not row:
                continue
            yield SourceLine(position, raw, _decode(_csv_decoder(names, mapping, platform, row), raw, position))


def _csv_decoder(names: list[str], mapping: CsvMapping, platform: str,
                 row: list[str]) -> Callable[[bytes, int], InteractionEvent]:
    def decode(raw: bytes, position: int) -> InteractionEvent:
        if len(row) != len(names):
            raise InvalidEvent(Reason.BAD_SOURCE_LINE,
                               f"line {position}: expected {len(names)} columns, got {len(row)}")
        values = dict(zip(names, row, strict=True))
        try:
            ts = int(float(values[mapping.ts]) * (1000 if mapping.ts_unit == "s" else 1))
        except (KeyError, ValueError):
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
