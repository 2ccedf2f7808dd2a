"""Caches of values derived from keyed Beam state, valid only while they match the state exactly.

Beam state is the truth: a key's parts are appended to a bag, and anything derived from them (running
totals, a window's events) can always be rebuilt by reading the bag. Reading it for every element
would cost a round trip each time on Prism (no cache tokens), and folding all parts again for every
element is quadratic; so a process keeps what it derived, together with the *receipts* it has seen:
the count and XOR of the digests of the parts it folded. Every part appended to state also appends
its digest to a small receipts bag. Before a cached value is used, the key's receipts bag is read
and compared: equal means the cache has folded exactly the parts the state holds; anything else (a
runner moved the key to another worker and back, a bundle failed after the cache folded its parts,
a new process) means the value is rebuilt from the parts bag. No correctness rests on one process
holding a key.

Prism may run a timer and a bundle of one key on two threads; each key's entry carries a lock that
every user of the entry holds. Prism runs every Python transform in one worker process for the job's
whole life, and under that concurrency its reads of a key's bags are not consistent between threads
(seen here: after a clear, one thread reads the bag cleared and another still reads it whole, for
the rest of the run). So on a runner with one worker process (`single_worker`), the process's copy
is complete by construction and is used without reading the receipts; state is read only to build
the copy the first time. On every other runner the receipts are checked before every use.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_REGISTRY: dict[str, StateCache[Any]] = {}
_REGISTRY_LOCK = threading.Lock()


def digest(part_id: Hashable) -> int:
    """A 63-bit digest of a part id, the same in every process (Python's hash() is salted)."""
    return int.from_bytes(hashlib.blake2b(repr(part_id).encode(), digest_size=8).digest(), "little") >> 1


@dataclass(frozen=True)
class Receipts:
    """How many parts a key's state holds and the XOR of their digests."""

    count: int = 0
    xor: int = 0

    @classmethod
    def of(cls, digests: Iterable[int]) -> Receipts:
        count = xor = 0
        for d in digests:
            count += 1
            xor ^= d
        return cls(count, xor)

    def plus(self, part_digest: int) -> Receipts:
        return Receipts(self.count + 1, self.xor ^ part_digest)


@dataclass
class Entry(Generic[T]):
    """One key's cached value and the receipts it was derived from."""

    value: T
    receipts: Receipts
    lock: threading.Lock = field(default_factory=threading.Lock)


class StateCache(Generic[T]):
    """A bounded, process-wide cache of one transform's derived values, by state key."""

    def __init__(self, max_keys: int, single_worker: bool) -> None:
        self.max_keys = max_keys
        self.single_worker = single_worker
        self._entries: OrderedDict[Hashable, Entry[T]] = OrderedDict()
        self._ever: set[Hashable] = set()  # keys this process has held (single worker: the others' state is empty)
        self._lock = threading.Lock()
        self.write_lock = threading.Lock()  # for callers whose writes of one key must not cross
        self.rebuilds = 0

    @contextmanager
    def holding(self, key: Hashable, stored: Callable[[], Receipts], rebuild: Callable[[], T],
                empty: Callable[[], T] | None = None) -> Iterator[Entry[T]]:
        """The key's entry, locked, rebuilt from state first unless it was derived from exactly the
        receipts `stored()` reads (with `single_worker`, unless it exists). Whoever changes the value
        updates `entry.receipts` to match what it appended. With `single_worker` and `empty`, a key the
        process never held starts as `empty()` without reading state: in a runner with one worker
        process for the job's life, no one else can have written it."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = Entry(None, Receipts(-1, 0))  # type: ignore[arg-type]
                if self.single_worker and empty is not None and key not in self._ever:
                    entry.value, entry.receipts = empty(), Receipts()
                self._ever.add(key)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_keys:
                self._entries.popitem(last=False)
        with entry.lock:
            if entry.value is None or not self.single_worker:
                receipts = stored()
                if entry.receipts != receipts:
                    entry.value, entry.receipts = rebuild(), receipts
                    self.rebuilds += 1
            yield entry

    def drop(self, key: Hashable) -> None:
        """Forget the key's entry (its state was cleared for good)."""
        with self._lock:
            self._entries.pop(key, None)

    def peek(self, key: Hashable) -> Entry[T] | None:
        """The key's entry as it is (for a bundle's end, where state cannot be read); lock it to use it."""
        with self._lock:
            return self._entries.get(key)


def cache_for(token: str, single_worker: bool, max_keys: int = 50_000) -> StateCache[Any]:
    """The process's cache for the transform named by `token` (made when the pipeline is built),
    shared by every instance of its DoFn in the process."""
    with _REGISTRY_LOCK:
        cache = _REGISTRY.get(token)
        if cache is None:
            cache = _REGISTRY[token] = StateCache(max_keys, single_worker)
        return cache
