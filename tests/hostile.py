"""The hostile records of issue 13, each with what must become of it: a clean event (None) or a reason.

Shared by the decoder's tests (tests/schemas) and the connectors' and pipeline's (tests/connectors).
"""

from __future__ import annotations

import re

import orjson

from clout.schemas import MAX_RECORD_BYTES, Reason
from clout.schemas.event import MAX_TS_MS, MIN_TS_MS

GOOD = {"v": 1, "event_id": "h:1", "ts": 1_700_000_000_000, "platform": "hostile", "actor": "a", "target": "b",
        "kind": "repost"}


def record(n: int, **changes: object) -> bytes:
    """A valid record with its own event id (so duplicates never hide a case), changed as given."""
    return orjson.dumps({**GOOD, "event_id": f"h:{n}", **changes})


def _sized(n: int, size: int) -> bytes:
    """A valid record of exactly `size` bytes (padding in `extra`)."""
    base = record(n, extra={"pad": ""})
    return record(n, extra={"pad": "x" * (size - len(base))})


def _nested(depth: int) -> object:
    """`depth` - 1 objects around a number: as `extra["d"]`, `extra` nests `depth` objects deep."""
    value: object = 1
    for _ in range(depth - 1):
        value = {"d": value}
    return value


def _raw_with(field: str, raw_value: bytes, n: int) -> bytes:
    """A record whose `field` is the given raw JSON bytes (what orjson would never write itself)."""
    marker = b'"@@MARK@@"'
    return record(n, **{field: "@@MARK@@"}).replace(marker, raw_value)


# (name, raw record, expected reason or None for a clean event)
CASES: list[tuple[str, bytes, Reason | None]] = [
    ("invalid utf-8 in actor", _raw_with("actor", b'"\xff\xfe"', 1), Reason.NOT_JSON),
    ("invalid utf-8 overlong", _raw_with("target", b'"\xc0\xaf"', 2), Reason.NOT_JSON),
    ("lone surrogate escape", _raw_with("actor", b'"\\ud800"', 3), Reason.NOT_JSON),
    ("NaN ts", _raw_with("ts", b"NaN", 4), Reason.NOT_JSON),
    ("Infinity ts", _raw_with("ts", b"Infinity", 5), Reason.NOT_JSON),
    ("-Infinity ts", _raw_with("ts", b"-Infinity", 6), Reason.NOT_JSON),
    ("1e400 ts", _raw_with("ts", b"1e400", 7), Reason.NOT_JSON),
    ("ts 2^63", _raw_with("ts", str(2**63).encode(), 8), Reason.TS_OUT_OF_RANGE),
    ("ts 2^64 - 1", _raw_with("ts", str(2**64 - 1).encode(), 9), Reason.TS_OUT_OF_RANGE),
    # orjson reads integers beyond 64 bits as floats: refused as not integer milliseconds.
    ("ts 2^64", _raw_with("ts", str(2**64).encode(), 10), Reason.WRONG_TYPE),
    ("ts -2^63 - 1", _raw_with("ts", str(-(2**63) - 1).encode(), 11), Reason.WRONG_TYPE),
    ("v 2^70", _raw_with("v", str(2**70).encode(), 12), Reason.WRONG_TYPE),
    ("ts 10^400", _raw_with("ts", b"1" + b"0" * 400, 76), Reason.NOT_JSON),  # infinite as a double
    ("extra 2^63 kept", record(13, extra={"n": 2**63}), None),
    ("extra nested 32", record(14, extra={"d": _nested(32)}), None),
    ("extra nested 33", record(15, extra={"d": _nested(33)}), Reason.TOO_DEEP),
    ("extra nested 200", record(16, extra={"d": _nested(199)}), Reason.TOO_DEEP),
    ("nested 5000 (parser limit)", b"[" * 5000 + b"]" * 5000, Reason.NOT_JSON),
    ("64 KiB - 1", _sized(17, MAX_RECORD_BYTES - 1), None),
    ("64 KiB", _sized(18, MAX_RECORD_BYTES), None),
    ("64 KiB + 1", _sized(19, MAX_RECORD_BYTES + 1), Reason.TOO_LARGE),
    ("colon in ids", record(20, actor="did:plc:abc", target="a:b:c"), None),
    ("unicode ids", record(21, actor="\u00e9l\u00e8ve", target="\U0001f600"), None),
    ("128-character id", record(22, actor="a" * 128), None),
    ("129-character id", record(23, actor="a" * 129), Reason.BAD_ID),
    *[(f"{char!r} in actor", record(30 + i, actor=f"x{char}y"), Reason.BAD_ID)
      for i, char in enumerate("{}*?[]\\")],
    *[(f"{char!r} in target", record(40 + i, target=f"{char}t"), Reason.BAD_ID)
      for i, char in enumerate("{}*?[]\\")],
    *[(f"control {ord(char):#x} in actor", record(50 + i, actor=f"a{char}"), Reason.BAD_ID)
      for i, char in enumerate("\x00\x01\x07\x1b\x1f\x7f\x85\x9f")],
    ("newline at end of actor", record(60, actor="a\n"), Reason.BAD_ID),
    ("space in target", record(61, target="a b"), Reason.BAD_ID),
    ("line separator in actor", record(62, actor="a\u2028b"), Reason.BAD_ID),
    ("braces in platform", record(63, platform="p{x}"), Reason.BAD_ID),
    ("colon in platform (per-instance)", record(64, platform="mastodon:example.social"), None),
    ("control in event id", record(65, event_id="h:\x00"), Reason.BAD_ID),
    ("braces in event id kept", record(66, event_id="h:{66}*"), None),
    ("ts 0", record(67, ts=0), Reason.TS_OUT_OF_RANGE),
    ("ts negative", record(68, ts=-1), Reason.TS_OUT_OF_RANGE),
    ("ts in seconds", record(69, ts=1_700_000_000), Reason.TS_OUT_OF_RANGE),
    ("ts 1990-01-01", record(70, ts=MIN_TS_MS), None),
    ("ts just before 1990", record(71, ts=MIN_TS_MS - 1), Reason.TS_OUT_OF_RANGE),
    ("ts just before 2100", record(72, ts=MAX_TS_MS - 1), None),
    ("ts 2100-01-01", record(73, ts=MAX_TS_MS), Reason.TS_OUT_OF_RANGE),
    ("ts as float", record(74, ts=1.7e12), Reason.WRONG_TYPE),
    ("ts as bool", record(75, ts=True), Reason.WRONG_TYPE),
]

# Every key the layout (clout/store/layout.py) can form, for a prefix; ids inside hash tags obey the
# account rule, window ids are `<start>-<end>`.
_ACCOUNT_TAG = r"\{[^\s{}*?\[\]\\\x00-\x1f\x7f-\x9f]{1,128}\}"
_WINDOW_KEYS = (r"activity|lb:received|lb:engagers|lb:score|lb:score:platform:[A-Za-z0-9_.:\-]{1,64}|lb:clean|"
                r"influence|meta|flagged|flagged:(?:burst|bot|lockstep|microcluster|account)|groups")


def layout_key(prefix: str) -> re.Pattern[str]:
    return re.compile(
        rf"{re.escape(prefix)}:v1:(?:windows|scored|flags:stream|progress:\{{[^{{}}]+\}}"
        rf"|accounts:\{{[^{{}}]+\}}:[0-9]{{1,6}}:[0-9]{{1,6}}"
        rf"|announced:\{{{re.escape(prefix)}:v1:flags:stream\}}:[0-9]{{1,12}}-[0-9]{{1,12}}"
        rf"|win:\{{[0-9]{{1,12}}-[0-9]{{1,12}}\}}:(?:{_WINDOW_KEYS})"
        rf"|user:{_ACCOUNT_TAG}:(?:latest|history|flags)|group:{_ACCOUNT_TAG})")
