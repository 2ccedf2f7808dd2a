"""The per-process copies of keyed state: used only while they match the state's receipts (or, on a
single-worker runner, once built), rebuilt from state otherwise."""

from __future__ import annotations

from clout.pipelines.state_cache import Receipts, StateCache, digest


def test_receipts_are_order_free_and_name_the_parts() -> None:
    parts = [digest(("t", 0, n)) for n in range(5)]
    assert Receipts.of(parts) == Receipts.of(reversed(parts))
    assert Receipts.of(parts[:4]).plus(parts[4]) == Receipts.of(parts)
    assert Receipts.of(parts[:4]) != Receipts.of(parts[1:])
    assert digest(("t", 0, 1)) == digest(("t", 0, 1)) != digest(("t", 0, 2))


def test_a_copy_that_differs_from_state_is_rebuilt() -> None:
    cache: StateCache[list[int]] = StateCache(max_keys=10, single_worker=False)
    state = [1, 2]
    stored = lambda: Receipts.of(digest(p) for p in state)  # noqa: E731
    with cache.holding("k", stored, lambda: list(state)) as entry:
        entry.value.append(3)  # this worker takes in part 3 and appends it to state
        state.append(3)
        entry.receipts = entry.receipts.plus(digest(3))
    with cache.holding("k", stored, lambda: list(state)) as entry:
        assert entry.value == [1, 2, 3] and cache.rebuilds == 1  # current: used as it is
    state.append(4)  # another worker appended part 4
    with cache.holding("k", stored, lambda: list(state)) as entry:
        assert entry.value == [1, 2, 3, 4] and cache.rebuilds == 2


def test_on_a_single_worker_the_copy_is_trusted_once_built() -> None:
    cache: StateCache[list[int]] = StateCache(max_keys=10, single_worker=True)
    reads = []

    def stored() -> Receipts:
        reads.append(1)
        return Receipts()

    for _ in range(3):
        with cache.holding("k", stored, list):
            pass
    assert len(reads) == 1 and cache.rebuilds == 1  # built once, never checked again


def test_the_cache_is_bounded() -> None:
    cache: StateCache[int] = StateCache(max_keys=2, single_worker=True)
    for key in "abc":
        with cache.holding(key, Receipts, lambda: 0):
            pass
    assert cache.peek("a") is None and cache.peek("c") is not None


def test_on_a_single_worker_a_new_key_starts_empty_and_an_evicted_one_is_read_back() -> None:
    cache: StateCache[list[int]] = StateCache(max_keys=1, single_worker=True)
    reads = []

    def rebuild() -> list[int]:
        reads.append(1)
        return [7]

    with cache.holding("a", Receipts, rebuild, list) as entry:
        assert entry.value == [] and not reads  # no one else can have written it: no state read
    with cache.holding("b", Receipts, rebuild, list):
        pass  # evicts "a"
    with cache.holding("a", Receipts, rebuild, list) as entry:
        assert entry.value == [7] and len(reads) == 1  # held before, so its state is read back
