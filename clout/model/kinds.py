"""Interaction kinds, defined once. The order is the kinds' code in columnar batches and aggregates."""

from __future__ import annotations

KIND_ORDER: tuple[str, ...] = ("follow", "mention", "reply", "repost", "quote", "like", "message")
KINDS: frozenset[str] = frozenset(KIND_ORDER)
KIND_INDEX: dict[str, int] = {kind: i for i, kind in enumerate(KIND_ORDER)}
N_KINDS = len(KIND_ORDER)
