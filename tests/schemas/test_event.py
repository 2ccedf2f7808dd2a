"""The event contract: round trips, and a precise reason for every way a record can be wrong."""

from __future__ import annotations

import json
from importlib import resources

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clout.schemas import KINDS, MAX_RECORD_BYTES, InteractionEvent, InvalidEvent, Reason, event_id_for, parse_event
from clout.schemas.event import MAX_TS_MS, MIN_TS_MS
from clout.schemas.ids import ACCOUNT_ID, EVENT_ID, PLATFORM

# Ids as the contract allows them (clout/schemas/ids.py); optional fields are any non-blank text.
ids = st.text(min_size=1, max_size=40).filter(lambda s: s.strip())
accounts = st.from_regex(ACCOUNT_ID, fullmatch=True)
platforms = st.from_regex(PLATFORM, fullmatch=True)
event_ids = st.from_regex(EVENT_ID, fullmatch=True).filter(lambda s: s.strip())
INT64 = st.integers(-(2**63), 2**63 - 1)  # the integers orjson can write
events = st.builds(
    InteractionEvent,
    event_id=event_ids, ts=st.integers(MIN_TS_MS, MAX_TS_MS - 1), platform=platforms, actor=accounts,
    target=accounts,
    kind=st.sampled_from(sorted(KINDS)), content_id=st.none() | ids, parent_id=st.none() | ids,
    lang=st.none() | st.sampled_from(["en", "fr", "ja"]),
    extra=st.none() | st.dictionaries(st.text(max_size=8), INT64 | st.text(max_size=8), max_size=3),
)
GOOD = {"v": 1, "event_id": "x:1", "ts": 1_341_100_972_000, "platform": "x", "actor": "a", "target": "b",
        "kind": "repost"}


@given(events)
def test_round_trip(event: InteractionEvent) -> None:
    assert parse_event(event.to_json()) == event


@given(events, st.dictionaries(st.text(min_size=1, max_size=8).map(lambda k: f"new_{k}"), INT64, max_size=3))
def test_unknown_optional_fields_are_tolerated(event: InteractionEvent, unknown: dict) -> None:
    assert parse_event(orjson.dumps({**event.to_dict(), **unknown})) == event


@pytest.mark.parametrize(("raw", "reason"), [
    (b"{not json", Reason.NOT_JSON),
    (b"", Reason.NOT_JSON),
    (b"[1, 2]", Reason.NOT_OBJECT),
    (orjson.dumps({k: v for k, v in GOOD.items() if k != "actor"}), Reason.MISSING_FIELD),
    (orjson.dumps({**GOOD, "actor": 12}), Reason.WRONG_TYPE),
    (orjson.dumps({**GOOD, "ts": "yesterday"}), Reason.WRONG_TYPE),
    (orjson.dumps({**GOOD, "ts": 1.5e12}), Reason.WRONG_TYPE),
    (orjson.dumps({**GOOD, "kind": "poke"}), Reason.UNKNOWN_KIND),
    (orjson.dumps({**GOOD, "ts": 1_341_100_972}), Reason.TS_OUT_OF_RANGE),
    (orjson.dumps({**GOOD, "ts": 5_000_000_000_000}), Reason.TS_OUT_OF_RANGE),
    (orjson.dumps({**GOOD, "target": "  "}), Reason.EMPTY_ID),
    (orjson.dumps({**GOOD, "event_id": ""}), Reason.EMPTY_ID),
    (orjson.dumps({**GOOD, "v": 2}), Reason.UNSUPPORTED_VERSION),
    (orjson.dumps({**GOOD, "extra": [1]}), Reason.WRONG_TYPE),
    (orjson.dumps({**GOOD, "extra": {"pad": "x" * MAX_RECORD_BYTES}}), Reason.TOO_LARGE),
])
def test_each_rejection_names_its_reason(raw: bytes, reason: Reason) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    assert caught.value.reason is reason
    assert caught.value.detail


@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_valid_or_rejected_with_a_reason(raw: bytes) -> None:
    try:
        event = parse_event(raw)
    except InvalidEvent as error:
        assert error.reason in Reason
    else:
        assert event.kind in KINDS


def test_event_ids_are_stable_and_position_sensitive() -> None:
    assert event_id_for("x", native_id="42") == "x:42"
    line = b"1 2 1341100972 RT"
    assert event_id_for("x", record=line, position=3) == event_id_for("x", record=line, position=3)
    assert event_id_for("x", record=line, position=3) != event_id_for("x", record=line, position=4)


def test_json_schema_file_describes_the_same_contract() -> None:
    schema = json.loads(resources.files("clout.schemas").joinpath("interaction_event.v1.json").read_text())
    assert set(schema["required"]) == {"v", "event_id", "ts", "platform", "actor", "target", "kind"}
    assert set(schema["properties"]["kind"]["enum"]) == KINDS
    assert schema["properties"]["ts"]["minimum"] == MIN_TS_MS
    assert schema["properties"]["ts"]["exclusiveMaximum"] == MAX_TS_MS
    for name, rule in {"actor": ACCOUNT_ID, "target": ACCOUNT_ID, "platform": PLATFORM, "event_id": EVENT_ID}.items():
        assert schema["properties"][name]["pattern"] == f"^{rule}$", name
