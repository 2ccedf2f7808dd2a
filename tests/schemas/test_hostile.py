"""Hostile records: each is a clean event or a rejection with its reason, and an accepted id always
forms layout keys whose hash tag is exactly that id."""

from __future__ import annotations

import pytest
from hostile import CASES, layout_key
from hypothesis import given
from hypothesis import strategies as st

from clout.schemas import InvalidEvent, parse_event
from clout.schemas.ids import is_account_id
from clout.store.layout import KeyLayout

LAYOUT = KeyLayout("clout")
KEY = layout_key("clout")


@pytest.mark.parametrize(("raw", "reason"), [(raw, reason) for _name, raw, reason in CASES],
                         ids=[name for name, _raw, _reason in CASES])
def test_hostile_record_is_a_clean_event_or_a_reasoned_rejection(raw: bytes, reason) -> None:
    if reason is None:
        event = parse_event(raw)
        assert parse_event(event.to_json()) == event  # what a connector re-serialises decodes the same
        for user in (event.actor, event.target):
            assert_keys_keep_the_id(user)
        return
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    assert caught.value.reason is reason
    assert caught.value.detail.isprintable(), "a reason's detail goes into a DLQ header as is"


def assert_keys_keep_the_id(user: str) -> None:
    for key in (LAYOUT.user_latest(user), LAYOUT.user_history(user), LAYOUT.user_flags(user)):
        assert KEY.fullmatch(key), key
        assert key[key.index("{") + 1:key.index("}")] == user  # the hash tag is the whole id


@given(st.text(max_size=140))
def test_any_accepted_account_id_makes_layout_keys(user: str) -> None:
    if is_account_id(user):
        assert_keys_keep_the_id(user)
    else:
        assert not user or any(not c.isprintable() or c in "{}*?[]\\" or c.isspace() for c in user) or len(user) > 128
