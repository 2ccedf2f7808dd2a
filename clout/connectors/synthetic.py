"""Deterministic synthetic social activity with planted anomalies and their ground truth.

Why it exists: detectors and influence metrics can only be evaluated on data whose answer is
known, and the demo and tests need a stream that looks like a real platform without touching one.
The stream is generated in numpy arrays (fast enough for a million events) and emitted lazily as
InteractionEvents sorted by event time.

What the stream contains:

* normal users on a follower graph with heavy-tailed popularity (Zipf) and activity, a smooth
  24 h rhythm in UTC (peak 16:00, trough 04:00), Poisson-like timing, a realistic mix of kinds,
  repost cascades through the reposter's followers within minutes, and reciprocity (follow-back,
  reply threads, message conversations);
* bots: clockwork-regular, round the clock, a handful of targets, mostly reposts and likes, nobody
  follows them; a ``camouflage`` share of their actions copies a normal user's action instead;
* a coordinated ring reposting the same post of one of its targets within seconds, many times;
* a purchased-engagement burst: fresh accounts like/repost/follow one quiet account within
  10-30 minutes and then (nearly) vanish.

Item model: ``content_id`` is the item an event creates (the repost, reply, quote or mentioning
post; none for likes, follows and messages); ``parent_id`` is the item it acts on (the item
reposted, replied to, quoted or liked). A child's ``parent_id`` therefore equals its parent
event's ``content_id``, so cascades and threads can be rebuilt; items created before the stream
(original posts) have ids like ``7-u123456-p0`` and are not events. The target of an action on an
item is that item's author (for a repost of a repost: the reposter).

User ids (``u`` + number) are drawn from one random id space for everyone, planted accounts
included, so an id never gives the answer away; the truth file does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from clout.schemas.event import InteractionEvent, event_id_for

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

# Kind codes used in the arrays; the names are the schema's KINDS.
KIND_NAMES = ("like", "repost", "reply", "mention", "quote", "follow", "message")
KIND_OBJ = np.array(KIND_NAMES, dtype=object)
LIKE, REPOST, REPLY, MENTION, QUOTE, FOLLOW, MESSAGE = range(7)
CREATES_ITEM = np.array([False, True, True, True, True, False, False])
HAS_LANG = np.array([False, False, True, True, True, False, False])
# Spontaneous actions of normal users (cascades and replies add reposts and replies on top).
ROOT_MIX = np.array([0.44, 0.20, 0.11, 0.07, 0.05, 0.09, 0.04])
ACTS_ON_POST = np.array([True, True, True, False, True, False, False])
CASCADE_KINDS = np.array([REPOST, LIKE, REPLY, QUOTE])
CASCADE_MIX = np.array([0.55, 0.33, 0.07, 0.05])
# Reciprocity, indexed by the kind received: chance of answering, how, and median delay.
RECIP_P = np.array([0.04, 0.0, 0.35, 0.30, 0.15, 0.30, 0.50])
RECIP_KIND = np.array([LIKE, LIKE, REPLY, REPLY, REPLY, FOLLOW, MESSAGE])
RECIP_DELAY_MS = np.array([60, 1, 8, 20, 30, 120, 4]) * MINUTE_MS
LANGS = np.array(["en", "es", "pt", "ja", "fr", "de", "ar", "id"], dtype=object)
LANG_P = np.array([0.52, 0.12, 0.08, 0.08, 0.06, 0.05, 0.05, 0.04])

PEAK_HOUR_UTC = 16.0
DIURNAL_AMPLITUDE = 0.6  # peak/trough rate ratio (1 + a) / (1 - a) = 4
BOT_JITTER = 0.03  # sd of a bot's timing error as a share of its interval
RING_PARTICIPATION = 0.92
MAX_GENERATIONS = 40
CHUNK = 65_536


@dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the generator; the defaults give a demo-sized two-day stream."""

    users: int = 10_000
    events: int = 200_000
    seed: int = 7
    start_ms: int = 1_700_000_000_000  # event time of the first event (UTC ms)
    days: float = 2.0  # span of event time covered by the stream
    platform: str = "synthetic"
    bots: int = 20  # planted bot accounts
    ring_size: int = 12  # members of the coordinated amplification ring
    ring_targets: int = 15  # distinct targets the ring amplifies
    purchase_accounts: int = 300  # fresh accounts in the purchased-engagement burst
    camouflage: float = 0.3  # share of a bot's actions that imitate normal users


@dataclass
class GroundTruth:
    """Which accounts were planted, so a detector's output can be scored against the answer."""

    bots: list[str]
    ring_members: list[str]
    ring_targets: list[str]
    purchase_target: str
    purchase_accounts: list[str]
    purchase_window_ms: tuple[int, int]  # [start, end) of the burst
    config: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (the window becomes a two-element list)."""
        record = dataclasses.asdict(self)
        record["purchase_window_ms"] = list(self.purchase_window_ms)
        return record


def write_truth(truth: GroundTruth, path: str | Path) -> None:
    """Write the answer key next to a generated stream, readable by people and by scorers."""
    Path(path).write_bytes(orjson.dumps(truth.to_dict(), option=orjson.OPT_INDENT_2) + b"\n")


# --------------------------------------------------------------------------- internal arrays


@dataclass
class _Events:
    """Events as parallel arrays; account fields index the id table, kinds are KIND_NAMES codes."""

    ts: np.ndarray  # int64 ms
    actor: np.ndarray  # int64
    target: np.ndarray  # int64
    kind: np.ndarray  # int64
    parent: np.ndarray  # int64 index of the event acted on, -1 if none
    post: np.ndarray  # int64: which original post of the target is acted on, -1 if none

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, idx: np.ndarray) -> _Events:
        """A subset (by index or mask); `parent` is left as is, callers remap it."""
        return _Events(*(getattr(self, f.name)[idx] for f in dataclasses.fields(self)))


def _concat(parts: list[_Events]) -> _Events:
    names = [f.name for f in dataclasses.fields(_Events)]
    return _Events(*(np.concatenate([getattr(p, n) for p in parts]) for n in names))


def _events(ts: np.ndarray, actor: np.ndarray, target: np.ndarray, kind: np.ndarray, **rest: Any) -> _Events:
    """Build a batch, defaulting parent/post to 'none' and normalising dtypes."""
    n = len(ts)
    parent = rest.get("parent", np.full(n, -1))
    post = rest.get("post", np.full(n, -1))
    cols = (ts, actor, target, kind, parent, post)
    return _Events(*(np.asarray(c, dtype=np.int64).reshape(n) for c in cols))


@dataclass
class _Weighted:
    """Draws indices in proportion to weights; zero-weight indices can never be drawn."""

    support: np.ndarray
    cdf: np.ndarray

    @classmethod
    def of(cls, weights: np.ndarray) -> _Weighted:
        support = np.flatnonzero(weights > 0)
        return cls(support, np.cumsum(weights[support]))

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        pick = np.searchsorted(self.cdf, rng.random(n) * self.cdf[-1], side="right")
        return self.support[np.minimum(pick, len(self.support) - 1)]


@dataclass
class _World:
    """Everything decided before generation: ids, weights, planted roles, the burst window."""

    ids: np.ndarray  # object array: the population, then the purchase accounts
    n_users: int
    popularity: _Weighted  # who gets engaged with (bots and fresh accounts: never)
    activity: _Weighted  # who acts spontaneously (bots: never, they have their own clock)
    act_weight: np.ndarray
    lang: np.ndarray
    bots: np.ndarray
    ring: np.ndarray
    ring_targets: np.ndarray
    bot_pool: np.ndarray  # the accounts bots are paid to amplify
    purchase_target: int
    purchase_accounts: np.ndarray
    window: tuple[int, int]  # absolute ms, [start, end)


@dataclass
class _Graph:
    """Who follows whom (CSR both ways); cascades travel along followers."""

    out_off: np.ndarray
    out_dst: np.ndarray
    in_off: np.ndarray
    in_src: np.ndarray
    branching: np.ndarray  # mean number of follower reactions to a repost by each user
    attention: np.ndarray  # scales the chance of answering: big accounts answer few of their many fans


# --------------------------------------------------------------------------- planning


def _span_ms(config: SyntheticConfig) -> int:
    return int(config.days * DAY_MS)


def _plan(config: SyntheticConfig) -> tuple[float, int]:
    """Mean events per bot and number of ring episodes, scaled to the stream size."""
    per_user = config.events / config.users
    per_bot = max(12.0, min(25.0 * per_user, 0.1 * config.events / max(config.bots, 1)))
    episodes = 0
    if config.ring_size:
        episodes = max(2 * config.ring_targets, round(0.01 * config.events / config.ring_size))
    return per_bot, episodes


def _validate(config: SyntheticConfig) -> None:
    """Refuse configs that cannot hold the planted anomalies, rather than silently dropping them."""
    counts = (config.bots, config.ring_size, config.ring_targets, config.purchase_accounts)
    if min(counts) < 0 or not 0.0 <= config.camouflage <= 1.0:
        raise ValueError("planted counts must be >= 0 and camouflage within [0, 1]")
    if config.ring_size == 1 or (config.ring_size > 0) != (config.ring_targets > 0):
        raise ValueError("a ring needs at least 2 members and at least 1 target (or neither)")
    if not config.platform.strip():
        raise ValueError("platform must be a non-empty name")
    if _span_ms(config) < 2 * HOUR_MS:
        raise ValueError("days must cover at least 2 hours")
    special = config.bots + config.ring_size + config.ring_targets + 8
    if config.users < max(50, 3 * special):
        raise ValueError(f"users={config.users} is too few for the planted accounts ({special})")
    per_bot, episodes = _plan(config)
    planted = config.bots * (1.3 * per_bot + 1) + episodes * config.ring_size + 3 * config.purchase_accounts
    if planted > 0.5 * config.events:
        raise ValueError(f"events={config.events} is too few: planted anomalies need about {int(planted)}")


def _ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """Distinct `u<number>` ids from one space, so planted and normal ids look alike."""
    space = max(900_000, 20 * n)
    numbers = rng.choice(space, size=n, replace=False) + 100_000
    return np.array([f"u{k}" for k in numbers.tolist()], dtype=object)


def _pick(
    rng: np.random.Generator, free: np.ndarray, k: int, rank: np.ndarray, band: tuple[float, float]
) -> np.ndarray:
    """k free accounts whose popularity rank lies in a band (shares of the population); marks them taken."""
    lo, hi = band[0] * len(rank), band[1] * len(rank)
    pool = np.flatnonzero(free & (rank > lo) & (rank <= hi))
    if len(pool) < k:
        pool = np.flatnonzero(free)
    chosen = rng.choice(pool, size=k, replace=False)
    free[chosen] = False
    return np.sort(chosen)


def _build_world(config: SyntheticConfig, rng: np.random.Generator) -> _World:
    """Population weights and the planted roles; cheap, so the truth is known before generating."""
    n = config.users
    ids = _ids(rng, n + config.purchase_accounts)
    pop_rank = rng.permutation(n) + 1
    pop_weight = pop_rank.astype(np.float64) ** -1.0
    # Zipf-Mandelbrot: heavy-tailed, but the busiest human stays within human limits.
    act_weight = (rng.permutation(n) + 1 + 0.002 * n) ** -0.8
    free = np.ones(n, dtype=bool)
    bots = _pick(rng, free, config.bots, pop_rank, (0.0, 1.0))
    ring = _pick(rng, free, config.ring_size, pop_rank, (0.05, 0.9))
    ring_targets = _pick(rng, free, config.ring_targets, pop_rank, (0.002, 0.1))
    bot_pool = _pick(rng, free, min(3 + config.bots // 2, 12) if config.bots else 0, pop_rank, (0.001, 0.05))
    purchase_target = int(_pick(rng, free, 1, pop_rank, (0.6, 0.9))[0])
    pop_weight[bots] = 0.0
    act_weight[bots] = 0.0
    act_weight[ring] = np.quantile(act_weight, 0.75)  # "modest" normal activity
    span = _span_ms(config)
    duration = min(rng.uniform(10, 30) * MINUTE_MS, span / 10)
    start = config.start_ms + int(rng.uniform(0.4, 0.6) * span)
    return _World(
        ids=ids, n_users=n, popularity=_Weighted.of(pop_weight),
        activity=_Weighted.of(act_weight), act_weight=act_weight,
        lang=rng.choice(len(LANGS), size=len(ids), p=LANG_P), bots=bots, ring=ring,
        ring_targets=ring_targets, bot_pool=bot_pool, purchase_target=purchase_target,
        purchase_accounts=np.arange(n, n + config.purchase_accounts), window=(start, start + int(duration)),
    )  # fmt: skip


def _truth(config: SyntheticConfig, world: _World) -> GroundTruth:
    def names(idx: np.ndarray) -> list[str]:
        return sorted(world.ids[idx].tolist())

    no_burst = config.purchase_accounts == 0
    return GroundTruth(
        bots=names(world.bots),
        ring_members=names(world.ring),
        ring_targets=names(world.ring_targets),
        purchase_target="" if no_burst else str(world.ids[world.purchase_target]),
        purchase_accounts=names(world.purchase_accounts),
        purchase_window_ms=(0, 0) if no_burst else world.window,
        config=dataclasses.asdict(config),
    )


# --------------------------------------------------------------------------- normal activity


def _graph(world: _World, config: SyntheticConfig, rng: np.random.Generator) -> _Graph:
    """Follower graph: active users follow more, popular users are followed more; bots by nobody.

    Typical out-degree shrinks when users are many and events few: the graph only matters where
    events use it, and a dense graph for a million mostly silent users would only cost memory.
    """
    n = world.n_users
    typical = float(np.clip(config.events / n, 3.0, 12.0))
    rel = world.act_weight / np.median(world.act_weight[world.act_weight > 0])
    outdeg = np.clip(np.rint(typical * rel**0.3 * rng.lognormal(0.0, 0.8, n)), 1, 5000).astype(np.int64)
    outdeg[world.act_weight == 0] = 0
    src = np.repeat(np.arange(n), outdeg)
    dst = world.popularity.draw(rng, len(src))
    edges = np.sort(src[src != dst] * n + dst[src != dst])  # by follower, then followee
    edges = edges[np.concatenate([[True], edges[1:] != edges[:-1]])]  # np.unique is slower here
    src, dst = edges // n, edges % n
    out_off = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n))])
    order = np.argsort(dst, kind="stable")
    indeg = np.bincount(dst, minlength=n)
    in_off = np.concatenate([[0], np.cumsum(indeg)])
    branching = np.minimum(0.04 * indeg**0.8, 60.0)  # big accounts set off big cascades
    attention = 1.0 / (1.0 + indeg / (5.0 * max(indeg.mean(), 1.0)))
    return _Graph(out_off, dst, in_off, src[order], branching, attention)


def _diurnal_times(rng: np.random.Generator, n: int, config: SyntheticConfig) -> np.ndarray:
    """Poisson arrivals whose rate follows a smooth 24 h cycle in UTC (inverse-CDF on a minute grid)."""
    span = _span_ms(config)
    grid = np.arange(0, span + MINUTE_MS, MINUTE_MS, dtype=np.float64)
    hours = ((config.start_ms + grid[:-1] + MINUTE_MS / 2) / HOUR_MS) % 24.0
    rate = 1.0 + DIURNAL_AMPLITUDE * np.cos(2 * np.pi * (hours - PEAK_HOUR_UTC) / 24.0)
    cum = np.concatenate([[0.0], np.cumsum(rate)])
    offsets = np.interp(rng.random(n) * cum[-1], cum, np.minimum(grid[: len(cum)], span))
    return config.start_ms + np.minimum(offsets.astype(np.int64), span - 1)


def _post_choice(rng: np.random.Generator, n: int) -> np.ndarray:
    """Which of the author's recent posts an action is about: the newest ones get most attention."""
    return rng.geometric(0.45, size=n) - 1


def _roots(
    world: _World, graph: _Graph, rng: np.random.Generator, n: int, config: SyntheticConfig
) -> _Events:
    """Spontaneous actions: heavy-tailed actors, mostly towards accounts they follow."""
    actor = world.activity.draw(rng, n)
    kind = rng.choice(len(KIND_NAMES), size=n, p=ROOT_MIX)
    target = world.popularity.draw(rng, n)
    outdeg = graph.out_off[actor + 1] - graph.out_off[actor]
    via_follow = (rng.random(n) < 0.75) & (kind != FOLLOW) & (outdeg > 0)
    slot = graph.out_off[actor] + (rng.random(n) * outdeg).astype(np.int64)
    target[via_follow] = graph.out_dst[slot[via_follow]]
    selfie = np.flatnonzero(target == actor)
    target[selfie] = world.popularity.draw(rng, len(selfie))  # a few self-interactions may remain
    post = np.where(ACTS_ON_POST[kind], _post_choice(rng, n), -1)
    return _events(_diurnal_times(rng, n, config), actor, target, kind, post=post)


def _delays(rng: np.random.Generator, median_ms: np.ndarray) -> np.ndarray:
    """Log-normal reaction delays (never under a second, so a reaction follows its cause)."""
    return np.maximum(median_ms * rng.lognormal(0.0, 1.0, len(median_ms)), 1000).astype(np.int64)


def _cascade(graph: _Graph, front: _Events, front_idx: np.ndarray, rng: np.random.Generator) -> _Events:
    """Followers of a reposter (or quoter) react to what they saw within minutes."""
    src = np.flatnonzero((front.kind == REPOST) | (front.kind == QUOTE))
    mean = graph.branching[front.actor[src]] * np.where(front.kind[src] == QUOTE, 0.5, 1.0)
    par = np.repeat(src, rng.poisson(mean))
    sharer = front.actor[par]
    degree = graph.in_off[sharer + 1] - graph.in_off[sharer]
    actor = graph.in_src[graph.in_off[sharer] + (rng.random(len(par)) * degree).astype(np.int64)]
    kind = CASCADE_KINDS[rng.choice(len(CASCADE_KINDS), size=len(par), p=CASCADE_MIX)]
    ts = front.ts[par] + _delays(rng, np.full(len(par), 3.0 * MINUTE_MS))
    kids = _events(ts, actor, sharer, kind, parent=front_idx[par])
    return kids.take(kids.actor != kids.target)


def _reciprocate(
    graph: _Graph, front: _Events, front_idx: np.ndarray, may_answer: np.ndarray, rng: np.random.Generator
) -> _Events:
    """People answer those who engage them: follow-backs, reply threads, conversations, like-backs."""
    chance = RECIP_P[front.kind] * graph.attention[front.target]
    hit = np.flatnonzero(may_answer & (rng.random(len(front)) < chance))
    got = front.kind[hit]
    kind = RECIP_KIND[got]
    actor, target = front.target[hit], front.actor[hit]
    parent = np.where(kind == REPLY, front_idx[hit], -1)
    post = np.where(kind == LIKE, _post_choice(rng, len(hit)), -1)
    ts = front.ts[hit] + _delays(rng, RECIP_DELAY_MS[got].astype(np.float64))
    return _events(ts, actor, target, kind, parent=parent, post=post)


def _spread(graph: _Graph, roots: _Events, base: int, rng: np.random.Generator, end_ms: int) -> _Events:
    """Grow cascades and answers generation by generation; `base` is the roots' global index."""
    parts, front = [roots], roots
    front_idx = base + np.arange(len(roots))
    may_answer = np.ones(len(roots), dtype=bool)
    total = base + len(roots)
    for _ in range(MAX_GENERATIONS):
        shared = _cascade(graph, front, front_idx, rng)
        answers = _reciprocate(graph, front, front_idx, may_answer, rng)
        shared, answers = shared.take(shared.ts < end_ms), answers.take(answers.ts < end_ms)
        kids = _concat([shared, answers])
        if not len(kids):
            break
        parts.append(kids)
        front, front_idx = kids, total + np.arange(len(kids))
        total += len(kids)
        # Threads and conversations go on; a follow-back or like-back is not answered again.
        may_answer = np.concatenate(
            [np.ones(len(shared), dtype=bool), np.isin(answers.kind, (REPLY, MESSAGE))]
        )
    return _concat(parts)


def _reindex(events: _Events, keep: np.ndarray) -> _Events:
    """Keep a subset whose dropped events nobody refers to, and renumber the parent links."""
    new_index = np.cumsum(keep) - 1
    kept = events.take(keep)
    kept.parent = np.where(kept.parent >= 0, new_index[kept.parent], -1)
    return kept


def _trim(events: _Events, needed: int, rng: np.random.Generator) -> _Events:
    """Drop random leaves (events nothing reacts to) until exactly `needed` remain; links stay intact."""
    while len(events) > needed:
        referenced = np.zeros(len(events), dtype=bool)
        referenced[events.parent[events.parent >= 0]] = True
        leaves = np.flatnonzero(~referenced)
        drop = rng.choice(leaves, size=min(len(events) - needed, len(leaves)), replace=False)
        keep = np.ones(len(events), dtype=bool)
        keep[drop] = False
        events = _reindex(events, keep)
    return events


def _normal(
    world: _World, graph: _Graph, rng: np.random.Generator, needed: int, config: SyntheticConfig
) -> _Events:
    """Exactly `needed` normal events: roots plus consequences, sized by the measured growth factor."""
    end_ms = config.start_ms + _span_ms(config)
    parts: list[_Events] = []
    total = roots = 0
    growth = 1.5  # events per root; re-estimated after every batch
    for _ in range(4):
        if needed - total <= 0.002 * needed:
            break
        n_roots = max(1, int((needed - total) / growth))
        parts.append(_spread(graph, _roots(world, graph, rng, n_roots, config), total, rng, end_ms))
        total, roots = total + len(parts[-1]), roots + n_roots
        growth = total / roots
    if total < needed:  # the last few are plain spontaneous actions
        parts.append(_roots(world, graph, rng, needed - total, config))
    return _trim(_concat(parts), needed, rng)


# --------------------------------------------------------------------------- planted anomalies


def _bot_events(world: _World, config: SyntheticConfig, rng: np.random.Generator) -> _Events:
    """Clockwork accounts: a fixed interval with small jitter, day and night, on a few paid targets."""
    per_bot, _ = _plan(config)
    span = _span_ms(config)
    counts = np.maximum(np.rint(per_bot * rng.uniform(0.7, 1.3, len(world.bots))), 2).astype(np.int64)
    interval = np.repeat(span / np.maximum(counts, 1), counts)
    step = np.concatenate([np.arange(c) for c in counts.tolist()] or [np.zeros(0)])
    phase = np.repeat(rng.random(len(counts)), counts)
    offsets = (phase + step + rng.normal(0.0, BOT_JITTER, len(step))) * interval
    ts = config.start_ms + np.clip(offsets, 0, span - 1).astype(np.int64)
    bot = np.repeat(np.arange(len(counts)), counts)
    own = np.stack([_bot_targets(world.bot_pool, rng) for _ in range(len(counts))] or [np.zeros(6)])
    target = own[bot, (rng.random(len(bot)) * 6).astype(np.int64)]
    kind = np.where(rng.random(len(bot)) < 0.6, REPOST, LIKE)
    fake = rng.random(len(bot)) < config.camouflage  # looks like an ordinary user's action
    kind[fake] = rng.choice(len(KIND_NAMES), size=int(fake.sum()), p=ROOT_MIX)
    target[fake] = world.popularity.draw(rng, int(fake.sum()))
    post = np.where(ACTS_ON_POST[kind], _post_choice(rng, len(bot)), -1)
    return _events(ts, world.bots[bot], target, kind, post=post)


def _bot_targets(pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Six slots filled from 3-6 accounts of the operator's pool, so each bot has a handful of targets."""
    chosen = rng.choice(pool, size=min(int(rng.integers(3, 7)), len(pool)), replace=False)
    return np.resize(chosen, 6)


def _ring_events(world: _World, config: SyntheticConfig, rng: np.random.Generator) -> _Events:
    """Episodes in which (nearly) every ring member reposts the same post of a target within seconds."""
    _, episodes = _plan(config)
    if not episodes:
        return _events(*(np.zeros(0),) * 4)
    extra = rng.choice(world.ring_targets, size=episodes - len(world.ring_targets))
    target = np.concatenate([rng.permutation(world.ring_targets), extra])  # every target at least once
    span = _span_ms(config)
    anchor = config.start_ms + (rng.random(episodes) * (span - 30_000)).astype(np.int64)
    width = rng.uniform(2_000, 20_000, episodes)
    joins = rng.random((episodes, len(world.ring))) < RING_PARTICIPATION
    joins[0] = True  # everyone takes part at least once
    joins[joins.sum(axis=1) < 2] = True
    episode, member = np.nonzero(joins)
    ts = anchor[episode] + (rng.random(len(episode)) * width[episode]).astype(np.int64)
    post = _post_choice(rng, episodes)[episode]
    return _events(ts, world.ring[member], target[episode], np.full(len(ts), REPOST), post=post)


def _purchase_events(world: _World, config: SyntheticConfig, rng: np.random.Generator) -> _Events:
    """Fresh accounts deliver likes/reposts/follows to one quiet account inside the window, then idle."""
    buyers = world.purchase_accounts
    if not len(buyers):
        return _events(*(np.zeros(0),) * 4)
    options = np.array([LIKE, REPOST, FOLLOW])
    first = rng.choice(3, size=len(buyers), p=[0.5, 0.2, 0.3])
    again = np.flatnonzero(rng.random(len(buyers)) < 0.3)
    second = (first[again] + rng.integers(1, 3, len(again))) % 3
    actor = np.concatenate([buyers, buyers[again]])
    kind = options[np.concatenate([first, second])]
    start, end = world.window
    ts = start + (rng.random(len(actor)) * (end - start)).astype(np.int64)
    post = np.where(ACTS_ON_POST[kind], (rng.random(len(actor)) < 0.2).astype(np.int64), -1)
    burst = _events(ts, actor, np.full(len(ts), world.purchase_target), kind, post=post)
    return _concat([burst, _purchase_afterlife(world, config, rng)])


def _purchase_afterlife(world: _World, config: SyntheticConfig, rng: np.random.Generator) -> _Events:
    """A few bought accounts like one popular post later on; the rest never act again."""
    stream_end = config.start_ms + _span_ms(config)
    late = world.purchase_accounts[rng.random(len(world.purchase_accounts)) < 0.15]
    lo = world.window[1]
    ts = lo + (rng.random(len(late)) * max(stream_end - lo, 0)).astype(np.int64)
    late, ts = late[ts < stream_end], ts[ts < stream_end]
    target = world.popularity.draw(rng, len(late))
    return _events(ts, late, target, np.full(len(ts), LIKE), post=_post_choice(rng, len(late)))


# --------------------------------------------------------------------------- the stream


class SyntheticStream:
    """Iterate to get exactly ``config.events`` InteractionEvents in event-time order.

    Each iteration regenerates the same stream from the seed, so two passes (or two processes)
    see byte-identical events; ``truth`` is available without generating anything.
    """

    def __init__(self, config: SyntheticConfig) -> None:
        _validate(config)
        self.config = config
        self._seeds = np.random.SeedSequence(config.seed).spawn(6)
        self._world = _build_world(config, self._rng(0))
        self._truth = _truth(config, self._world)

    @property
    def truth(self) -> GroundTruth:
        return self._truth

    def _rng(self, part: int) -> np.random.Generator:
        """An independent generator per part, so changing one part does not reshuffle the others."""
        return np.random.Generator(np.random.PCG64(self._seeds[part]))

    def _generate(self) -> _Events:
        """All events as arrays sorted by time, parent links pointing at sorted positions."""
        world, config = self._world, self.config
        planted = _concat([
            _bot_events(world, config, self._rng(1)),
            _ring_events(world, config, self._rng(2)),
            _purchase_events(world, config, self._rng(3)),
        ])  # fmt: skip
        graph = _graph(world, config, self._rng(4))
        normal = _normal(world, graph, self._rng(5), config.events - len(planted), config)
        events = _concat([normal, planted])  # planted events have no parent links
        order = np.argsort(events.ts, kind="stable")
        position = np.empty_like(order)
        position[order] = np.arange(len(order))
        events = events.take(order)
        events.parent = np.where(events.parent >= 0, position[events.parent], -1)
        return events

    def __iter__(self) -> Iterator[InteractionEvent]:
        events = self._generate()
        for lo in range(0, len(events), CHUNK):
            yield from self._materialise(events.take(slice(lo, lo + CHUNK)), lo)

    def _materialise(self, ev: _Events, first: int) -> Iterator[InteractionEvent]:
        """Turn one chunk of arrays into events; ids are `<seed>-<position in the stream>`."""
        platform, prefix = self.config.platform, f"{self.config.seed}-"
        ids = self._world.ids
        targets = ids[ev.target].tolist()
        langs = np.where(HAS_LANG[ev.kind], LANGS[self._world.lang[ev.actor]], None).tolist()
        columns = zip(
            ev.ts.tolist(), ids[ev.actor].tolist(), targets, KIND_OBJ[ev.kind].tolist(),
            CREATES_ITEM[ev.kind].tolist(), ev.parent.tolist(), ev.post.tolist(), langs, strict=True,
        )  # fmt: skip
        for n, (ts, actor, target, kind, creates, parent, post, lang) in enumerate(columns, start=first):
            native = f"{prefix}{n}"
            if parent >= 0:
                parent_id: str | None = f"{prefix}{parent}"
            else:
                parent_id = f"{prefix}{target}-p{post}" if post >= 0 else None
            yield InteractionEvent(
                event_id=event_id_for(platform, native_id=native), ts=ts, platform=platform, actor=actor,
                target=target, kind=kind, content_id=native if creates else None, parent_id=parent_id,
                lang=lang,
            )  # fmt: skip
