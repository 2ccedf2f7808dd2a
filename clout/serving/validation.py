"""What a caller may name: user, group, window, platform, detector and board ids that map onto layout v1.

The account and platform rules are the event contract's (clout/schemas/ids.py): whatever the
pipeline accepted can be asked for, and nothing else. Every id reaches a Redis key, so a malformed
one must stop here: curly braces would move a key to another Cluster slot or out of its hash tag,
glob characters and control characters have no place in a key, and `$`-anchored regexes let a
trailing newline through (hence `fullmatch`). The patterns are shared with the API's parameter
declarations, so the OpenAPI document shows the same rules.
"""

from __future__ import annotations

import re
from typing import Literal

from clout.anomalies.flag import DETECTORS as _DETECTORS
from clout.schemas.ids import ACCOUNT_ID as _ID
from clout.schemas.ids import ACCOUNT_RULE as ID_RULE
from clout.schemas.ids import MAX_ID_LENGTH as MAX_ID_LENGTH  # re-exported: the routes declare it
from clout.schemas.ids import PLATFORM as _PLATFORM
from clout.schemas.ids import PLATFORM_RULE, is_account_id

LATEST = "latest"
_WINDOW = r"[0-9]{1,12}-[0-9]{1,12}"

ID_PATTERN = f"^{_ID}$"
WINDOW_PATTERN = f"^{_WINDOW}$"
WINDOW_REF_PATTERN = f"^(?:{LATEST}|{_WINDOW})$"
PLATFORM_PATTERN = f"^{_PLATFORM}$"

WINDOW_RULE = "must be a window id <start>-<end> in epoch seconds"
RULES = {"user": ID_RULE, "group": ID_RULE, "window": f"{WINDOW_RULE} or 'latest'", "platform": PLATFORM_RULE}

DETECTORS: tuple[str, ...] = _DETECTORS  # what Redis holds per window (the account verdicts among them)
Detector = Literal[_DETECTORS]  # type: ignore[valid-type]
Board = Literal["score", "clean", "received", "engagers"]
BOARDS: tuple[str, ...] = ("score", "clean", "received", "engagers")


class InvalidInput(ValueError):
    """A caller's id or parameter that does not name anything in the layout; the message says why."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


def check_id(value: str, where: str = "id") -> str:
    """A user or group id that is safe inside a `{...}` hash tag."""
    if not isinstance(value, str) or not is_account_id(value):
        raise InvalidInput(where, ID_RULE)
    return value


def check_window(value: str, where: str = "window", allow_latest: bool = True) -> str:
    """A window id `<start>-<end>` in epoch seconds, or the alias `latest`.

    The OpenAPI document can only state the pattern, so a well-formed id with start >= end is not
    refused here (that would be a 422 the document does not predict): it names no window, and the
    read answers 404 like any other window that does not exist.
    """
    if allow_latest and value == LATEST:
        return value
    if not isinstance(value, str) or not re.fullmatch(_WINDOW, value):
        raise InvalidInput(where, WINDOW_RULE + (" or 'latest'" if allow_latest else ""))
    return value


def check_platform(value: str | None, where: str = "platform") -> str | None:
    if value is not None and not re.fullmatch(_PLATFORM, value):
        raise InvalidInput(where, PLATFORM_RULE)
    return value


def check_choice(value: str | None, choices: tuple[str, ...], where: str) -> str | None:
    if value is not None and value not in choices:
        raise InvalidInput(where, f"must be one of {', '.join(choices)}")
    return value


def check_page(offset: int, limit: int, max_limit: int = 500, max_offset: int = 1_000_000) -> None:
    if not 1 <= limit <= max_limit:
        raise InvalidInput("limit", f"must be between 1 and {max_limit}")
    if not 0 <= offset <= max_offset:
        raise InvalidInput("offset", f"must be between 0 and {max_offset}")
