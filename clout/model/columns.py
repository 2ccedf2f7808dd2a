"""Events as columns: how events travel through the pipeline, in batches, never one object each.

Accounts are interned per batch: `actor` and `target` are codes into `names`, platforms are codes
into `platforms`. Codes mean nothing outside their batch; `concat` re-interns, so batches from
different workers merge into one canonical batch (names sorted), whatever order they come in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from clout.model.events import Event


@dataclass(frozen=True, eq=False)
class EventColumns:
    """One batch of events. Row i is the event (ts[i], names[actor[i]], names[target[i]], kind[i],
    platforms[platform[i]])."""

    ts: np.ndarray  # int64, event time in ms
    actor: np.ndarray  # int32 codes into names
    target: np.ndarray  # int32 codes into names
    kind: np.ndarray  # int8 codes into clout.model.kinds.KIND_ORDER
    platform: np.ndarray  # int16 codes into platforms
    names: Sequence[str]
    platforms: Sequence[str] = ("",)

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def nbytes(self) -> int:
        arrays = (self.ts, self.actor, self.target, self.kind, self.platform)
        return sum(a.nbytes for a in arrays) + sum(len(n) + 49 for n in self.names)

    def take(self, rows: np.ndarray, compact: bool = False) -> EventColumns:
        """The events at `rows` (indices or a boolean mask); with `compact`, only the names they use
        travel with them (worth it before a batch is shipped or stored, not for a local look)."""
        picked = EventColumns(self.ts[rows], self.actor[rows], self.target[rows], self.kind[rows],
                              self.platform[rows], self.names, self.platforms)
        return picked.compact() if compact else picked

    def compact(self) -> EventColumns:
        """The same events with `names` cut down to the accounts they mention, sorted."""
        return concat([self])

    def events(self) -> list[Event]:
        """As Event tuples, for code that wants rows (tests, reports)."""
        names, platforms = self.names, self.platforms
        return [Event(t, names[a], names[b], k, platforms[p]) for t, a, b, k, p in zip(
            self.ts.tolist(), self.actor.tolist(), self.target.tolist(), self.kind.tolist(),
            self.platform.tolist(), strict=True)]

    def actor_names(self) -> np.ndarray:
        return np.asarray(self.names, dtype=object)[self.actor]

    def target_names(self) -> np.ndarray:
        return np.asarray(self.names, dtype=object)[self.target]


def empty() -> EventColumns:
    return EventColumns(np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32),
                        np.zeros(0, np.int8), np.zeros(0, np.int16), [], [""])


def from_events(events: Iterable[Event]) -> EventColumns:
    """Columns of Event tuples (tests, the evaluation's replays, file readers)."""
    rows = list(events)
    if not rows:
        return empty()
    ts, actors, targets, kinds, platforms = zip(*rows, strict=True)
    names, codes = np.unique(np.asarray(actors + targets, dtype=object), return_inverse=True)
    platform_names, platform_codes = np.unique(np.asarray(platforms, dtype=object), return_inverse=True)
    n = len(rows)
    return EventColumns(np.asarray(ts, np.int64), codes[:n].astype(np.int32), codes[n:].astype(np.int32),
                        np.asarray(kinds, np.int8), platform_codes.astype(np.int16), names.tolist(),
                        platform_names.tolist())


def concat(parts: Sequence[EventColumns]) -> EventColumns:
    """One batch of all the parts' events, names and platforms re-interned (sorted, used only)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty()
    names, actor, target = _reinterned([(p.names, p.actor, p.target) for p in parts])
    platforms, platform, _ = _reinterned([(p.platforms, p.platform, p.platform) for p in parts])
    return EventColumns(np.concatenate([p.ts for p in parts]), actor.astype(np.int32), target.astype(np.int32),
                        np.concatenate([p.kind for p in parts]), platform.astype(np.int16), names, platforms)


def _reinterned(parts: list[tuple[Sequence[str], np.ndarray, np.ndarray]]
                ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Codes of every part mapped into one sorted vocabulary of the names they use."""
    used_names, firsts, seconds = [], [], []
    for vocab, a, b in parts:
        used, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
        used_names.append(np.asarray(vocab, dtype=object)[used])
        firsts.append(inverse[:len(a)])
        seconds.append(inverse[len(a):])
    offsets = np.cumsum([0] + [len(u) for u in used_names[:-1]])
    vocab, code = np.unique(np.concatenate(used_names), return_inverse=True)
    first = np.concatenate([code[f + o] for f, o in zip(firsts, offsets, strict=True)])
    second = np.concatenate([code[s + o] for s, o in zip(seconds, offsets, strict=True)])
    return vocab.tolist(), first, second


def canonical(events: EventColumns) -> EventColumns:
    """Rows sorted by (ts, actor, target, kind, platform): the same events give the same columns in
    the same order, so every floating-point result is the same bit for bit."""
    if len(events) < 2:
        return events
    order = np.lexsort((events.platform, events.kind, events.target, events.actor, events.ts))
    return EventColumns(events.ts[order], events.actor[order], events.target[order], events.kind[order],
                        events.platform[order], events.names, events.platforms)
