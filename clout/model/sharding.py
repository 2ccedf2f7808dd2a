"""Stable hashing and sharding: the same account lands on the same shard in every process and run
(Python's hash() is salted per process)."""

from __future__ import annotations

import hashlib
import zlib

import numpy as np


def shard_of(user: str, shards: int) -> int:
    """Stable across processes and runs (unlike hash()), so a user's shard never moves."""
    return zlib.crc32(user.encode()) % shards


def stable_hash64(text: str, seed: int = 0) -> int:
    """A 64-bit hash that is the same in every process."""
    digest = hashlib.blake2b(text.encode(), digest_size=8, key=seed.to_bytes(8, "little")).digest()
    return int.from_bytes(digest, "little")


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads structured integers (ids, bucket numbers) over all 64 bits."""
    with np.errstate(over="ignore"):
        x = x.astype(np.uint64)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))
