"""Thresholds of the four detectors, in one place so the pipeline, `clout eval` and the docs agree.

The defaults were chosen with `clout eval` (planted anomalies from the synthetic connector injected
into the real Higgs Twitter week, scored over the pipeline's 1 h / 15 min sliding windows); the
figures behind each choice are in docs/anomalies.md. They are starting points for Twitter-like
streams: a platform with a different pace should re-run the evaluation on its own background.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class BurstConfig:
    """An account's window volume against its own median + MAD over earlier non-overlapping windows.

    min_volume 50: Higgs accounts receiving >= 50 interactions in an hour out of a quiet baseline are
    rare (a few hundred over the week, most of them genuine viral posts), while a bought burst
    delivers hundreds; it is also the guard for new accounts, whose baseline is all zeros.
    min_z 8 and min_ratio 8: with a Poisson floor on the scale (sqrt of the median), steady growth of
    even 50 % per hour stays far below both.
    """

    baseline_windows: int = 24  # earlier non-overlapping windows the baseline is taken from (24 h)
    min_volume: int = 100  # interactions in the window, received or sent, before anything is flagged
    min_z: float = 8.0  # robust z: (volume - median) / max(1.4826 MAD, sqrt(median), 1)
    min_ratio: float = 8.0  # (volume + 1) / (median + 1)

    def __post_init__(self) -> None:
        if self.baseline_windows < 1 or self.min_volume < 1 or self.min_z <= 0 or self.min_ratio < 1:
            raise ValueError(f"invalid burst thresholds: {self}")


@dataclass(frozen=True)
class BotConfig:
    """Bot-likeness: a weighted mean of feature sub-scores, each a linear ramp between a human
    value (sub-score 0) and a bot value (sub-score 1). A feature "fires" (is named in the reasons)
    at sub-score >= 0.5. Features without enough data score 0: no evidence is not suspicion.
    """

    window_hours: float = 1.0  # length of the window the events come from, for the rate
    min_events: int = 6  # actions so far (in the history, else in the window) before an actor is scored
    threshold: float = 0.75  # flag at bot score >= threshold
    # rate, actions per hour: sustained since first seen (with history), else in the window
    rate_human: float = 2.0
    rate_bot: float = 8.0
    # coefficient of variation of inter-event gaps (1 for a Poisson process; clockwork is ~0), with the
    # sub-score scaled down below full_gaps gaps: a CV from 5 gaps is a weak clue
    cv_bot: float = 0.25
    cv_human: float = 0.8
    min_gaps: int = 5
    full_gaps: int = 30
    # normalised hour-of-day entropy (1 = evenly round the clock; 16 waking hours evenly: 0.87), from the
    # actor's history, bias-corrected (Miller-Madow)
    entropy_human: float = 0.90
    entropy_bot: float = 0.97
    min_hour_events: int = 48
    min_history_hours: float = 24.0
    # distinct targets per action in the window
    diversity_bot: float = 0.3
    diversity_human: float = 0.8
    # share of actions that only amplify (repost, like)
    amplify_human: float = 0.6
    amplify_bot: float = 0.95
    # interactions received per interaction sent, over the history ("nobody engages back")
    reciprocity_bot: float = 0.0
    reciprocity_human: float = 0.05
    # age since first seen, hours
    new_bot_hours: float = 24.0
    new_human_hours: float = 24.0 * 7
    weights: dict[str, float] = field(default_factory=lambda: {
        "regularity": 0.30, "round_the_clock": 0.20, "no_reciprocity": 0.15, "rate": 0.10,
        "amplify_only": 0.10, "diversity": 0.10, "new_account": 0.05,
    })  # fmt: skip

    def __post_init__(self) -> None:
        if abs(sum(self.weights.values()) - 1.0) > 1e-9 or min(self.weights.values()) < 0:
            raise ValueError("bot feature weights must be >= 0 and sum to 1")
        if not 0.0 < self.threshold <= 1.0 or self.min_events < 2:
            raise ValueError(f"invalid bot thresholds: {self}")


@dataclass(frozen=True)
class LockstepConfig:
    """CopyCatch-style lockstep: >= min_group accounts acting on >= min_targets common targets within
    delta_s of each other, in one window. MinHash (bands x rows hashes) + LSH proposes candidates.
    """

    delta_s: float = 30.0  # two actions on one target count as synchronous within this many seconds
    min_targets: int = 3  # distinct targets a pair (and the group) must share in lockstep
    min_group: int = 4  # members of a group
    density: float = 0.5  # each member shares lockstep with >= this share of the other members
    bands: int = 16
    rows: int = 2
    max_bucket: int = 64  # an LSH bucket larger than this contributes a chain, not all its pairs
    recurrence: int = 1  # earlier non-overlapping windows that must hold the group before members are flagged
    overlap: float = 0.5  # two groups are "the same" when they share this share of the smaller one's members
    memory_hours: float = 24.0  # how far back the caller keeps groups for the recurrence test
    seed: int = 20130513  # hash seed (CopyCatch, WWW 2013)

    def __post_init__(self) -> None:
        if self.min_targets < 1 or self.min_group < 2 or not 0.0 <= self.density <= 1.0 or self.delta_s <= 0:
            raise ValueError(f"invalid lockstep thresholds: {self}")
        if self.recurrence < 0 or not 0.0 < self.overlap <= 1.0 or self.memory_hours < 0:
            raise ValueError(f"invalid lockstep thresholds: {self}")
        if self.bands < 1 or self.rows < 1 or self.max_bucket < 2:
            raise ValueError(f"invalid lockstep LSH settings: {self}")


@dataclass(frozen=True)
class MidasConfig:
    """MIDAS-R on the edge stream: count-min sketches of rows x buckets, current counts decayed by
    `decay` per tick of `tick_s` seconds. A target is flagged when >= min_sources distinct sources
    reached it with a destination score >= threshold within the window.
    """

    rows: int = 4
    buckets: int = 4096
    decay: float = 0.5
    tick_s: int = 60
    seed: int = 2020
    threshold: float = 3000.0  # chi-squared destination score of an edge
    min_sources: int = 100  # distinct sources with such edges into one target in the window

    def __post_init__(self) -> None:
        if self.rows < 1 or self.buckets < 2 or not 0.0 < self.decay < 1.0 or self.tick_s < 1:
            raise ValueError(f"invalid MIDAS-R settings: {self}")
        if self.threshold <= 0 or self.min_sources < 1:
            raise ValueError(f"invalid microcluster thresholds: {self}")


@dataclass(frozen=True)
class Thresholds:
    """Every detector's settings; what the pipeline's DetectAnomalies step takes."""

    burst: BurstConfig = field(default_factory=BurstConfig)
    bot: BotConfig = field(default_factory=BotConfig)
    lockstep: LockstepConfig = field(default_factory=LockstepConfig)
    midas: MidasConfig = field(default_factory=MidasConfig)
