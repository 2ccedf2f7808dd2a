"""Thresholds of the detectors (four per window and the account verdicts), in one place so the
pipeline, `clout eval` and the docs agree.

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
class VerdictConfig:
    """Ramps (human value -> bot value) of the evidence, and the flag threshold. Chosen on the
    development half of `clout eval` only (docs/anomalies.md has the figures)."""

    threshold: float = 0.05  # what `clout eval` chose on development: lowest with <= 0.4 % FP there
    window_ms: int = 3_600_000  # verdicts judge the accounts that acted in the window ending at now_ms
    min_actions: int = 5  # below this an account gets no verdict: no evidence is not suspicion
    own_min_actions: int = 20  # for the evidence from the account's own record (not from others)
    census_min_actions: int = 5  # accounts with this many actions count in a target's campaign census
    amplify_share: tuple[float, float] = (0.7, 0.9)
    active_days: tuple[float, float] = (2.0, 4.0)
    steady_actions: tuple[float, float] = (25.0, 60.0)
    concentration: tuple[float, float] = (0.3, 0.6)  # share of actions to the top-8 targets (guaranteed counts)
    rhythm_entropy: tuple[float, float] = (0.86, 0.95)  # hour-of-day entropy / log 24
    hours_active: tuple[float, float] = (18.0, 22.0)
    spray_targets_share: tuple[float, float] = (0.45, 0.25)  # top-8 share: low = many distinct targets
    reciprocity: tuple[float, float] = (0.1, 0.02)
    fresh_days: tuple[float, float] = (3.0, 1.5)  # in-stream age, for accounts seen after the stream began
    fresh_rate: tuple[float, float] = (15.0, 40.0)  # actions per day since first seen
    campaign_engagers: tuple[float, float] = (6.0, 15.0)  # accounts engaging the same target repeatedly
    campaign_share: tuple[float, float] = (0.2, 0.5)  # share of the target's traffic from those accounts
    campaign_count: tuple[float, float] = (1.0, 3.0)  # the account's own (guaranteed) actions on it
    campaign_days: tuple[float, float] = (1.0, 2.0)  # days the account engaged it
    campaign_commit: tuple[float, float] = (0.05, 0.15)  # share of the account's actions on it
    fast_partners: tuple[float, float] = (2.0, 5.0)  # accounts it amplified within a minute of, twice or more
    similar_bands: tuple[float, float] = (1.0, 3.0)  # LSH bands of its repeated targets shared with others
    similar_partners: tuple[float, float] = (1.0, 4.0)  # accounts in its most shared band
    min_repeated: float = 3.0  # repeated non-celebrity targets before similarity is looked at
    max_bucket: int = 50  # a band bucket with more accounts is an audience, not a network
    stream_start_ms: int = -1  # fresh-account evidence only for accounts first seen a day after this


@dataclass(frozen=True)
class Thresholds:
    """Every detector's settings; what the pipeline's DetectAnomalies step takes."""

    burst: BurstConfig = field(default_factory=BurstConfig)
    bot: BotConfig = field(default_factory=BotConfig)
    lockstep: LockstepConfig = field(default_factory=LockstepConfig)
    midas: MidasConfig = field(default_factory=MidasConfig)
    account: VerdictConfig = field(default_factory=VerdictConfig)
