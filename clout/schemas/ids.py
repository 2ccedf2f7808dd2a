"""What an id may contain: the one rule for accounts and platforms, shared by the decoder and the read API.

Account ids (`actor`, `target`) end up inside Redis keys as hash tags (`clout:v1:user:{<user>}:latest`)
and as members of leaderboards; platforms end up in key names (`...:lb:score:platform:<platform>`).
They are constrained, never escaped: an escaped id would differ from the one a reader asks for, and
every reader (API, client, dashboard) would have to know the escape. So an event whose id breaks the
rule is dead-lettered (reason `bad_id`) and never reaches Redis:

- accounts: 1..128 characters; no whitespace, no control characters (C0, DEL, C1), no lone
  surrogates (what undecodable bytes become), and none of ``{ } * ? [ ] \\``: braces would move or
  split a key's Redis Cluster hash tag, glob characters would turn a reader's SCAN/KEYS pattern into
  a wildcard, a backslash escapes inside such patterns. ``:`` is allowed (Bluesky DIDs, `platform:id`):
  inside `{...}` it is plain text and the layout is never parsed back from keys.
- platforms: 1..64 of ``A-Z a-z 0-9 _ . : -``, since they are not inside a hash tag (``:`` for
  per-instance platforms such as ``mastodon:mastodon.social``).
- event ids never reach a key (de-duplication keeps them in memory); they must be 1..512
  characters without control characters or lone surrogates, so headers and DLQ records stay printable.
"""

from __future__ import annotations

import re

MAX_ID_LENGTH = 128
MAX_PLATFORM_LENGTH = 64
MAX_EVENT_ID_LENGTH = 512

# The patterns are portable (pydantic's Rust regex, JSON Schema); lone surrogates, which only
# Python's surrogateescape can produce from undecodable bytes, are refused by the checks below.
_CONTROLS = r"\x00-\x1f\x7f-\x9f"
ACCOUNT_ID = rf"[^\s{{}}*?\[\]\\{_CONTROLS}]{{1,{MAX_ID_LENGTH}}}"
PLATFORM = rf"[A-Za-z0-9_.:\-]{{1,{MAX_PLATFORM_LENGTH}}}"
EVENT_ID = rf"[^{_CONTROLS}]{{1,{MAX_EVENT_ID_LENGTH}}}"

ACCOUNT_RULE = (f"must be 1..{MAX_ID_LENGTH} characters without whitespace, control characters, curly braces, "
                "backslash or glob characters (* ? [ ])")
PLATFORM_RULE = f"must be 1..{MAX_PLATFORM_LENGTH} characters of A-Z a-z 0-9 _ . : -"
EVENT_ID_RULE = f"must be 1..{MAX_EVENT_ID_LENGTH} characters without control characters"

_ACCOUNT = re.compile(ACCOUNT_ID)
_PLATFORM = re.compile(PLATFORM)
_EVENT_ID = re.compile(EVENT_ID)
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _clean(value: str) -> bool:
    return value.isascii() or _SURROGATE.search(value) is None


def is_account_id(value: str) -> bool:
    """`fullmatch`, not `$`: a `$`-anchored pattern lets a trailing newline through."""
    return _ACCOUNT.fullmatch(value) is not None and _clean(value)


def is_platform(value: str) -> bool:
    return _PLATFORM.fullmatch(value) is not None


def is_event_id(value: str) -> bool:
    return _EVENT_ID.fullmatch(value) is not None and _clean(value)
