"""The contracts: the InteractionEvent wire format and the Redis key layout readers rely on."""

from clout.model.kinds import KINDS
from clout.schemas.event import (
    MAX_RECORD_BYTES,
    SCHEMA_VERSION,
    InteractionEvent,
    event_from_dict,
    event_id_for,
    parse_event,
)
from clout.schemas.rejection import InvalidEvent, Reason

__all__ = [
    "KINDS",
    "MAX_RECORD_BYTES",
    "SCHEMA_VERSION",
    "InteractionEvent",
    "InvalidEvent",
    "Reason",
    "event_from_dict",
    "event_id_for",
    "parse_event",
]
