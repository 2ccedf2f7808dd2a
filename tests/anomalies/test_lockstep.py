"""Lockstep: a ring acting in step on many targets is found; near-rings are not."""

from __future__ import annotations

import random

import numpy as np

from clout.anomalies.config import LockstepConfig
from clout.anomalies.flag import Group
from clout.anomalies.lockstep import find_lockstep, recurrences
from clout.model.events import Event
from clout.model.kinds import KIND_INDEX

START = 1_341_100_800_000
REPOST = KIND_INDEX["repost"]
WINDOW = f"{START // 1000}-{START // 1000 + 3600}"
CONFIG = LockstepConfig(delta_s=30.0, min_targets=3, min_group=4, recurrence=0)
RING = [f"ring{i}" for i in range(6)]


def crowd(rng: np.random.Generator, n: int = 3000) -> list[Event]:
    """Ordinary accounts reposting popular accounts at random moments of the hour."""
    return [Event(START + int(rng.integers(3_600_000)), f"user{rng.integers(800)}",
                  f"star{int(rng.zipf(1.6)) % 50}", REPOST) for _ in range(n)]


def episodes(members: list[str], targets: list[str], rng: np.random.Generator, spread_ms: int,
             gap_ms: int = 600_000) -> list[Event]:
    """One episode per target, `gap_ms` apart; each member acts within `spread_ms` of the episode start."""
    return [Event(START + 60_000 + k * gap_ms + int(rng.integers(spread_ms)), m, t, REPOST)
            for k, t in enumerate(targets) for m in members]


def test_ring_is_found_with_members_targets_and_synchrony() -> None:
    rng = np.random.default_rng(1)
    targets = [f"promo{i}" for i in range(5)]
    result = find_lockstep(crowd(rng) + episodes(RING, targets, rng, 10_000), WINDOW, CONFIG)
    assert [sorted(g.members) for g in result.groups] == [RING]
    group = result.groups[0]
    assert sorted(group.targets) == targets and group.synchrony == 1.0 and 0.6 < group.score <= 1.0
    assert sorted(f.user for f in result.flags) == RING
    flag = result.flags[0]
    assert flag.detector == "lockstep" and flag.group == group.id and flag.evidence["shared_targets"] == 5
    assert "5 shared targets" in flag.reasons[0]


def test_same_targets_but_not_in_step_is_not_a_ring() -> None:
    """The same six accounts on the same five targets, minutes apart: fans, not a ring."""
    rng = np.random.default_rng(2)
    targets = [f"promo{i}" for i in range(5)]
    result = find_lockstep(crowd(rng) + episodes(RING, targets, rng, 600_000), WINDOW, CONFIG)
    assert not any(set(g.members) & set(RING) for g in result.groups)


def test_in_step_on_fewer_than_min_targets_is_not_a_ring() -> None:
    rng = np.random.default_rng(3)
    result = find_lockstep(crowd(rng) + episodes(RING, ["promo0", "promo1"], rng, 5_000), WINDOW, CONFIG)
    assert result.groups == []


def test_one_post_naming_three_accounts_reposted_together_is_one_moment_not_three_targets() -> None:
    """Higgs-style data records a repost of a post that mentions two accounts as three edges at one second."""
    rng = np.random.default_rng(4)
    at = START + 900_000
    events = [Event(at + int(rng.integers(5_000)), m, t, REPOST) for m in RING for t in ("author", "named1", "named2")]
    assert find_lockstep(crowd(rng) + events, WINDOW, CONFIG).groups == []


def test_result_does_not_depend_on_event_order() -> None:
    rng = np.random.default_rng(5)
    events = crowd(rng) + episodes(RING, [f"promo{i}" for i in range(4)], rng, 10_000)
    shuffled = events[:]
    random.Random(9).shuffle(shuffled)
    one, two = find_lockstep(events, WINDOW, CONFIG), find_lockstep(shuffled, WINDOW, CONFIG)
    assert [g.to_json() for g in one.groups] == [g.to_json() for g in two.groups]


def test_members_are_flagged_once_the_group_recurs_in_an_earlier_window() -> None:
    rng = np.random.default_rng(6)
    events = crowd(rng) + episodes(RING, [f"promo{i}" for i in range(4)], rng, 10_000)
    config = LockstepConfig(recurrence=1)
    first = find_lockstep(events, WINDOW, config)
    assert len(first.groups) == 1 and first.flags == []  # reported as a group, nobody flagged yet
    hour_before = f"{START // 1000 - 3600}-{START // 1000}"
    overlapping = f"{START // 1000 - 900}-{START // 1000 + 2700}"
    earlier = Group("g0", hour_before, (*RING[:4], "someone"), ("promo0",), 1.0, 0.7)
    concurrent = Group("g1", overlapping, tuple(RING), ("promo0",), 1.0, 0.7)
    assert recurrences(first.groups[0], [concurrent], config) == 0  # an overlapping window is not "again"
    again = find_lockstep(events, WINDOW, config, earlier=[earlier, concurrent])
    assert sorted(f.user for f in again.flags) == RING and again.flags[0].evidence["earlier_windows"] == 1
