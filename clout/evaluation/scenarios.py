"""A scenario library written apart from clout/connectors/synthetic.py: behaviours to inject into a real stream.

Why apart: thresholds tuned on the project's own generator learn its fingerprint (clockwork gaps).
These behaviours are written from descriptions of real automation and campaigns (human-paced
log-normal gaps, accounts that sleep or do not, farms of fresh accounts, rings that rotate, spam at
human rates), each parameterised and seeded. Every behaviour has a development parameter set and
a held-back one (other seeds, other values): detectors are tuned on the first and judged on the second.

Each scenario returns columns (ts ms, actor, target, kind) over string account names, the planted
accounts per behaviour, and the real accounts that benefit (targets), which are left out of the
background negatives. Planted accounts get numeric ids above every background id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from clout.model.kinds import KIND_INDEX

HOUR_S = 3600
DAY_S = 86_400
REPOST, MENTION, REPLY = KIND_INDEX["repost"], KIND_INDEX["mention"], KIND_INDEX["reply"]


@dataclass
class World:
    """The background the behaviours are planted into."""

    start_s: int
    end_s: int
    popular: list[str]  # background accounts by activity received, most first
    active: list[str]  # background actors (any activity), for spam targets
    next_id: int  # first unused numeric id
    engaged: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))  # background events' targets

    def fresh(self, n: int) -> list[str]:
        ids = [str(self.next_id + i) for i in range(n)]
        self.next_id += n
        return ids


@dataclass
class Planted:
    ts: list[np.ndarray] = field(default_factory=list)
    actor: list[np.ndarray] = field(default_factory=list)
    target: list[np.ndarray] = field(default_factory=list)
    kind: list[np.ndarray] = field(default_factory=list)
    accounts: dict[str, set[str]] = field(default_factory=dict)
    beneficiaries: set[str] = field(default_factory=set)

    def add(self, ts: np.ndarray, actor: object, target: object, kind: object) -> None:
        n = len(ts)
        self.ts.append(np.asarray(ts, dtype=np.int64))
        self.actor.append(np.broadcast_to(np.asarray(actor, dtype=object), (n,)).copy())
        self.target.append(np.broadcast_to(np.asarray(target, dtype=object), (n,)).copy())
        self.kind.append(np.broadcast_to(np.asarray(kind, dtype=np.int8), (n,)).copy())

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if not self.ts:
            return (np.zeros(0, np.int64), np.zeros(0, object), np.zeros(0, object), np.zeros(0, np.int8))
        return (np.concatenate(self.ts), np.concatenate(self.actor), np.concatenate(self.target),
                np.concatenate(self.kind))


# --------------------------------------------------------------------------- timing


def human_times(rng: np.random.Generator, start_s: float, end_s: float, median_gap_s: float, sigma: float,
                diurnal: bool, wake_hour: float = 7.0, awake_hours: float = 16.0) -> np.ndarray:
    """Action times (s) with log-normal gaps; a diurnal account only acts in its waking hours
    (gaps are drawn in waking time, so a night is skipped, not compressed)."""
    if end_s <= start_s:
        return np.zeros(0)
    span = (end_s - start_s) * (awake_hours / 24 if diurnal else 1.0)
    mean = median_gap_s * np.exp(sigma**2 / 2)
    n = int(span / mean * 1.5) + 10
    t = np.cumsum(rng.lognormal(np.log(median_gap_s), sigma, size=n))
    t = t[t < span]
    if not diurnal:
        return start_s + t
    day0 = np.floor(start_s / DAY_S) * DAY_S
    offset = (start_s - day0 - wake_hour * HOUR_S) % DAY_S
    t = t + min(offset, awake_hours * HOUR_S)
    days, within = np.divmod(t, awake_hours * HOUR_S)
    real = day0 + wake_hour * HOUR_S + days * DAY_S + within
    return real[(real >= start_s) & (real < end_s)]


def _ms(seconds: np.ndarray) -> np.ndarray:
    return (np.asarray(seconds) * 1000).astype(np.int64)


def _camouflage(rng: np.random.Generator, world: World, out: Planted, account: str, per_day: float,
                start_s: float) -> None:
    """Ordinary-looking activity: diurnal, mixed kinds, each action's target drawn from a random real
    background event (so camouflage engages accounts exactly as often as real users do)."""
    if per_day <= 0:
        return
    times = human_times(rng, start_s, world.end_s, 16 * HOUR_S / per_day, 1.2, True,
                        wake_hour=rng.uniform(5, 10))
    targets = world.engaged[rng.integers(0, len(world.engaged), len(times))]
    kinds = rng.choice([REPOST, MENTION, REPLY], p=[0.6, 0.3, 0.1], size=len(times))
    out.add(_ms(times), account, targets, kinds)


def _mid_rank(rng: np.random.Generator, world: World, n: int, lo: int = 2000, hi: int = 30_000) -> list[str]:
    """Ordinary real accounts (not celebrities) to be a campaign's beneficiaries."""
    scale = min(1.0, len(world.popular) / 300_000)  # a shorter background has fewer accounts
    pool = world.popular[int(lo * scale):int(hi * scale)]
    return [pool[i] for i in rng.choice(len(pool), size=n, replace=False)]


# --------------------------------------------------------------------------- the behaviours


def human_bots(rng: np.random.Generator, world: World, out: Planted, p: dict, diurnal: bool, label: str) -> None:
    """Automated amplifiers at a human pace: log-normal gaps, mostly reposts of a few accounts."""
    accounts = world.fresh(p["n"])
    out.accounts[label] = set(accounts)
    for a in accounts:
        pool = _mid_rank(rng, world, int(rng.integers(*p["pool"])), 0, 20_000)
        times = human_times(rng, world.start_s + rng.uniform(0, DAY_S / 2), world.end_s,
                            rng.uniform(*p["gap_min"]) * 60, rng.uniform(*p["sigma"]), diurnal,
                            wake_hour=rng.uniform(4, 11))
        repost = rng.random(len(times)) < p["repost"]
        targets = np.array(pool, dtype=object)[rng.integers(0, len(pool), len(times))]
        other = np.array(world.popular[:3000], dtype=object)
        other = other[rng.integers(0, len(other), len(times))]
        out.add(_ms(times), a, np.where(repost, targets, other), np.where(repost, REPOST, MENTION))


def farm(rng: np.random.Generator, world: World, out: Planted, p: dict) -> None:
    """Amplification farm: fresh accounts appearing mid-stream to boost a few clients."""
    accounts = world.fresh(p["n"])
    clients = _mid_rank(rng, world, p["clients"])
    out.accounts["amplification farm"] = set(accounts)
    out.beneficiaries.update(clients)
    for a in accounts:
        born = world.start_s + rng.uniform(*p["born_day"]) * DAY_S
        times = human_times(rng, born, world.end_s, DAY_S / rng.uniform(*p["per_day"]), 1.0, False)
        out.add(_ms(times), a, np.array(clients, dtype=object)[rng.integers(0, len(clients), len(times))], REPOST)
        _camouflage(rng, world, out, a, p["camouflage"], born)


def slow_ring(rng: np.random.Generator, world: World, out: Planted, p: dict) -> None:
    """Slow coordination with camouflage: a ring amplifies its targets a few times a day each, never
    together in time, over days, among ordinary activity."""
    members = world.fresh(p["n"])
    targets = _mid_rank(rng, world, p["targets"])
    out.accounts["slow coordination"] = set(members)
    out.beneficiaries.update(targets)
    for a in members:
        times = human_times(rng, world.start_s, world.end_s, 16 * HOUR_S / rng.uniform(*p["per_day"]), 1.0, True,
                            wake_hour=rng.uniform(5, 10))
        out.add(_ms(times), a, np.array(targets, dtype=object)[rng.integers(0, len(targets), len(times))], REPOST)
        _camouflage(rng, world, out, a, rng.uniform(*p["camouflage"]), world.start_s)


def rotating_ring(rng: np.random.Generator, world: World, out: Planted, p: dict) -> None:
    """A ring that rotates its members: each day a different subset amplifies the sources' posts
    within seconds to a minute; the others rest."""
    pool = world.fresh(p["pool"])
    sources = _mid_rank(rng, world, p["sources"])
    out.accounts["rotating ring"] = set(pool)
    out.beneficiaries.update(sources)
    for day in range(int((world.end_s - world.start_s) // DAY_S)):
        crew = rng.choice(pool, size=p["crew"], replace=False)
        posts = world.start_s + day * DAY_S + np.sort(rng.uniform(8, 23, size=p["posts_per_day"])) * HOUR_S
        for post in posts:
            source = sources[int(rng.integers(len(sources)))]
            who = rng.choice(crew, size=max(2, int(len(crew) * rng.uniform(0.5, 1.0))), replace=False)
            delay = rng.lognormal(np.log(p["delay_s"]), 0.8, size=len(who))
            for a, d in zip(who.tolist(), delay.tolist(), strict=True):
                out.add(_ms(np.array([post + d])), a, source, REPOST)
    for a in pool:
        _camouflage(rng, world, out, a, rng.uniform(*p["camouflage"]), world.start_s)


def reply_spam(rng: np.random.Generator, world: World, out: Planted, p: dict) -> None:
    """Reply/mention spam at human rates: each action to another stranger, none answered."""
    accounts = world.fresh(p["n"])
    out.accounts["reply/mention spam"] = set(accounts)
    active = np.array(world.active, dtype=object)
    for a in accounts:
        times = human_times(rng, world.start_s + rng.uniform(0, DAY_S), world.end_s,
                            rng.uniform(*p["gap_min"]) * 60, 1.1, rng.random() < p["diurnal"],
                            wake_hour=rng.uniform(4, 11))
        kinds = np.where(rng.random(len(times)) < 0.5, REPLY, MENTION)
        out.add(_ms(times), a, active[rng.integers(0, len(active), len(times))], kinds)


def follow_train(rng: np.random.Generator, world: World, out: Planted, p: dict) -> None:
    """Follow trains: participants post lists mentioning each other and repost each other's lists
    (Higgs has no follow events, so the train runs on mentions and reposts as on Twitter)."""
    members = world.fresh(p["n"])
    out.accounts["follow train"] = set(members)
    arr = np.array(members, dtype=object)
    for a in members:
        posts = human_times(rng, world.start_s, world.end_s, 16 * HOUR_S / rng.uniform(*p["posts_per_day"]), 1.0,
                            True, wake_hour=rng.uniform(5, 10))
        for t in posts.tolist():
            tagged = rng.choice(arr[arr != a], size=int(rng.integers(*p["tagged"])), replace=False)
            out.add(_ms(np.full(len(tagged), t)), a, tagged, MENTION)
        boosts = human_times(rng, world.start_s, world.end_s, 16 * HOUR_S / rng.uniform(*p["reposts_per_day"]), 1.0,
                             True, wake_hour=rng.uniform(5, 10))
        others = arr[arr != a]
        out.add(_ms(boosts), a, others[rng.integers(0, len(others), len(boosts))], REPOST)
        _camouflage(rng, world, out, a, rng.uniform(*p["camouflage"]), world.start_s)


def hijack(rng: np.random.Generator, world: World, out: Planted, p: dict) -> None:
    """Hashtag-style hijacking: many accounts, each at a human rate, pile onto one target for days."""
    accounts = world.fresh(p["n"])
    target = _mid_rank(rng, world, 1)[0]
    out.accounts["target hijacking"] = set(accounts)
    out.beneficiaries.add(target)
    for a in accounts:
        first = world.start_s + rng.uniform(0, 2) * DAY_S
        last = min(world.end_s, first + rng.uniform(*p["days"]) * DAY_S)
        times = human_times(rng, first, last, 16 * HOUR_S / rng.uniform(*p["per_day"]), 1.0, True,
                            wake_hour=rng.uniform(5, 10))
        out.add(_ms(times), a, target, np.where(rng.random(len(times)) < 0.5, MENTION, REPOST))
        _camouflage(rng, world, out, a, rng.uniform(*p["camouflage"]), world.start_s)


def mixture(rng: np.random.Generator, world: World, out: Planted, p: dict) -> None:
    """One campaign mixing roles on the same clients: a few round-the-clock amplifiers, fresh
    boosters and mention spammers, each at a fraction of the pure behaviours' rates."""
    clients = _mid_rank(rng, world, p["clients"])
    out.beneficiaries.update(clients)
    cl = np.array(clients, dtype=object)
    roles = world.fresh(p["n"])
    out.accounts["mixture"] = set(roles)
    for i, a in enumerate(roles):
        role = i % 3
        start = world.start_s + (rng.uniform(2, 4) * DAY_S if role == 1 else rng.uniform(0, DAY_S / 2))
        times = human_times(rng, start, world.end_s, rng.uniform(*p["gap_min"]) * 60, 1.1, role == 2,
                            wake_hour=rng.uniform(5, 10))
        kind = MENTION if role == 2 else REPOST
        out.add(_ms(times), a, cl[rng.integers(0, len(cl), len(times))], kind)
        _camouflage(rng, world, out, a, rng.uniform(*p["camouflage"]), start)


# --------------------------------------------------------------------------- development / held-back

Behaviour = Callable[[np.random.Generator, World, Planted, dict], None]

BEHAVIOURS: dict[str, Behaviour] = {
    "human-paced bots, diurnal": lambda r, w, o, p: human_bots(r, w, o, p, True, "human-paced bots, diurnal"),
    "human-paced bots, round the clock": lambda r, w, o, p: human_bots(r, w, o, p, False,
                                                                       "human-paced bots, round the clock"),
    "amplification farm": farm,
    "slow coordination": slow_ring,
    "rotating ring": rotating_ring,
    "reply/mention spam": reply_spam,
    "follow train": follow_train,
    "target hijacking": hijack,
    "mixture": mixture,
}

# Held-back values are deliberately elsewhere in each range (mostly slower, smaller, more camouflaged).
PARAMS: dict[str, dict[str, dict]] = {
    "development": {
        "human-paced bots, diurnal": {"n": 40, "pool": (5, 15), "gap_min": (20, 40), "sigma": (0.9, 1.2),
                                      "repost": 0.9},
        "human-paced bots, round the clock": {"n": 40, "pool": (5, 15), "gap_min": (30, 60), "sigma": (0.9, 1.2),
                                              "repost": 0.9},
        "amplification farm": {"n": 80, "clients": 2, "born_day": (2, 4), "per_day": (15, 30), "camouflage": 2},
        "slow coordination": {"n": 25, "targets": 5, "per_day": (3, 6), "camouflage": (3, 6)},
        "rotating ring": {"pool": 50, "sources": 3, "crew": 18, "posts_per_day": 6, "delay_s": 20,
                          "camouflage": (2, 5)},
        "reply/mention spam": {"n": 40, "gap_min": (25, 50), "diurnal": 0.5},
        "follow train": {"n": 30, "posts_per_day": (1, 3), "tagged": (5, 10), "reposts_per_day": (2, 5),
                         "camouflage": (2, 4)},
        "target hijacking": {"n": 150, "days": (3, 5), "per_day": (1, 3), "camouflage": (2, 5)},
        "mixture": {"n": 45, "clients": 3, "gap_min": (40, 90), "camouflage": (1, 3)},
    },
    "held-back": {
        "human-paced bots, diurnal": {"n": 40, "pool": (3, 25), "gap_min": (35, 70), "sigma": (1.1, 1.5),
                                      "repost": 0.8},
        "human-paced bots, round the clock": {"n": 40, "pool": (3, 25), "gap_min": (50, 100), "sigma": (1.1, 1.5),
                                              "repost": 0.8},
        "amplification farm": {"n": 120, "clients": 3, "born_day": (1.5, 5), "per_day": (10, 20), "camouflage": 4},
        "slow coordination": {"n": 20, "targets": 8, "per_day": (2, 4), "camouflage": (5, 10)},
        "rotating ring": {"pool": 80, "sources": 4, "crew": 20, "posts_per_day": 5, "delay_s": 40,
                          "camouflage": (4, 8)},
        "reply/mention spam": {"n": 40, "gap_min": (40, 80), "diurnal": 0.7},
        "follow train": {"n": 40, "posts_per_day": (0.7, 2), "tagged": (4, 8), "reposts_per_day": (1, 3),
                         "camouflage": (3, 6)},
        "target hijacking": {"n": 250, "days": (2.5, 4), "per_day": (1, 2.5), "camouflage": (3, 8)},
        "mixture": {"n": 60, "clients": 4, "gap_min": (60, 120), "camouflage": (2, 5)},
    },
}
SEEDS = {"development": 1000, "held-back": 9000}


def plant_scenarios(world: World, half: str, only: set[str] | None = None) -> Planted:
    """Every behaviour of one half, each from its own seeded generator."""
    out = Planted()
    for i, (name, behaviour) in enumerate(BEHAVIOURS.items()):
        if only and name not in only:
            continue
        rng = np.random.Generator(np.random.PCG64(SEEDS[half] + i))
        behaviour(rng, world, out, PARAMS[half][name])
    return out
