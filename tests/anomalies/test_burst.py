"""Burst: a quiet account's sudden volume is flagged; steady growth, stars and small newcomers are not."""

from __future__ import annotations

from clout.anomalies.burst import Volume, burst_scores, detect_bursts
from clout.anomalies.config import BurstConfig

CONFIG = BurstConfig(baseline_windows=24, min_volume=100, min_z=8.0, min_ratio=8.0)


def received(counts: list[int]) -> list[Volume]:
    return [Volume(n, 0) for n in counts]


def test_quiet_account_suddenly_receiving_hundreds_of_reposts_is_flagged() -> None:
    history = {"quiet": received([0, 1, 0, 2, 0, 0, 1, 0] * 3)}
    flags = detect_bursts({"quiet": Volume(300, 1)}, history, 24, "0-3600", CONFIG)
    assert [f.user for f in flags] == ["quiet"]
    flag = flags[0]
    assert flag.detector == "burst" and 0.5 <= flag.score <= 1.0
    assert flag.evidence["received"] == 300 and flag.evidence["received_median"] == 0.0
    assert "received 300 interactions" in flag.reasons[0]


def test_account_posting_at_50x_its_normal_rate_is_flagged_on_what_it_sent() -> None:
    history = {"poster": [Volume(1, 4)] * 24}
    flags = detect_bursts({"poster": Volume(1, 200)}, history, 24, "0-3600", CONFIG)
    assert len(flags) == 1
    assert flags[0].reasons[0].startswith("sent 200 interactions in the window, 50x its median of 4")


def test_steady_growth_is_not_a_burst() -> None:
    growing = [round(20 * 1.1**k) for k in range(25)]  # +10 % every hour for a day
    scores = burst_scores({"rising": Volume(growing[-1], 0)}, {"rising": received(growing[:-1])}, 24, CONFIG)
    assert not scores["rising"][0].fired and scores["rising"][0].z < CONFIG.min_z


def test_a_star_at_its_usual_volume_is_not_a_burst() -> None:
    history = {"star": received([2000, 2100, 1900, 2050] * 6)}
    assert detect_bursts({"star": Volume(2300, 5)}, history, 24, "0-3600", CONFIG) == []


def test_new_accounts_need_the_minimum_volume() -> None:
    """No history at all (all-zero baseline): only the absolute volume guard stands between a newcomer
    and a flag, so a handful of interactions is never a burst, hundreds are."""
    current = {"newcomer": Volume(40, 0), "bought": Volume(400, 0)}
    flags = detect_bursts(current, {}, 0, "0-3600", CONFIG)
    assert [f.user for f in flags] == ["bought"]


def test_missing_windows_count_as_zero_and_only_available_windows_are_used() -> None:
    """Only 2 earlier windows exist: a history of 24 would wrongly dilute, a short one is padded."""
    scores = burst_scores({"a": Volume(150, 0)}, {"a": received([150])}, 2, CONFIG)
    assert scores["a"][0].median == 75.0 and not scores["a"][0].fired
