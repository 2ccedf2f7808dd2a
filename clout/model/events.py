"""The pipeline's compact event: what aggregates, influence and detectors need of an InteractionEvent."""

from __future__ import annotations

from typing import NamedTuple


class Event(NamedTuple):
    """One interaction; cheap to pickle in batches."""

    ts: int
    actor: str
    target: str
    kind: int  # index into clout.model.kinds.KIND_ORDER
    platform: str = ""
