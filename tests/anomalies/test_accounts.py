"""Long-horizon account verdicts: each behaviour on a stream where the answer is known, a near miss
that must not fire, and state that survives serialisation and resharding unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from clout.anomalies import accounts, coordination
from clout.anomalies.accounts import AccountState, VerdictConfig
from clout.anomalies.columns import SliceColumns
from clout.anomalies.coordination import PairState
from clout.model.events import Event
from clout.model.kinds import KIND_INDEX

HOUR, DAY, SLICE = 3_600_000, 86_400_000, 900_000
START = 1_341_100_800_000  # a midnight, UTC
REPOST, REPLY, MENTION = KIND_INDEX["repost"], KIND_INDEX["reply"], KIND_INDEX["mention"]
CONFIG = VerdictConfig()


def lognormal_times(rng: np.random.Generator, days: float, median_min: float, diurnal: bool) -> np.ndarray:
    t = START + np.cumsum(rng.lognormal(np.log(median_min * 60_000), 1.0, size=5000)).astype(np.int64)
    t = t[t < START + days * DAY]
    return t[(t % DAY) >= 8 * HOUR] if diurnal else t


def humans(rng: np.random.Generator, n: int = 60, days: int = 6) -> list[Event]:
    """A crowd: bursty on a day or two, awake 8:00-23:00, varied targets and kinds, often answered."""
    events = []
    for i in range(n):
        for day in rng.choice(days, size=2, replace=False).tolist():
            for t in np.sort(rng.integers(8 * HOUR, 23 * HOUR, int(rng.integers(3, 25)))).tolist():
                friend = f"friend{rng.integers(200)}"
                events.append(Event(START + day * DAY + t, f"human{i}", friend,
                                    int(rng.choice([REPOST, REPLY, MENTION]))))
                if rng.random() < 0.4:
                    events.append(Event(START + day * DAY + t + 60_000, friend, f"human{i}", REPLY))
    return events


def judge(events: list[Event], shards: int = 2, restore_at: int | None = None) -> dict[str, accounts.Verdict]:
    """The pipeline's calls: every slice into every shard, in order; verdicts at the end."""
    events = sorted(events)
    states = [AccountState.empty(k, shards) for k in range(shards)]
    pairs = [PairState(k, shards) for k in range(shards)]
    by_slice: dict[int, list[Event]] = {}
    for e in events:
        by_slice.setdefault(e.ts // SLICE, []).append(e)
    for n, key in enumerate(sorted(by_slice)):
        if n == restore_at:
            states = [AccountState.from_bytes(s.to_bytes()) for s in states]
            pairs = [PairState.from_bytes(p.to_bytes()) for p in pairs]
        cols = SliceColumns.of(by_slice[key])
        for s in states:
            accounts.update(s, cols)
        co = coordination.co_actions(cols)
        for p in pairs:
            coordination.update_pairs(p, co)
    now = events[-1].ts + 1
    context = coordination.gather(states, pairs)
    return {v.account: v for s in states for v in accounts.verdicts(s, now, context, CONFIG)}


def flagged(verdicts: dict[str, accounts.Verdict], prefix: str) -> list[accounts.Verdict]:
    return [v for a, v in verdicts.items() if a.startswith(prefix) and v.flagged]


@pytest.fixture(scope="module")
def crowd() -> list[Event]:
    return humans(np.random.default_rng(1))


def test_human_paced_amplifier_is_flagged_and_a_one_day_fan_is_not(crowd: list[Event]):
    rng = np.random.default_rng(2)
    bot = [Event(int(t), "bot", f"paid{rng.integers(5)}", REPOST) for t in lognormal_times(rng, 6, 30, True)]
    fan = [Event(START + 2 * DAY + 9 * HOUR + int(t), "fan", f"paid{rng.integers(5)}", REPOST)
           for t in np.sort(rng.integers(0, 12 * HOUR, 80))]
    verdicts = judge(crowd + bot + fan)
    assert "steady amplification" in verdicts["bot"].reasons[0] and verdicts["bot"].flagged
    assert not flagged(verdicts, "fan")
    assert not flagged(verdicts, "human")


def test_round_the_clock_activity_has_no_human_rhythm(crowd: list[Event]):
    rng = np.random.default_rng(3)
    clock = [Event(int(t), "clock", f"x{rng.integers(300)}", MENTION) for t in lognormal_times(rng, 6, 45, False)]
    verdicts = judge(crowd + clock)
    assert verdicts["clock"].flagged
    assert any("no human rhythm" in r for r in verdicts["clock"].reasons)
    assert not flagged(verdicts, "human")


def test_spray_at_strangers_is_flagged_but_an_answered_conversationalist_is_not(crowd: list[Event]):
    rng = np.random.default_rng(4)
    spam = [Event(int(t), "spam", f"stranger{i}", REPLY) for i, t in enumerate(lognormal_times(rng, 6, 40, True))]
    chat = []
    for i, t in enumerate(lognormal_times(rng, 6, 40, True).tolist()):
        chat.append(Event(t, "chatty", f"pal{i % 40}", REPLY))
        chat.append(Event(t + 120_000, f"pal{i % 40}", "chatty", REPLY))
    verdicts = judge(crowd + spam + chat)
    assert any("sprayed at strangers" in r for r in verdicts["spam"].reasons)
    assert not verdicts.get("chatty") or not any("sprayed" in r for r in verdicts["chatty"].reasons)


def test_fast_co_amplification_repeated_over_days(crowd: list[Event]):
    rng = np.random.default_rng(5)
    ring, late = [], []
    for day in range(5):
        post = START + day * DAY + 15 * HOUR
        for i in range(6):
            ring.append(Event(post + int(rng.integers(1000, 20_000)), f"ring{i}", "source", REPOST))
            late.append(Event(post + i * 3 * HOUR + 5 * 60_000, f"late{i}", "other", REPOST))  # same, hours apart
    verdicts = judge(crowd + ring + late)
    assert len(flagged(verdicts, "ring")) == 6
    assert all(any("fast co-amplification" in r for r in verdicts[f"ring{i}"].reasons) for i in range(6))
    assert not any("fast co-amplification" in r for a, v in verdicts.items() if a.startswith("late")
                   for r in v.reasons)


def test_a_celebritys_audience_is_not_a_ring():
    events = [Event(START + k * 1000, f"fan{k}", "celebrity", REPOST) for k in range(100)]
    assert coordination.co_actions(SliceColumns.of(events)) == []


def test_campaign_on_one_target_and_the_celebrity_near_miss(crowd: list[Event]):
    rng = np.random.default_rng(6)
    pile, fans = [], []
    for i in range(20):
        for day in (1, 2, 3):
            for _ in range(2):
                pile.append(Event(START + day * DAY + int(rng.integers(9 * HOUR, 22 * HOUR)), f"pile{i}", "hijacked",
                                  MENTION))
                fans.append(Event(START + day * DAY + int(rng.integers(9 * HOUR, 22 * HOUR)), f"fanof{i}", "star",
                                  MENTION))
    star_traffic = [Event(START + int(rng.integers(0, 6 * DAY)), f"crowd{k}", "star", REPOST) for k in range(3000)]
    verdicts = judge(crowd + pile + fans + star_traffic)
    assert len(flagged(verdicts, "pile")) == 20
    assert any("campaign on one target" in r for r in verdicts["pile0"].reasons)
    assert not flagged(verdicts, "fanof")


def test_similar_target_sets_and_disjoint_near_miss(crowd: list[Event]):
    rng = np.random.default_rng(7)
    train, loners = [], []
    for i in range(10):
        for day in range(4):
            for j in rng.choice(12, size=6, replace=False).tolist():
                train.append(Event(START + day * DAY + int(rng.integers(9 * HOUR, 22 * HOUR)), f"train{i}",
                                   f"member{j}", MENTION))
                loners.append(Event(START + day * DAY + int(rng.integers(9 * HOUR, 22 * HOUR)), f"loner{i}",
                                    f"own{i}_{rng.integers(12)}", MENTION))
    verdicts = judge(crowd + train + loners)
    assert len(flagged(verdicts, "train")) >= 9
    assert any("similar targets" in r for r in verdicts["train0"].reasons)
    assert not any("similar targets" in r for a, v in verdicts.items() if a.startswith("loner") for r in v.reasons)


def _scenario(crowd: list[Event]) -> list[Event]:
    rng = np.random.default_rng(8)
    bot = [Event(int(t), "bot", f"paid{rng.integers(5)}", REPOST) for t in lognormal_times(rng, 6, 30, False)]
    ring = [Event(START + d * DAY + 15 * HOUR + int(rng.integers(0, 9000)), f"ring{i}", "source", REPOST)
            for d in range(5) for i in range(5)]
    return crowd + bot + ring


def test_state_round_trip_gives_identical_verdicts(crowd: list[Event]):
    events = _scenario(crowd)
    assert judge(events) == judge(events, restore_at=200)


def test_verdicts_do_not_depend_on_the_number_of_shards(crowd: list[Event]):
    events = _scenario(crowd)
    assert judge(events, shards=1) == judge(events, shards=3)


def test_state_is_bounded_per_account_and_idle_accounts_are_forgotten():
    state = AccountState.empty()
    events = [Event(START + k * 60_000, f"a{k % 50}", f"b{k % 7}", REPOST) for k in range(2000)]
    accounts.update(state, SliceColumns.of(events))
    before = state.memory_bytes()
    accounts.update(state, SliceColumns.of([Event(START + k * 60_000, f"a{k % 50}", f"b{k % 7}", REPOST)
                                            for k in range(2000, 6000)]))
    assert state.memory_bytes() == before  # same accounts, same bytes however long they stay
    assert AccountState.BYTES_PER_ACCOUNT < 400
    assert state.forget_idle(START + 10 * DAY) == 57 and len(state) == 0
