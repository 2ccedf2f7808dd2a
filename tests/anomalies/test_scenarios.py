"""The scenario library and the evaluation's baselines: seeded, both halves differ, every behaviour planted."""

from __future__ import annotations

import numpy as np

from clout.evaluation import longhorizon, scenarios

DAY_S = 86_400
START_S = 1_341_100_800


def world() -> scenarios.World:
    rng = np.random.default_rng(0)
    popular = [str(i) for i in range(1, 40_001)]
    engaged = np.array(popular, dtype=object)[np.minimum(rng.zipf(1.5, 20_000), 40_000) - 1]
    return scenarios.World(START_S, START_S + 7 * DAY_S, popular, popular[:20_000], 10_000_000, engaged)


def test_every_behaviour_is_planted_seeded_and_the_halves_differ():
    dev = scenarios.plant_scenarios(world(), "development")
    again = scenarios.plant_scenarios(world(), "development")
    held = scenarios.plant_scenarios(world(), "held-back")
    assert set(dev.accounts) == set(scenarios.BEHAVIOURS) == set(held.accounts)
    assert len(scenarios.BEHAVIOURS) >= 8
    for a, b in zip(dev.columns(), again.columns(), strict=True):
        assert np.array_equal(a, b)
    assert not np.array_equal(dev.columns()[0][:100], held.columns()[0][:100])
    ts, actor, _target, _kind = dev.columns()
    assert ts.min() >= START_S * 1000 and ts.max() < (START_S + 7 * DAY_S) * 1000
    planted = set().union(*dev.accounts.values())
    assert planted <= set(actor.tolist())
    assert all(int(a) >= 10_000_000 for a in planted)


def test_human_paced_times_sleep_when_diurnal():
    rng = np.random.default_rng(1)
    t = scenarios.human_times(rng, START_S, START_S + 5 * DAY_S, 1800, 1.0, True, wake_hour=7, awake_hours=16)
    hours = ((t - START_S) // 3600) % 24
    assert len(t) > 50 and ((hours >= 7) & (hours < 23)).all()
    gaps = np.diff(t)
    assert gaps.std() / gaps.mean() > 0.5  # log-normal, not clockwork


def test_rate_baseline_counts_the_busiest_hour():
    ts = np.array([0, 60, 120, 2000, 3500, 9000], dtype=np.int64) * 1000 + 1_341_100_800_000
    actor = np.array(["a", "a", "a", "a", "a", "b"], dtype=object)
    target = np.array(["x"] * 6, dtype=object)
    stream = longhorizon.Stream.of(ts, actor, target, np.zeros(6, dtype=np.int8))
    best = longhorizon.busiest_hour(stream)
    assert best["b"] == 1
    assert best["a"] == 5  # 0 s .. 3500 s fall in four consecutive 15-minute slices
