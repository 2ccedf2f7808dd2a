"""Account verdicts: what the pipeline's per-shard account stage calls, slice by slice and per window.

Why a verdict and not a per-window flag: the evidence (steady amplification, no human rhythm,
sprayed replies, the same co-amplifiers again and again) accumulates over days in `AccountState`;
a window's verdicts read it for the accounts that acted in the window, whose engagement there is
what the clean score must discount. The calls, per account shard (Beam state keyed by shard):

    state = AccountState.empty(shard, shards)            # or AccountState.from_bytes(blob)
    update(state, events)                                # every slice's EventColumns, in slice order
    summary = summarise(state, now_ms, config)           # per shard, at a window end: small
    context = Context.combine(all_shards_summaries)      # the per-window gather (one step, all shards)
    flags = verdicts(state, now_ms, context, config)     # list[Flag], detector "account"
    blob = state.to_bytes()

`verdicts` judges only the shard's accounts that acted within `config.window_ms` before `now_ms`
(a mask over two columns, then work in proportion to those accounts), and it does not change the
state: replaying a window gives the same flags.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from clout.anomalies.accounts import (
    ADDRESS,
    AMPLIFY,
    DAY_BITS,
    DAY_MS,
    HOUR_MS,
    MINHASH_K,
    AccountState,
    distinct_targets,
    name_key,
    popcount32,
    update,
)
from clout.anomalies.config import VerdictConfig
from clout.anomalies.coordination import band_keys, merge_counts
from clout.anomalies.flag import ACCOUNT_DETECTOR, Flag
from clout.model.windows import window_id

DETECTOR = ACCOUNT_DETECTOR
__all__ = ["DETECTOR", "AccountState", "Candidates", "Context", "Summary", "VerdictConfig", "candidates_of",
           "flags_of", "judge", "name_key", "scores", "summarise", "update", "verdicts"]


# --------------------------------------------------------------------------- cross-shard context


@dataclass(frozen=True)
class Summary:
    """One shard's contribution to the window's Context: per target key, how many of the shard's
    accounts engage it repeatedly (twice or more, on two days or more) and their actions on it; per
    LSH band key of the accounts' repeated targets, how many accounts hold it."""

    campaign_keys: np.ndarray  # uint32 target keys
    campaign_engagers: np.ndarray  # int64
    campaign_actions: np.ndarray  # int64
    band_keys: np.ndarray  # uint64
    band_counts: np.ndarray  # int64

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.campaign_keys, self.campaign_engagers, self.campaign_actions,
                                      self.band_keys, self.band_counts))


@dataclass
class Context:
    """What the verdicts need from every shard: target key -> (accounts engaging it repeatedly, their
    actions on it), kept for targets with at least `campaign_engagers[0]` such accounts; LSH band key
    -> accounts holding it, kept for 2..max_bucket accounts. Small: a few entries per campaign."""

    campaign: dict[int, tuple[int, int]] = field(default_factory=dict)
    bands: dict[int, int] = field(default_factory=dict)

    @classmethod
    def combine(cls, summaries: Iterable[Summary], config: VerdictConfig | None = None) -> Context:
        config = config or VerdictConfig()
        summaries = list(summaries)
        engagers = merge_counts(((s.campaign_keys, s.campaign_engagers) for s in summaries),
                                min_count=max(2, int(config.campaign_engagers[0])))
        actions = merge_counts(((s.campaign_keys, s.campaign_actions) for s in summaries), min_count=1)
        bands = merge_counts(((s.band_keys, s.band_counts) for s in summaries), min_count=2,
                             max_count=config.max_bucket)
        return cls({k: (n, actions.get(k, 0)) for k, n in engagers.items()}, bands)

    @property
    def nbytes(self) -> int:
        """Size as two numpy tables (key + values), what it costs to ship to every shard."""
        return 16 * len(self.campaign) + 16 * len(self.bands)


def summarise(state: AccountState, now_ms: int, config: VerdictConfig | None = None) -> Summary:
    """This shard's Summary at `now_ms`, over accounts active in the last DAY_BITS days with enough
    actions (a mask over two columns, then work in proportion to those accounts)."""
    config = config or VerdictConfig()
    rows = np.flatnonzero((state.view("sent") >= config.census_min_actions)
                          & (state.view("last_sent_ms") >= now_ms - DAY_BITS * DAY_MS))
    guaranteed = (state.cols["top_count"][rows] - state.cols["top_err"][rows]).astype(np.int64)
    repeated = (guaranteed >= 2) & (popcount32(state.cols["top_days"][rows]) >= 2)  # on two days or more
    keys, inverse = np.unique(state.cols["top_key"][rows][repeated], return_inverse=True)
    engagers = np.bincount(inverse, minlength=len(keys)).astype(np.int64)
    actions = np.bincount(inverse, weights=guaranteed[repeated], minlength=len(keys)).astype(np.int64)
    judged = rows[state.cols["sent"][rows] >= config.min_actions]
    bands = band_keys(state.cols["minhash"][_similar_rows(state, judged, config)]).ravel()
    band, band_n = np.unique(bands, return_counts=True)
    return Summary(keys.astype(np.uint32), engagers, actions, band, band_n.astype(np.int64))


def _similar_rows(state: AccountState, rows: np.ndarray, config: VerdictConfig) -> np.ndarray:
    """Rows with enough repeated non-celebrity targets for their MinHash to mean something."""
    return rows[repeated_distinct(state.cols["minhash"][rows]) >= config.min_repeated]


def repeated_distinct(signatures: np.ndarray) -> np.ndarray:
    """Distinct targets behind MinHash signatures: k / sum of the normalised minima, minus 1."""
    u = (signatures.astype(np.float64) + 1.0) / 4294967296.0
    return np.where(signatures[:, 0] == 0xFFFFFFFF, 0.0, MINHASH_K / np.maximum(u.sum(axis=1), 1e-12) - 1.0)


# --------------------------------------------------------------------------- features


def ramp(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """0 at the human value `lo`, 1 at the bot value `hi` (either order), linear between."""
    return np.clip((np.asarray(x, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)


def _entropy(hist: np.ndarray) -> np.ndarray:
    total = hist.sum(axis=1, keepdims=True).astype(np.float64)
    p = np.divide(hist, total, out=np.zeros(hist.shape), where=total > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    return h / np.log(hist.shape[1])


def features(state: AccountState, rows: np.ndarray, now_ms: int) -> dict[str, np.ndarray]:
    """The long-horizon numbers of the accounts at `rows`."""
    c = {k: v[rows] for k, v in state.cols.items()}
    sent = c["sent"].astype(np.float64)
    safe = np.maximum(sent, 1.0)
    shift = np.clip(now_ms // DAY_MS - c["last_day"].astype(np.int64), 0, DAY_BITS)
    recent_days = np.where(shift >= DAY_BITS, 0, (c["days"].astype(np.uint64) << shift.astype(np.uint64))
                           & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    guaranteed = (c["top_count"] - c["top_err"]).astype(np.int64)
    age_days = np.maximum(now_ms - c["first_ms"], HOUR_MS) / DAY_MS
    return {
        "sent": sent,
        "amplify_share": c["kinds"][:, AMPLIFY].sum(axis=1) / safe,
        "address_share": c["kinds"][:, ADDRESS].sum(axis=1) / safe,
        "active_days": popcount32(recent_days).astype(np.float64),
        "rhythm_entropy": _entropy(c["hod"]),
        "weekly_entropy": _entropy(c["dow"]),
        "hours_active": (c["hod"] > 0).sum(axis=1).astype(np.float64),
        "top_share": guaranteed.sum(axis=1) / safe,
        "repeat_share": c["repeat"] / safe,
        "distinct": distinct_targets(state, rows),
        "top_keys": c["top_key"],
        "top_counts": guaranteed,
        "top_days": popcount32(c["top_days"]).astype(np.float64),
        "reciprocity": c["recip"] / np.maximum(c["received"], 1),
        "received": c["received"].astype(np.float64),
        "age_days": age_days,
        "first_ms": c["first_ms"],
        "rate": sent / np.maximum(age_days, 0.25),
        "fast": c["fast"].astype(np.float64),
        "minhash": c["minhash"],
        "top_popularity": state.popularity(c["top_key"].ravel()).reshape(c["top_key"].shape),
    }


# --------------------------------------------------------------------------- evidence and verdicts


def evidence(f: dict[str, np.ndarray], context: Context, config: VerdictConfig
             ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(each behaviour's strength in [0, 1] per account, the numbers its reason quotes): products of
    ramps, so every part of a behaviour must hold."""
    cf, n = config, len(f["sent"])
    enough = (f["sent"] >= cf.own_min_actions).astype(np.float64)
    others = (f["sent"] >= cf.min_actions).astype(np.float64)
    steady = ramp(f["active_days"], *cf.active_days) * ramp(f["sent"], *cf.steady_actions)
    fresh_ok = f["first_ms"] >= cf.stream_start_ms + DAY_MS if cf.stream_start_ms >= 0 else np.ones(n, bool)
    campaign, campaign_numbers = _campaign(f, context, cf)
    similar, similar_numbers = _similar(f, context, cf)
    ev = {
        "steady amplification": enough * steady * ramp(f["amplify_share"], *cf.amplify_share)
        * ramp(f["top_share"], *cf.concentration),
        "no human rhythm": enough * steady * ramp(f["rhythm_entropy"], *cf.rhythm_entropy)
        * ramp(f["hours_active"], *cf.hours_active),
        "sprayed at strangers": enough * steady * ramp(f["address_share"], *cf.amplify_share)
        * ramp(f["top_share"], *cf.spray_targets_share) * ramp(f["reciprocity"], *cf.reciprocity),
        "fresh amplifier": enough * fresh_ok * ramp(f["age_days"], *cf.fresh_days) * ramp(f["rate"], *cf.fresh_rate)
        * ramp(f["amplify_share"], *cf.amplify_share) * ramp(f["top_share"], *cf.concentration),
        "campaign on one target": others * campaign,
        "fast co-amplification": others * ramp(f["fast"], *cf.fast_partners),
        "similar targets": others * similar,
    }
    return ev, {**campaign_numbers, **similar_numbers}


def _campaign(f: dict[str, np.ndarray], context: Context, cf: VerdictConfig
              ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per account, its strongest top-K target that many accounts engage repeatedly and whose
    traffic is mostly theirs (the target's received events: the replicated count-min), weighted by
    the account's own repeats on it and the share of its actions it takes."""
    n = len(f["sent"])
    best, engagers, share, days = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    numbers = {"campaign_engagers": engagers, "campaign_share": share, "campaign_days": days}
    if not context.campaign or not n:
        return best, numbers
    keys = f["top_keys"]
    known = np.fromiter(context.campaign, dtype=np.uint32, count=len(context.campaign))
    rows, slots = np.nonzero(np.isin(keys, known) & (f["top_counts"] > 0))
    if not len(rows):
        return best, numbers
    k = keys[rows, slots]
    count = np.array([context.campaign[x][0] for x in k.tolist()], dtype=np.float64)
    actions = np.array([context.campaign[x][1] for x in k.tolist()], dtype=np.float64)
    traffic = actions / np.maximum(f["top_popularity"][rows, slots].astype(np.float64), actions)
    own = f["top_counts"][rows, slots]
    ev = (ramp(count, *cf.campaign_engagers) * ramp(traffic, *cf.campaign_share) * ramp(own, *cf.campaign_count)
          * ramp(f["top_days"][rows, slots], *cf.campaign_days) * ramp(own / np.maximum(f["sent"][rows], 1),
                                                                         *cf.campaign_commit))
    order = np.lexsort((ev, rows))  # per row, the strongest entry last
    last = np.r_[rows[order][1:] != rows[order][:-1], True]
    pick = order[last]
    best[rows[pick]], engagers[rows[pick]] = ev[pick], count[pick]
    share[rows[pick]], days[rows[pick]] = traffic[pick], f["top_days"][rows[pick], slots[pick]]
    return best, numbers


def _similar(f: dict[str, np.ndarray], context: Context, cf: VerdictConfig
             ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per account: how many LSH bands of its repeated targets' MinHash other accounts share (each
    band is shared with probability J^2), and how many accounts are in its most shared band."""
    n = len(f["sent"])
    bands, partners = np.zeros(n), np.zeros(n)
    numbers = {"similar_bands": bands, "similar_partners": partners}
    eligible = np.flatnonzero(repeated_distinct(f["minhash"]) >= cf.min_repeated) if n else np.zeros(0, np.int64)
    if not context.bands or not len(eligible):
        return np.zeros(n), numbers
    keys = band_keys(f["minhash"][eligible])
    held = np.array([context.bands.get(x, 1) for x in keys.ravel().tolist()], dtype=np.float64).reshape(keys.shape)
    bands[eligible] = (held >= 2).sum(axis=1)
    partners[eligible] = held.max(axis=1) - 1
    return ramp(bands, *cf.similar_bands) * ramp(partners, *cf.similar_partners), numbers


def _reason(behaviour: str, i: int, f: dict[str, np.ndarray], numbers: dict[str, np.ndarray]) -> str:
    n, days = int(f["sent"][i]), int(f["active_days"][i])
    if behaviour == "steady amplification":
        return (f"steady amplification: {f['amplify_share'][i]:.0%} of {n} actions are reposts over {days} days, "
                f"{f['top_share'][i]:.0%} to its top 8 accounts")
    if behaviour == "no human rhythm":
        return (f"no human rhythm: active in {int(f['hours_active'][i])} of 24 hours of the day over {days} days "
                f"(entropy {f['rhythm_entropy'][i]:.2f})")
    if behaviour == "sprayed at strangers":
        return (f"sprayed at strangers: {f['address_share'][i]:.0%} of {n} actions are mentions/replies, only "
                f"{f['top_share'][i]:.0%} to its top 8 accounts, {f['reciprocity'][i]:.0%} answered")
    if behaviour == "fresh amplifier":
        return (f"fresh amplifier: {n} actions ({f['rate'][i]:.0f} a day) in the {f['age_days'][i]:.1f} days since "
                f"first seen, {f['amplify_share'][i]:.0%} reposts")
    if behaviour == "campaign on one target":
        return (f"campaign on one target: engaged one account repeatedly on {int(numbers['campaign_days'][i])} "
                f"days, one of {int(numbers['campaign_engagers'][i])} accounts doing so, who make "
                f"{numbers['campaign_share'][i]:.0%} of its traffic")
    if behaviour == "fast co-amplification":
        return (f"fast co-amplification: amplified the same accounts within a minute of {int(f['fast'][i])} "
                "other accounts, twice or more each")
    return (f"similar targets: the accounts it engages repeatedly are nearly the same as "
            f"{int(numbers['similar_partners'][i])} others' ({int(numbers['similar_bands'][i])} of 8 MinHash bands "
            "shared)")


def candidates(state: AccountState, now_ms: int, config: VerdictConfig) -> np.ndarray:
    """Rows of the accounts that acted in the window ending at now_ms and have enough actions."""
    last = state.view("last_sent_ms")
    return np.flatnonzero((last >= now_ms - config.window_ms) & (last < now_ms)
                          & (state.view("sent") >= config.min_actions))


@dataclass(frozen=True)
class Candidates:
    """A shard's accounts to judge at `now_ms` and their long-horizon numbers: everything a verdict
    needs from the shard's state, so the judging can happen where every shard's Summary is (the
    window's scoring step) without the state."""

    now_ms: int
    names: list[str]
    features: dict[str, np.ndarray]
    stream_start_ms: int = -1  # when the shard's stream began: fresh-account evidence only after a day of it

    def __len__(self) -> int:
        return len(self.names)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.features.values()) + sum(len(n) for n in self.names)


def candidates_of(state: AccountState, now_ms: int, config: VerdictConfig | None = None,
                  rows: np.ndarray | None = None) -> Candidates:
    """The window's candidates (or the accounts at `rows`) with their features, read from the state."""
    config = config or VerdictConfig()
    rows = candidates(state, now_ms, config) if rows is None else rows
    return Candidates(now_ms, [state.names[i] for i in rows.tolist()], features(state, rows, now_ms),
                      config.stream_start_ms)


def judge(found: Candidates, context: Context, config: VerdictConfig | None = None
          ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(score per candidate, evidence per behaviour, reason numbers): the score is the noisy-or of the
    behaviours."""
    config = replace(config or VerdictConfig(), stream_start_ms=found.stream_start_ms)
    ev, numbers = evidence(found.features, context, config)
    score = 1.0 - np.prod([1.0 - e for e in ev.values()], axis=0) if len(found) else np.zeros(0)
    return score, ev, numbers


def scores(state: AccountState, now_ms: int, context: Context | None = None, config: VerdictConfig | None = None,
           rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict, dict, dict]:
    """(rows, score per row, evidence per behaviour, features, reason numbers) of the window's
    candidates (or of `rows`)."""
    config = config or VerdictConfig()
    rows = candidates(state, now_ms, config) if rows is None else rows
    found = candidates_of(state, now_ms, config, rows)
    score, ev, numbers = judge(found, context or Context(), config)
    return rows, score, ev, found.features, numbers


def flags_of(found: Candidates, context: Context, config: VerdictConfig | None = None) -> list[Flag]:
    """Flags (detector "account") for the candidates whose accumulated score reaches the threshold,
    with a reason for every behaviour that contributes at least 0.1 and the numbers behind it."""
    config = config or VerdictConfig()
    score, ev, numbers = judge(found, context, config)
    f = found.features
    window = window_id(found.now_ms - config.window_ms, found.now_ms)
    out = []
    for i in np.flatnonzero(score >= config.threshold).tolist():
        reasons = tuple(_reason(b, i, f, numbers) for b, e in ev.items() if e[i] >= 0.1)
        evidence_numbers = {f"part_{b.replace(' ', '_')}": round(float(e[i]), 4) for b, e in ev.items()}
        evidence_numbers.update(actions=float(f["sent"][i]), active_days=float(f["active_days"][i]),
                                amplify_share=round(float(f["amplify_share"][i]), 4),
                                top_share=round(float(f["top_share"][i]), 4))
        out.append(Flag(found.names[i], window, DETECTOR, round(float(score[i]), 4), reasons, evidence_numbers))
    return sorted(out, key=lambda flag: flag.user)


def verdicts(state: AccountState, now_ms: int, context: Context | None = None,
             config: VerdictConfig | None = None) -> list[Flag]:
    """Flags for the shard's accounts that acted in the window ending at `now_ms` (see flags_of).
    Reads the state only."""
    config = config or VerdictConfig()
    return flags_of(candidates_of(state, now_ms, config), context or Context(), config)
