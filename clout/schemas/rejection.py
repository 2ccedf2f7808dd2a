"""Why a record was refused. The reason travels with the record to the dead-letter topic."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Rejection classes; the value is what lands in the DLQ header ``reason``."""

    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    UNKNOWN_KIND = "unknown_kind"
    TS_OUT_OF_RANGE = "ts_out_of_range"
    EMPTY_ID = "empty_id"
    BAD_ID = "bad_id"
    TOO_DEEP = "too_deep"
    TOO_LARGE = "too_large"
    UNSUPPORTED_VERSION = "unsupported_version"
    BAD_SOURCE_LINE = "bad_source_line"


class InvalidEvent(ValueError):
    """A record that is not a valid InteractionEvent; ``reason`` is its class, ``detail`` the specifics."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
