"""What the detectors say: a flag on one user in one window, and a coordination group.

Both serialise exactly as the Redis layout documents them (`clout/store/layout.py`, Flag JSON and
Group JSON), so the sink, the `flags` stream and the Kafka topic carry the same bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import orjson

# The detectors whose flags the pipeline writes for each window (the Redis layout's `flagged:<detector>`).
WINDOW_DETECTORS: tuple[str, ...] = ("burst", "bot", "lockstep", "microcluster")
ACCOUNT_DETECTOR = "account"  # the long-horizon account verdicts (clout/anomalies/verdicts.py)
DETECTORS: tuple[str, ...] = (*WINDOW_DETECTORS, ACCOUNT_DETECTOR)


def _unit(value: float, what: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{what} must lie in [0, 1], got {value}")
    return float(value)


@dataclass(frozen=True)
class Flag:
    """One detector's verdict on one user in one window, with the reasons a person can read."""

    user: str
    window: str
    detector: str
    score: float
    reasons: tuple[str, ...]
    evidence: Mapping[str, float] = field(default_factory=dict)
    group: str | None = None

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"unknown detector {self.detector!r}; one of {DETECTORS}")
        object.__setattr__(self, "score", _unit(self.score, "flag score"))
        object.__setattr__(self, "reasons", tuple(self.reasons))
        object.__setattr__(self, "evidence", MappingProxyType({k: float(v) for k, v in self.evidence.items()}))

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled with its evidence as a plain dict (flags travel between pipeline steps)."""
        return Flag, (self.user, self.window, self.detector, self.score, self.reasons, dict(self.evidence), self.group)

    def to_dict(self) -> dict[str, Any]:
        return {"user": self.user, "window": self.window, "detector": self.detector, "score": self.score,
                "reasons": list(self.reasons), "evidence": dict(self.evidence), "group": self.group}

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


@dataclass(frozen=True)
class Group:
    """Accounts that acted together on the same targets (lockstep); `synchrony` is how tightly."""

    id: str
    window: str
    members: tuple[str, ...]
    targets: tuple[str, ...]
    synchrony: float
    score: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", tuple(sorted(self.members)))
        object.__setattr__(self, "targets", tuple(sorted(self.targets)))
        object.__setattr__(self, "synchrony", _unit(self.synchrony, "synchrony"))
        object.__setattr__(self, "score", _unit(self.score, "group score"))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "window": self.window, "members": list(self.members), "targets": list(self.targets),
                "synchrony": self.synchrony, "score": self.score}

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


def group_id(window: str, members: Iterable[str]) -> str:
    """Deterministic id: the same members in the same window always get the same id, on any worker."""
    text = window + "\x1f" + "\x1f".join(sorted(members))
    return "g" + hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
