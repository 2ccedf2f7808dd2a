"""Writes results into Redis exactly as layout v1 documents them, for the serving tests and bench/serve.py.

The serving layer is tested against what the contract (schemas/redis_layout.py) says the pipeline
writes, not against the pipeline itself, so the two can be built side by side. `seed_world` writes
a small deterministic world whose answers the tests know: two windows (one closed, one open), users
on two platforms, users whose raw score is inflated by flagged engagement, three detectors' flags,
a coordination group, histories and the flag stream.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from clout.settings import Settings
from clout.store.layout import KeyLayout

TTL_S = Settings.retention_seconds  # every result key's TTL, as the pipeline sets it with the default settings
PLATFORMS = ("synthetic", "higgs")
INFLATED = {"u3": 20.0, "u7": 35.0, "u8": 30.0}  # user -> clean score (raw score far above it)
HISTORY_WINDOWS = 6


@dataclass
class Seeder:
    """One pipeline of writes; `flush()` sends them (every key gets the TTL, as the pipeline's do)."""

    client: redis.Redis
    layout: KeyLayout
    ttl: int = TTL_S
    pipe: Any = None
    keys: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.pipe = self.client.pipeline(transaction=False)

    def _touch(self, key: str) -> None:
        self.keys.add(key)

    def flush(self) -> None:
        for key in self.keys:
            self.pipe.expire(key, self.ttl)
        self.pipe.execute()
        self.keys.clear()

    def window(self, window: str, *, final: bool, users: int, events: int) -> None:
        end = int(window.split("-")[1])
        self.pipe.zadd(self.layout.windows(), {window: end})
        self.pipe.hset(self.layout.window_meta(window), mapping={"users": users, "events": events, "final": int(final)})
        self._touch(self.layout.windows())
        self._touch(self.layout.window_meta(window))

    def influence(self, window: str, user: str, influence: dict[str, Any], raw: float, clean: float) -> None:
        """The influence hash (rounded scores) and the score, per-platform and clean boards (unrounded)."""
        keys = [self.layout.influence(window), self.layout.score_board(window),
                self.layout.score_board(window, influence["platform"]), self.layout.clean_board(window)]
        self.pipe.hset(keys[0], user, orjson.dumps(influence))
        self.pipe.zadd(keys[1], {user: raw})
        self.pipe.zadd(keys[2], {user: raw})
        self.pipe.zadd(keys[3], {user: clean})
        for key in keys:
            self._touch(key)

    def activity(self, window: str, user: str, activity: dict[str, Any]) -> None:
        received = sum(activity["received"].values())
        keys = [self.layout.activity(window), self.layout.leaderboard(window, "received"),
                self.layout.leaderboard(window, "engagers")]
        self.pipe.hset(keys[0], user, orjson.dumps(activity))
        self.pipe.zadd(keys[1], {user: received})
        self.pipe.zadd(keys[2], {user: activity["engagers"]})
        for key in keys:
            self._touch(key)

    def latest(self, user: str, influence: dict[str, Any], window: str, long_term: float) -> None:
        """The newest window's influence without `final` (that is the window's), plus window, end, long_term."""
        key = self.layout.user_latest(user)
        end = int(window.split("-")[1])
        value = {k: v for k, v in influence.items() if k != "final"}
        self.pipe.set(key, orjson.dumps({**value, "window": window, "end": end, "long_term": long_term}))
        self._touch(key)

    def history(self, user: str, window: str, score: int, clean_score: int | None) -> None:
        key = self.layout.user_history(user)
        end = int(window.split("-")[1])
        self.pipe.hset(key, window, orjson.dumps({"end": end, "score": score, "clean_score": clean_score}))
        self._touch(key)

    def flag(self, flag: dict[str, Any], publish: bool = True) -> None:
        """User flags hash, the window's flagged sets (highest score wins) and the flag stream."""
        window, user = flag["window"], flag["user"]
        keys = [self.layout.user_flags(user), self.layout.flagged(window),
                self.layout.flagged(window, flag["detector"])]
        self.pipe.hset(keys[0], flag["detector"], orjson.dumps(flag))
        self.pipe.zadd(keys[1], {user: flag["score"]}, gt=True)
        self.pipe.zadd(keys[2], {user: flag["score"]})
        for key in keys:
            self._touch(key)
        if publish:
            self.pipe.xadd(self.layout.flag_stream(), {"flag": orjson.dumps(flag)}, maxlen=10_000, approximate=True)

    def group(self, group: dict[str, Any]) -> None:
        keys = [self.layout.group(group["id"]), self.layout.groups(group["window"])]
        self.pipe.set(keys[0], orjson.dumps(group))
        self.pipe.zadd(keys[1], {group["id"]: len(group["members"])})
        for key in keys:
            self._touch(key)


# --- the world the tests know ---------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    old: str  # closed window (final = 1)
    new: str  # open window, the latest
    users: list[str]
    scores: dict[str, float]  # user -> unrounded raw score in `new` (the boards' figure)
    cleans: dict[str, float]
    flags: list[dict[str, Any]]
    group: dict[str, Any]


def rounded(score: float) -> int:
    """Half up, as the pipeline rounds the scores it shows."""
    return math.floor(score + 0.5)


def influence_of(score: float, clean: float, rank: int, users: int, platform: str, final: bool) -> dict[str, Any]:
    return {"score": rounded(score), "reach": int(score * 37), "amplification": round(score / 200, 4),
            "network": score / 10_000,
            "parts": {"reach": round(score / 100, 4), "amplification": round(score / 200, 4),
                      "network": round(score / 150, 4)},
            "rank": rank, "percentile": round(100 * (users - rank) / users, 2), "platform": platform,
            "clean_score": rounded(clean), "final": final}


def activity_of(score: float) -> dict[str, Any]:
    likes, reposts = int(score * 3), int(score)
    return {"received": {"like": likes, "repost": reposts}, "sent": {"like": 2}, "engagers": int(score * 2),
            "in": likes + reposts, "out": 2}


def seed_world(client: redis.Redis, layout: KeyLayout, users: int = 40, now: float | None = None,
               chunk: int = 2_000) -> World:
    """Two one-hour windows ending at the last full hour and an hour later; `users` users in each."""
    now = time.time() if now is None else now
    end = int(now) // 3600 * 3600
    old, new = f"{end - 3600}-{end}", f"{end - 1800}-{end + 1800}"
    names = [f"u{i}" for i in range(1, users + 1)]
    scores = {u: round(100 - 99 * i / max(users - 1, 1), 3) for i, u in enumerate(names)}
    cleans = {u: INFLATED.get(u, scores[u]) for u in names}
    seeder = Seeder(client, layout)
    seeder.window(old, final=True, users=users, events=users * 5)
    seeder.window(new, final=False, users=users, events=users * 6)
    for rank, user in enumerate(names, start=1):
        _seed_user(seeder, user, rank, users, scores[user], cleans[user], old, new)
        if rank % chunk == 0:
            seeder.flush()
    flags, group = _seed_anomalies(seeder, new)
    seeder.flush()
    return World(old=old, new=new, users=names, scores=scores, cleans=cleans, flags=flags, group=group)


def _seed_user(seeder: Seeder, user: str, rank: int, users: int, score: float, clean: float, old: str,
               new: str) -> None:
    platform = PLATFORMS[rank % 2]
    for window, final, factor in ((old, True, 0.9), (new, False, 1.0)):
        influence = influence_of(score * factor, clean * factor, rank, users, platform, final)
        seeder.influence(window, user, influence, score * factor, clean * factor)
        seeder.activity(window, user, activity_of(score * factor))
    seeder.latest(user, influence_of(score, clean, rank, users, platform, False), new, long_term_of(score))
    if rank <= 10:
        start, end = (int(part) for part in new.split("-"))
        for back in range(HISTORY_WINDOWS - 1, -1, -1):
            window = f"{start - back * 900}-{end - back * 900}"
            seeder.history(user, window, rounded(score * (1 - back * 0.05)), rounded(clean * (1 - back * 0.04)))


def long_term_of(score: float) -> float:
    return round(score * 0.8, 2)


def _seed_anomalies(seeder: Seeder, window: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    group_id = f"g1-{window.split('-')[0]}"
    flags = [
        {"user": "u3", "window": window, "detector": "burst", "score": 0.93,
         "reasons": ["120 likes from 118 new accounts within 14 minutes"],
         "evidence": {"engagers": 118, "minutes": 14, "baseline_per_hour": 2.5}, "group": None},
        {"user": "u7", "window": window, "detector": "lockstep", "score": 0.88,
         "reasons": ["reposted the same 9 posts as 2 other accounts within 5 s"],
         "evidence": {"synchrony": 0.91, "shared_targets": 9}, "group": group_id},
        {"user": "u8", "window": window, "detector": "lockstep", "score": 0.81,
         "reasons": ["reposted the same 9 posts as 2 other accounts within 5 s"],
         "evidence": {"synchrony": 0.9, "shared_targets": 9}, "group": group_id},
        {"user": "u12", "window": window, "detector": "bot", "score": 0.75,
         "reasons": ["acts every 60 s round the clock", "no followers"],
         "evidence": {"interval_cv": 0.03, "night_share": 0.33}, "group": None},
        {"user": "u12", "window": window, "detector": "microcluster", "score": 0.4,
         "reasons": ["burst of new edges to one dense cluster"], "evidence": {"anomaly": 4.2}, "group": None},
    ]
    group = {"id": group_id, "window": window, "members": ["u7", "u8", "u9"], "targets": ["u5"],
             "synchrony": 0.91, "score": 0.88}
    for flag in flags:
        seeder.flag(flag)
    seeder.group(group)
    return flags, group
