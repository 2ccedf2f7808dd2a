"""One slice of events as numpy columns: what the long-horizon detectors take, one 15-minute slice at a time.

Why columns: the pipeline's v2 batches are columnar already, and every per-account update here is a
handful of numpy group-bys over a slice, not a Python loop over events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from clout.model.events import Event
from clout.model.sharding import shard_of


@dataclass(frozen=True)
class SliceColumns:
    """Events of one slice: `actor` and `target` are int codes into `names` (any superset of the
    slice's accounts: the pipeline's batch dictionary will do); `kind` codes from clout.model.kinds."""

    ts: np.ndarray  # int64 ms
    actor: np.ndarray  # int codes into names
    target: np.ndarray
    kind: np.ndarray  # int8
    names: Sequence[str]

    def __len__(self) -> int:
        return len(self.ts)

    @classmethod
    def of(cls, events: Sequence[Event]) -> SliceColumns:
        """From Event tuples (tests, and callers still on the v1 event list)."""
        codes: dict[str, int] = {}
        n = len(events)
        actor = np.fromiter((codes.setdefault(e.actor, len(codes)) for e in events), dtype=np.int64, count=n)
        target = np.fromiter((codes.setdefault(e.target, len(codes)) for e in events), dtype=np.int64, count=n)
        ts = np.fromiter((e.ts for e in events), dtype=np.int64, count=n)
        kind = np.fromiter((e.kind for e in events), dtype=np.int8, count=n)
        return cls(ts, actor, target, kind, list(codes))

    def take(self, rows: np.ndarray) -> SliceColumns:
        return SliceColumns(self.ts[rows], self.actor[rows], self.target[rows], self.kind[rows], self.names)


def shards_of_codes(names: Sequence[str], codes: np.ndarray, shards: int) -> np.ndarray:
    """Shard (clout.model.sharding.shard_of) of each code, hashing each distinct name once."""
    unique, inverse = np.unique(codes, return_inverse=True)
    per = np.fromiter((shard_of(names[int(c)], shards) for c in unique), dtype=np.int64, count=len(unique))
    return per[inverse]
