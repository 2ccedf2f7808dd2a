"""InteractionEvent: the one record every connector produces and every pipeline consumes.

Version rule (see ``schemas/README.md``): within a major version fields are only added, and
added fields are optional, so readers tolerate fields they do not know. A record whose ``v``
is a major version this code does not know is rejected rather than guessed at.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from clout.model.kinds import KINDS
from clout.schemas.ids import (
    ACCOUNT_RULE,
    EVENT_ID_RULE,
    PLATFORM_RULE,
    is_account_id,
    is_event_id,
    is_platform,
)
from clout.schemas.rejection import InvalidEvent, Reason

SCHEMA_VERSION = 1
MAX_RECORD_BYTES = 64 * 1024
# 1990-01-01 .. 2100-01-01 UTC in ms. Seconds sent where ms are expected land in 1970 and fail here.
MIN_TS_MS = 631_152_000_000
MAX_TS_MS = 4_102_444_800_000

_REQUIRED_STR = ("event_id", "platform", "actor", "target", "kind")
# Which fields reach Redis keys or headers, and the rule each must meet (clout/schemas/ids.py).
_ID_RULES = {"event_id": (is_event_id, EVENT_ID_RULE), "platform": (is_platform, PLATFORM_RULE),
             "actor": (is_account_id, ACCOUNT_RULE), "target": (is_account_id, ACCOUNT_RULE)}
# `extra` is carried, not read: deeper nesting than this is refused, well inside what orjson can
# write back (254 levels), so a connector never fails re-serialising an event it accepted.
MAX_EXTRA_DEPTH = 32
_OPTIONAL_STR = ("content_id", "parent_id", "lang")


@dataclass(frozen=True, slots=True)
class InteractionEvent:
    """`actor` did `kind` to `target` at `ts` (event time, UTC epoch milliseconds)."""

    event_id: str
    ts: int
    platform: str
    actor: str
    target: str
    kind: str
    content_id: str | None = None
    parent_id: str | None = None
    lang: str | None = None
    extra: dict[str, Any] | None = field(default=None, hash=False, compare=True)
    v: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The wire form: optional fields that are unset are left out."""
        record: dict[str, Any] = {
            "v": self.v,
            "event_id": self.event_id,
            "ts": self.ts,
            "platform": self.platform,
            "actor": self.actor,
            "target": self.target,
            "kind": self.kind,
        }
        for name in (*_OPTIONAL_STR, "extra"):
            value = getattr(self, name)
            if value is not None:
                record[name] = value
        return record

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


def event_id_for(platform: str, native_id: str | None = None, record: bytes = b"", position: int = 0) -> str:
    """A stable id, so that a replayed record keeps its id and duplicates can be recognised.

    With the platform's own id for the interaction it is ``platform:native_id``. Without one it is
    a hash of the source record and its position in the source: identical lines at different
    positions (real datasets have them) stay distinct events.
    """
    if native_id:
        return f"{platform}:{native_id}"
    digest = hashlib.blake2b(record, digest_size=12, person=position.to_bytes(16, "big"))
    return f"{platform}:h{digest.hexdigest()}"


def parse_event(raw: bytes | str) -> InteractionEvent:
    """Decode and validate one wire record; raise InvalidEvent naming exactly what is wrong."""
    if len(raw) > MAX_RECORD_BYTES:
        raise InvalidEvent(Reason.TOO_LARGE, f"record is {len(raw)} bytes, limit {MAX_RECORD_BYTES}")
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(Reason.NOT_JSON, str(exc)) from None
    if not isinstance(record, dict):
        raise InvalidEvent(Reason.NOT_OBJECT, f"top level is {type(record).__name__}, expected an object")
    return event_from_dict(record)


def event_from_dict(record: dict[str, Any]) -> InteractionEvent:
    """Validate an already-decoded record (used by parse_event and by connectors)."""
    version = _version(record)
    values = {name: _required_str(record, name) for name in _REQUIRED_STR}
    if values["kind"] not in KINDS:
        raise InvalidEvent(Reason.UNKNOWN_KIND, f"kind {values['kind']!r} is not one of {sorted(KINDS)}")
    ts = _timestamp(record)
    optional = {name: _optional_str(record, name) for name in _OPTIONAL_STR}
    extra = record.get("extra")
    if extra is not None and not isinstance(extra, dict):
        raise InvalidEvent(Reason.WRONG_TYPE, f"field 'extra' is {type(extra).__name__}, expected an object")
    if extra and _too_deep(extra, MAX_EXTRA_DEPTH):
        raise InvalidEvent(Reason.TOO_DEEP, f"field 'extra' nests deeper than {MAX_EXTRA_DEPTH} levels")
    return InteractionEvent(ts=ts, extra=extra, v=version, **values, **optional)


def _version(record: dict[str, Any]) -> int:
    version = record.get("v")
    if version is None:
        raise InvalidEvent(Reason.MISSING_FIELD, "field 'v' is missing")
    if type(version) is not int:
        raise InvalidEvent(Reason.WRONG_TYPE, f"field 'v' is {type(version).__name__}, expected an integer")
    if version != SCHEMA_VERSION:
        raise InvalidEvent(Reason.UNSUPPORTED_VERSION, f"schema version {version} is not supported (this is v1)")
    return version


def _required_str(record: dict[str, Any], name: str) -> str:
    value = record.get(name)
    if value is None:
        raise InvalidEvent(Reason.MISSING_FIELD, f"field {name!r} is missing")
    if not isinstance(value, str):
        raise InvalidEvent(Reason.WRONG_TYPE, f"field {name!r} is {type(value).__name__}, expected a string")
    if not value.strip():
        raise InvalidEvent(Reason.EMPTY_ID, f"field {name!r} is empty")
    rule = _ID_RULES.get(name)
    if rule is not None and not rule[0](value):
        raise InvalidEvent(Reason.BAD_ID, f"field {name!r} {rule[1]} (got {_shown(value)})")
    return value


def _shown(value: str) -> str:
    """A bad value as it may appear in a DLQ header: escaped, so control characters stay visible, and short."""
    text = ascii(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _too_deep(value: Any, limit: int) -> bool:
    """Iterative (a hostile record must not exhaust the stack): does any container nest past `limit`?"""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                pending.append((child, depth + 1))
    return False


def _optional_str(record: dict[str, Any], name: str) -> str | None:
    value = record.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidEvent(Reason.WRONG_TYPE, f"field {name!r} is {type(value).__name__}, expected a string")
    return value


def _timestamp(record: dict[str, Any]) -> int:
    ts = record.get("ts")
    if ts is None:
        raise InvalidEvent(Reason.MISSING_FIELD, "field 'ts' is missing")
    if type(ts) is not int:
        raise InvalidEvent(Reason.WRONG_TYPE, f"field 'ts' is {type(ts).__name__}, expected integer milliseconds")
    if not MIN_TS_MS <= ts < MAX_TS_MS:
        raise InvalidEvent(
            Reason.TS_OUT_OF_RANGE, f"ts {ts} is outside 1990-01-01..2100-01-01 in epoch milliseconds"
        )
    return ts
