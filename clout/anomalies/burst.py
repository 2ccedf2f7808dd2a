"""Bursts: an account's activity in a window far above its own robust baseline.

Each account is its own reference: a star receiving 2,000 reposts an hour is normal for the star,
and a quiet account receiving 300 is not. The baseline is the median and MAD of the account's
volume over the previous non-overlapping windows (robust to an earlier burst in the baseline),
and the scale has a Poisson floor (sqrt of the median, at least 1) so that an account whose every
window looked the same is not flagged for one more interaction. New and quiet accounts have an
all-zero baseline; the minimum absolute volume is what keeps them from being flagged for a handful.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from clout.anomalies.config import BurstConfig
from clout.anomalies.flag import Flag

MAD_TO_SD = 1.4826  # MAD of a normal distribution times this is its standard deviation
DIRECTIONS = ("received", "sent")


class Volume(NamedTuple):
    """Interactions an account received and sent in one window."""

    received: int
    sent: int


class BurstScore(NamedTuple):
    """One direction's verdict: `z` is the robust z-score, `fired` whether every threshold was met."""

    direction: str
    volume: int
    median: float
    mad: float
    z: float
    ratio: float
    fired: bool


def _baseline_matrix(users: Sequence[str], history: Mapping[str, Sequence[Volume]], windows: int) -> np.ndarray:
    """users x windows x 2 volumes; windows an account was not active in (or has no entry for) are 0."""
    out = np.zeros((len(users), max(windows, 0), 2), dtype=np.float64)
    if windows <= 0:
        return out
    for i, user in enumerate(users):
        past = history.get(user)
        if past:
            rows = np.asarray(past[-windows:], dtype=np.float64).reshape(-1, 2)
            out[i, windows - len(rows):] = rows
    return out


def burst_scores(
    current: Mapping[str, Volume],
    history: Mapping[str, Sequence[Volume]],
    windows_back: int,
    config: BurstConfig | None = None,
) -> dict[str, tuple[BurstScore, BurstScore]]:
    """(received, sent) scores of every account active in the current window.

    `history[user]` lists the account's volumes in up to `windows_back` earlier non-overlapping
    windows, oldest first; `windows_back` says how many such windows exist (fewer at the start of a
    stream), and missing entries count as 0, so the caller only stores accounts that were active.
    """
    config = config or BurstConfig()
    users = list(current)
    if not users:
        return {}
    windows = min(windows_back, config.baseline_windows)
    now = np.asarray([current[u] for u in users], dtype=np.float64).reshape(-1, 2)
    past = _baseline_matrix(users, history, windows)
    if windows:
        median = np.median(past, axis=1)
        mad = np.median(np.abs(past - median[:, None, :]), axis=1)
    else:
        median = np.zeros_like(now)
        mad = np.zeros_like(now)
    scale = np.maximum.reduce([MAD_TO_SD * mad, np.sqrt(median), np.ones_like(median)])
    z = (now - median) / scale
    ratio = (now + 1.0) / (median + 1.0)
    fired = (now >= config.min_volume) & (z >= config.min_z) & (ratio >= config.min_ratio)
    result: dict[str, tuple[BurstScore, BurstScore]] = {}
    for i, user in enumerate(users):
        pair = tuple(
            BurstScore(d, int(now[i, j]), float(median[i, j]), float(mad[i, j]), float(z[i, j]),
                       float(ratio[i, j]), bool(fired[i, j]))
            for j, d in enumerate(DIRECTIONS)
        )  # fmt: skip
        result[user] = pair  # type: ignore[assignment]
    return result


def burst_strength(score: BurstScore, config: BurstConfig) -> float:
    """Robust z mapped into [0, 1): 0.5 at the z threshold, approaching 1 far above it."""
    return score.z / (score.z + config.min_z) if score.z > 0 else 0.0


def detect_bursts(
    current: Mapping[str, Volume],
    history: Mapping[str, Sequence[Volume]],
    windows_back: int,
    window: str,
    config: BurstConfig | None = None,
) -> list[Flag]:
    """Flags for the accounts whose received or sent volume bursts in `window` (see burst_scores)."""
    config = config or BurstConfig()
    flags = []
    for user, pair in burst_scores(current, history, windows_back, config).items():
        fired = [s for s in pair if s.fired]
        if not fired:
            continue
        evidence: dict[str, float] = {"baseline_windows": float(min(windows_back, config.baseline_windows))}
        for s in pair:
            evidence.update({s.direction: s.volume, f"{s.direction}_median": s.median, f"{s.direction}_mad": s.mad,
                             f"{s.direction}_z": round(s.z, 3)})
        reasons = tuple(_reason(s, evidence["baseline_windows"]) for s in fired)
        score = max(burst_strength(s, config) for s in fired)
        flags.append(Flag(user, window, "burst", score, reasons, evidence))
    return flags


def _reason(score: BurstScore, windows: float) -> str:
    against = (f"against a median of {score.median:g}" if score.median < 1
               else f"{score.volume / score.median:.0f}x its median of {score.median:g}")
    return (f"{score.direction} {score.volume} interactions in the window, {against} over the previous "
            f"{windows:g} windows (robust z {score.z:.1f})")
