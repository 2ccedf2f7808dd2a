"""Long-horizon account verdicts: each behaviour on a stream where the answer is known, a near miss
that must not fire, and state that survives serialisation and resharding unchanged."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clout.anomalies import coordination
from clout.anomalies.flag import DETECTORS, Flag
from clout.anomalies.verdicts import DETECTOR, AccountState, Context, VerdictConfig, summarise, update, verdicts
from clout.model.columns import EventColumns, from_events
from clout.model.events import Event
from clout.model.kinds import KIND_INDEX
from clout.model.windows import window_id

HOUR, DAY = 3_600_000, 86_400_000
SLICE = 2 * HOUR  # the state does not depend on the slice width; wider slices keep the tests quick
START = 1_341_100_800_000  # a midnight, UTC
REPOST, REPLY, MENTION = KIND_INDEX["repost"], KIND_INDEX["reply"], KIND_INDEX["mention"]
CONFIG = VerdictConfig(window_ms=30 * DAY)  # one window over the whole test stream


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


def slices(events: list[Event]) -> list[EventColumns]:
    by_slice: dict[int, list[Event]] = {}
    for e in sorted(events):
        by_slice.setdefault(e.ts // SLICE, []).append(e)
    return [from_events(by_slice[key]) for key in sorted(by_slice)]


def judge(events: list[Event], shards: int = 2, restore_at: int | None = None) -> dict[str, Flag]:
    """The pipeline's calls: every slice into every shard, in order (a restore from bytes at slice
    `restore_at`); then each shard's summary, the Context, and the verdicts of a window covering
    the whole stream."""
    states = [AccountState.empty(k, shards) for k in range(shards)]
    for n, cols in enumerate(slices(events)):
        if n == restore_at:
            states = [AccountState.from_bytes(s.to_bytes()) for s in states]
        for s in states:
            update(s, cols)
    now = max(e.ts for e in events) + 1
    context = Context.combine([summarise(s, now, CONFIG) for s in states], CONFIG)
    return {f.user: f for s in states for f in verdicts(s, now, context, CONFIG)}


def flagged(flags: dict[str, Flag], prefix: str) -> list[Flag]:
    return [f for a, f in flags.items() if a.startswith(prefix)]


@pytest.fixture(scope="module")
def crowd() -> list[Event]:
    return humans(np.random.default_rng(1))


def test_human_paced_amplifier_is_flagged_and_a_one_day_fan_is_not(crowd: list[Event]):
    rng = np.random.default_rng(2)
    bot = [Event(int(t), "bot", f"paid{rng.integers(5)}", REPOST) for t in lognormal_times(rng, 6, 30, True)]
    fan = [Event(START + 2 * DAY + 9 * HOUR + int(t), "fan", f"paid{rng.integers(5)}", REPOST)
           for t in np.sort(rng.integers(0, 12 * HOUR, 80))]
    flags = judge(crowd + bot + fan)
    assert "steady amplification" in flags["bot"].reasons[0] and "bot" in flags
    assert not flagged(flags, "fan")
    assert not flagged(flags, "human")


def test_round_the_clock_activity_has_no_human_rhythm(crowd: list[Event]):
    rng = np.random.default_rng(3)
    clock = [Event(int(t), "clock", f"x{rng.integers(300)}", MENTION) for t in lognormal_times(rng, 6, 45, False)]
    flags = judge(crowd + clock)
    assert "clock" in flags
    assert any("no human rhythm" in r for r in flags["clock"].reasons)
    assert not flagged(flags, "human")


def test_spray_at_strangers_is_flagged_but_an_answered_conversationalist_is_not(crowd: list[Event]):
    rng = np.random.default_rng(4)
    spam = [Event(int(t), "spam", f"stranger{i}", REPLY) for i, t in enumerate(lognormal_times(rng, 6, 40, True))]
    chat = []
    for i, t in enumerate(lognormal_times(rng, 6, 40, True).tolist()):
        chat.append(Event(t, "chatty", f"pal{i % 40}", REPLY))
        chat.append(Event(t + 120_000, f"pal{i % 40}", "chatty", REPLY))
    flags = judge(crowd + spam + chat)
    assert any("sprayed at strangers" in r for r in flags["spam"].reasons)
    assert not flags.get("chatty") or not any("sprayed" in r for r in flags["chatty"].reasons)


def test_fast_co_amplification_repeated_over_days(crowd: list[Event]):
    rng = np.random.default_rng(5)
    ring, late = [], []
    for post in [START + day * DAY + hour * HOUR for day in range(5) for hour in (11, 15)]:
        for i in range(6):
            ring.append(Event(post + int(rng.integers(1000, 20_000)), f"ring{i}", "source", REPOST))
            late.append(Event(post + i * 3 * HOUR + 5 * 60_000, f"late{i}", "other", REPOST))  # same, hours apart
    flags = judge(crowd + ring + late)
    assert len(flagged(flags, "ring")) == 6
    assert all(any("fast co-amplification" in r for r in flags[f"ring{i}"].reasons) for i in range(6))
    assert not any("fast co-amplification" in r for a, v in flags.items() if a.startswith("late")
                   for r in v.reasons)


def test_a_celebritys_audience_is_not_a_ring():
    events = [Event(START + k * 1000, f"fan{k}", "celebrity", REPOST) for k in range(100)]
    assert coordination.co_actions(from_events(events)) == []


def test_campaign_on_one_target_and_the_celebrity_near_miss(crowd: list[Event]):
    rng = np.random.default_rng(6)
    pile, fans = [], []
    for i in range(20):
        for day in (1, 2, 3):
            for _ in range(4):  # 12 actions: enough to be judged
                pile.append(Event(START + day * DAY + int(rng.integers(9 * HOUR, 22 * HOUR)), f"pile{i}", "hijacked",
                                  MENTION))
                fans.append(Event(START + day * DAY + int(rng.integers(9 * HOUR, 22 * HOUR)), f"fanof{i}", "star",
                                  MENTION))
    star_traffic = [Event(START + int(rng.integers(0, 6 * DAY)), f"crowd{k}", "star", REPOST) for k in range(3000)]
    flags = judge(crowd + pile + fans + star_traffic)
    assert len(flagged(flags, "pile")) == 20
    assert any("campaign on one target" in r for r in flags["pile0"].reasons)
    assert not flagged(flags, "fanof")


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
    flags = judge(crowd + train + loners)
    assert len(flagged(flags, "train")) >= 9
    assert any("similar targets" in r for r in flags["train0"].reasons)
    assert not any("similar targets" in r for a, v in flags.items() if a.startswith("loner") for r in v.reasons)


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
    update(state, from_events(events))
    before = state.memory_bytes()
    update(state, from_events([Event(START + k * 60_000, f"a{k % 50}", f"b{k % 7}", REPOST)
                                            for k in range(2000, 6000)]))
    assert state.memory_bytes() == before  # same accounts, same bytes however long they stay
    assert AccountState.BYTES_PER_ACCOUNT < 450
    assert state.forget_idle(START + 10 * DAY) == 57 and len(state) == 0


def test_similar_targets_ignore_a_celebrity_everyone_repeats(crowd: list[Event]):
    """Near miss: twelve fans repeatedly engaging the same celebrity (and nothing else in common)
    share repeated targets, but a celebrity is an audience, not a network."""
    rng = np.random.default_rng(9)
    star = [Event(START + int(rng.integers(0, 6 * DAY)), f"crowd{k}", "celebrity", REPOST) for k in range(400)]
    fans = [Event(START + day * DAY + int(rng.integers(9 * HOUR, 22 * HOUR)), f"fan{i}",
                  "celebrity" if j % 2 else f"own{i}_{j}", REPOST)
            for i in range(12) for day in range(5) for j in range(6)]
    flags = judge(crowd + star + fans)
    assert not any("similar targets" in r for a, f in flags.items() if a.startswith("fan") for r in f.reasons)


def _states(events: list[Event], shards: int) -> list[AccountState]:
    states = [AccountState.empty(k, shards) for k in range(shards)]
    for cols in slices(events):
        for s in states:
            update(s, cols)
    return states


def test_same_slices_give_the_same_bytes_whatever_the_batch_codes(crowd: list[Event]):
    events = _scenario(crowd)
    by_slice: dict[int, list[Event]] = {}
    for e in events:
        by_slice.setdefault(e.ts // SLICE, []).append(e)
    shuffled = AccountState.empty(1, 2)
    rng = np.random.default_rng(10)
    for key in sorted(by_slice):
        rows = list(reversed(by_slice[key])) if rng.random() < 0.5 else by_slice[key]
        cols = from_events(rows)
        order = rng.permutation(len(cols.names))  # the same events under other codes
        names = [cols.names[i] for i in order]
        recode = np.argsort(order).astype(np.int32)
        update(shuffled, EventColumns(cols.ts, recode[cols.actor], recode[cols.target], cols.kind, cols.platform,
                                      names, cols.platforms))
    plain = _states(events, 2)[1]
    assert shuffled.to_bytes() == plain.to_bytes()
    assert AccountState.from_bytes(plain.to_bytes()).to_bytes() == plain.to_bytes()


def test_state_bytes_are_the_same_in_another_process():
    """A fresh interpreter with another hash seed builds the same bytes from the same slices."""
    script = (
        f"import hashlib, sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_accounts import _states, _scenario, humans\n"
        "import numpy as np\n"
        "s = _states(_scenario(humans(np.random.default_rng(1), n=10, days=3)), 2)\n"
        "print(hashlib.sha256(b''.join(x.to_bytes() for x in s)).hexdigest())\n")
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")]
    here = hashlib.sha256(b"".join(x.to_bytes() for x in _states(
        _scenario(humans(np.random.default_rng(1), n=10, days=3)), 2))).hexdigest()
    assert runs[0].strip() == runs[1].strip() == here


def test_verdicts_judge_the_windows_active_accounts_and_leave_the_state_alone(crowd: list[Event]):
    rng = np.random.default_rng(2)
    bot = [Event(int(t), "bot", f"paid{rng.integers(5)}", REPOST) for t in lognormal_times(rng, 6, 30, False)]
    states = _states(crowd + bot, 2)
    last = max(e.ts for e in bot)
    hourly = VerdictConfig()
    before = [s.to_bytes() for s in states]
    context = Context.combine([summarise(s, last + 1, hourly) for s in states], hourly)
    now = [f for s in states for f in verdicts(s, last + 1, context, hourly)]
    later = [f for s in states for f in verdicts(s, last + 1 + 2 * HOUR, context, hourly)]
    assert [f.user for f in now] == ["bot"] and not later  # idle for two hours: not in that window
    assert now[0].detector == DETECTOR and DETECTOR in DETECTORS
    assert now[0].window == window_id(last + 1 - HOUR, last + 1)
    assert [s.to_bytes() for s in states] == before
    assert now == [f for s in states for f in verdicts(s, last + 1, context, hourly)]


def test_context_is_small_and_the_same_from_any_number_of_shards(crowd: list[Event]):
    events = _scenario(crowd)
    now = max(e.ts for e in events) + 1
    one = Context.combine([summarise(s, now, CONFIG) for s in _states(events, 1)], CONFIG)
    three = Context.combine([summarise(s, now, CONFIG) for s in _states(events, 3)], CONFIG)
    assert one.campaign == three.campaign and one.bands == three.bands
    assert one.nbytes < 10_000
