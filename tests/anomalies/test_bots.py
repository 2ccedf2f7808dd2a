"""Bot-likeness: a clockwork amplifier scores high and says why; busy people do not."""

from __future__ import annotations

import numpy as np

from clout.anomalies.bots import ActorHistory, bot_scores, detect_bots
from clout.anomalies.config import BotConfig
from clout.model.events import Event
from clout.model.kinds import KIND_INDEX

HOUR = 3_600_000
START = 1_341_100_800_000  # a midnight, UTC
REPOST, LIKE, REPLY, MENTION = (KIND_INDEX[k] for k in ("repost", "like", "reply", "mention"))
CONFIG = BotConfig()


def bot(hours: int, rng: np.random.Generator) -> list[Event]:
    """Every 6 minutes (+- 2 s), day and night, reposts and likes of 3 paid accounts; nobody answers."""
    times = START + np.arange(0, hours * HOUR, 360_000) + rng.integers(-2000, 2000, hours * 10)
    kinds = rng.choice([REPOST, LIKE], size=len(times))
    return [Event(int(t), "bot", f"paid{rng.integers(3)}", int(k)) for t, k in zip(times, kinds, strict=True)]


def busy_human(hours: int, rng: np.random.Generator, name: str = "human", per_hour: float = 20.0) -> list[Event]:
    """Bursty (Poisson) activity from 8:00 to 23:00 only, many different people, all kinds, and answered."""
    events = []
    for hour in range(hours):
        if not 8 <= hour % 24 < 23:
            continue
        n = rng.poisson(per_hour)
        for t in np.sort(rng.integers(0, HOUR, n)) + START + hour * HOUR:
            friend = f"friend{rng.integers(60)}"
            kind = int(rng.choice([REPOST, LIKE, REPLY, MENTION], p=[0.3, 0.3, 0.25, 0.15]))
            events.append(Event(int(t), name, friend, kind))
            if rng.random() < 0.4:
                events.append(Event(int(t) + 60_000, friend, name, REPLY))
    return sorted(events)


def scored_last_window(events: list[Event], hours: int) -> dict[str, object]:
    """Feed the history slice by slice (as the pipeline does) and score the last hour."""
    history = ActorHistory()
    events = sorted(events)
    for slice_start in range(START, START + hours * HOUR, HOUR // 4):
        history.update([e for e in events if slice_start <= e.ts < slice_start + HOUR // 4])
    end = START + hours * HOUR
    window = [e for e in events if end - HOUR <= e.ts < end]
    return {s.actor: s for s in bot_scores(window, history, end, CONFIG)} | {
        "flags": {f.user: f for f in detect_bots(window, "w", history, end, CONFIG)}
    }


def test_clockwork_amplifier_is_flagged_with_the_features_that_fired() -> None:
    rng = np.random.default_rng(1)
    result = scored_last_window(bot(48, rng) + busy_human(48, rng), 48)
    flag = result["flags"]["bot"]
    assert flag.score >= 0.9
    text = " ".join(flag.reasons)
    for phrase in ("clockwork timing", "round the clock", "nobody engages back", "amplifies only", "few targets"):
        assert phrase in text
    assert flag.evidence["gap_cv"] < 0.05 and flag.evidence["hour_entropy"] > 0.95
    assert flag.evidence["received"] == 0


def test_busy_human_is_not_flagged() -> None:
    rng = np.random.default_rng(2)
    result = scored_last_window(bot(48, rng) + busy_human(48, rng, per_hour=30.0), 46)  # 21:00-22:00
    human = result["human"]
    assert human.score < 0.5 < CONFIG.threshold
    assert "human" not in result["flags"]
    assert human.parts["regularity"] == 0.0 and human.parts["round_the_clock"] == 0.0


def test_without_history_only_the_window_speaks() -> None:
    """No history: round-the-clock and newness cannot be judged, so they score 0, and the bot needs
    min_events actions in the window to be scored at all."""
    rng = np.random.default_rng(3)
    events = bot(1, rng)
    (score,) = bot_scores(events, None, None, CONFIG)
    assert score.parts["round_the_clock"] == 0.0 and score.parts["new_account"] == 0.0
    assert score.parts["regularity"] > 0.0
    assert bot_scores(events[: CONFIG.min_events - 1], None, None, CONFIG) == []


def test_history_folds_gaps_like_a_plain_recount() -> None:
    rng = np.random.default_rng(4)
    events = busy_human(30, rng)
    history = ActorHistory()
    for i in range(0, len(events), 37):  # any slicing in time order gives the same statistics
        history.update(events[i:i + 37])
    mine = np.diff(sorted(e.ts for e in events if e.actor == "human"))
    gaps = mine[mine >= 1000] / 1000.0  # actions under a second apart are one action (RT + MT edges)
    row = history.rows(["human"])[0]
    assert history.gaps[row] == len(gaps)
    assert np.isclose(history.gap_mean[row], gaps.mean())
    assert np.isclose(history.gap_m2[row] / (len(gaps) - 1), gaps.var(ddof=1))
    assert history.hours[row, :8].sum() == 0 and history.sent[row] == sum(e.actor == "human" for e in events)


def test_idle_accounts_can_be_forgotten() -> None:
    history = ActorHistory()
    history.update([Event(START, "old", "x", REPOST), Event(START + 10 * HOUR, "new", "x", REPOST)])
    assert history.forget_idle(START + HOUR) == 1  # "old"; "x" was seen again with "new"
    assert history.rows(["old", "new", "x"]).tolist() == [-1, 0, 1]
    history.update([Event(START + 11 * HOUR, "new", "y", LIKE)])
    row = history.rows(["new"])[0]
    assert history.sent[row] == 2 and history.gaps[row] == 1 and history.gap_mean[row] == 3600.0
