"""`clout eval`: how well the anomaly detectors find planted anomalies in real traffic, and at what cost.

Why this way: a detector is only as good as its false alarms on real people. The planted accounts of
the synthetic connector (bots, an amplification ring, a bought burst) are injected into the real
Higgs Twitter week, time-aligned, and the detectors run over the pipeline's own sliding windows in
plain Python, as the pipeline calls them. Figures: precision, recall and F1 per anomaly type, the
false-positive rate over the real Higgs accounts, ROC-AUC of each detector's score; then ROC-AUC
against the REV2 fraud labels of Bitcoin OTC; then the detectors' throughput and state memory.

Injection: the synthetic world's ordinary accounts are mapped onto Higgs accounts of the same
activity rank (so the ring's targets and the bought account are real Higgs accounts with their real
history), and the planted accounts get unused Higgs-style numeric ids. Every synthetic event whose actor
or target is planted is kept: the planted accounts' whole behaviour, camouflage included.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

from clout.anomalies.bots import ActorHistory, bot_scores
from clout.anomalies.burst import Volume, burst_scores, burst_strength
from clout.anomalies.config import Thresholds
from clout.anomalies.flag import Group
from clout.anomalies.lockstep import LockstepResult, find_lockstep, recurrences, window_span
from clout.anomalies.microclusters import (
    EdgeScore,
    MidasR,
    account_key,
    microcluster_flags,
    shard_of,
    target_strength,
)
from clout.connectors.synthetic import SyntheticConfig, SyntheticStream
from clout.model.events import Event
from clout.model.kinds import KIND_INDEX

HIGGS_KINDS = {"RT": KIND_INDEX["repost"], "MT": KIND_INDEX["mention"], "RE": KIND_INDEX["reply"]}
HIGGS_WEEK_START_MS = 1_341_100_800_000  # 2012-07-01 00:00 UTC
BURST_PREFILTER = 3  # accounts with fewer interactions in a window keep a burst score of 0 there
Say = Callable[[str], None]


# --------------------------------------------------------------------------- data


def data_dir() -> Path:
    """CLOUT_DATA_DIR, else `../shared/data` from where the command runs (a project checkout's layout)."""
    return Path(os.environ.get("CLOUT_DATA_DIR", Path.cwd().parent / "shared" / "data"))


def load_higgs(path: Path) -> list[Event]:
    events = []
    with gzip.open(path, "rt") as lines:
        for line in lines:
            actor, target, seconds, kind = line.split()
            events.append(Event(int(seconds) * 1000, actor, target, HIGGS_KINDS[kind], "higgs"))
    return events


@dataclass
class Planted:
    """Injected events and the answer key, in the ids they carry after injection."""

    events: list[Event]
    bots: set[str]
    ring: set[str]
    ring_targets: set[str]
    purchase_target: str
    purchase_accounts: set[str]

    @property
    def accounts(self) -> set[str]:
        return self.bots | self.ring | self.purchase_accounts


def plant(background: list[Event], config: SyntheticConfig) -> Planted:
    """The synthetic stream's planted behaviour, in Higgs ids (see the module docstring)."""
    stream = SyntheticStream(config)
    truth = stream.truth
    planted = set(truth.bots) | set(truth.ring_members) | set(truth.purchase_accounts)
    kept, degree = [], Counter()
    for e in stream:
        if e.actor in planted or e.target in planted:
            kept.append(e)
        else:
            degree.update((e.actor, e.target))
    higgs_degree = Counter()
    for e in background:
        higgs_degree.update((e.actor, e.target))
    higgs_ranked = [a for a, _ in sorted(higgs_degree.items(), key=lambda kv: (-kv[1], int(kv[0])))]
    ordinary = sorted({a for e in kept for a in (e.actor, e.target)} - planted, key=lambda a: (-degree[a], a))
    everyone = sorted(degree, key=lambda a: (-degree[a], a))
    rank = {a: i for i, a in enumerate(everyone)}
    scale = len(higgs_ranked) / max(len(everyone), 1)
    mapping = {a: higgs_ranked[int(rank.get(a, len(everyone) - 1) * scale)] for a in ordinary}
    rng = np.random.Generator(np.random.PCG64(config.seed))
    used = {int(a) for a in higgs_degree}
    free = np.setdiff1d(np.arange(1, 2 * max(used)), np.fromiter(used, dtype=np.int64))
    fresh = rng.choice(free, size=len(planted), replace=False)
    mapping.update({a: str(n) for a, n in zip(sorted(planted), fresh.tolist(), strict=True)})
    events = [Event(e.ts, mapping[e.actor], mapping[e.target], KIND_INDEX[e.kind], "synthetic") for e in kept]
    return Planted(events, {mapping[a] for a in truth.bots}, {mapping[a] for a in truth.ring_members},
                   {mapping[a] for a in truth.ring_targets}, mapping[truth.purchase_target],
                   {mapping[a] for a in truth.purchase_accounts})


def load_otc(folder: Path) -> tuple[list[Event], dict[str, int]]:
    """Bitcoin OTC ratings as `like` events (as `clout ingest file ... --csv-kind like` publishes them)."""
    events = []
    for line in (folder / "soc-sign-bitcoinotc.csv").read_text().split():
        source, target, _rating, seconds = line.split(",")
        events.append(Event(int(float(seconds)) * 1000, source, target, KIND_INDEX["like"], "bitcoin-otc"))
    events.sort(key=lambda e: e.ts)
    labels = {}
    for line in (folder / "otc_gt.csv").read_text().split():
        user, label = line.split(",")
        labels[user] = int(label)
    return events, labels


# --------------------------------------------------------------------------- the windows


@dataclass
class DetectorRun:
    """Per detector: every account's highest score over the windows, the flagged accounts, time spent."""

    scores: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    flagged: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    grouped: set[str] = field(default_factory=set)  # members of any lockstep group, recurring or not
    groups_found: list[Group] = field(default_factory=list)
    # for the sensitivity table: per account, the largest window volume that met the burst z and ratio
    # thresholds, and the most distinct sources that reached it with a high MIDAS-R destination score
    burst_volume: dict[str, int] = field(default_factory=dict)
    midas_sources: dict[str, int] = field(default_factory=dict)
    seconds: Counter = field(default_factory=Counter)
    memory: dict[str, float] = field(default_factory=dict)
    windows: int = 0

    def keep(self, detector: str, account: str, score: float) -> None:
        best = self.scores[detector]
        if score > best.get(account, -1.0):
            best[account] = score


class _Clock:
    """Adds the time spent inside a `with` block to one detector's account."""

    def __init__(self, run: DetectorRun, name: str) -> None:
        self.run, self.name = run, name

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *_: object) -> None:
        self.run.seconds[self.name] += time.perf_counter() - self.start


@dataclass
class _Columns:
    """The stream's accounts as codes, for the bookkeeping the pipeline does outside the detectors."""

    names: list[str]
    actor: np.ndarray
    target: np.ndarray
    ts: np.ndarray

    @classmethod
    def of(cls, events: list[Event]) -> _Columns:
        codes: dict[str, int] = {}
        n = len(events)
        actor = np.fromiter((codes.setdefault(e.actor, len(codes)) for e in events), dtype=np.int64, count=n)
        target = np.fromiter((codes.setdefault(e.target, len(codes)) for e in events), dtype=np.int64, count=n)
        return cls(list(codes), actor, target, np.fromiter((e.ts for e in events), dtype=np.int64, count=n))


def run_windows(events: list[Event], thresholds: Thresholds, size_s: int, period_s: int, shards: int,
                say: Say) -> DetectorRun:
    """Every detector over the sliding windows of a time-sorted stream, as the pipeline runs them.

    Windows start every period and hold the slices (periods) of their span; before a window is
    scored, the actor history takes in its newest slice. Only the detector calls are timed.
    """
    run = DetectorRun()
    cols = _Columns.of(events)
    per_window = size_s // period_s
    slices = cols.ts // (period_s * 1000)
    first, last = int(slices[0]), int(slices[-1])
    bounds = np.searchsorted(slices, np.arange(first, last + 2))  # slice first+i: events bounds[i]:bounds[i+1]
    nonempty = np.flatnonzero(np.diff(bounds)) + first
    ends = sorted({int(k) + j for k in nonempty for j in range(1, per_window + 1)})  # window ends, in slices
    destination = _midas_scores(events, cols, thresholds, shards, run)
    history, volumes = ActorHistory(), _Volumes(cols, thresholds.burst.baseline_windows, per_window)
    recent: list[Group] = []
    fed, started = first, time.perf_counter()
    for n, end in enumerate(ends):
        lo, hi = bounds[max(end - per_window, first) - first], bounds[min(end, last + 1) - first]
        with _Clock(run, "bot"):
            while fed < min(end, last + 1):
                history.update(events[bounds[fed - first]:bounds[fed - first + 1]])
                fed += 1
        if hi <= lo:
            continue
        window = f"{(end - per_window) * period_s}-{end * period_s}"
        chunk = events[lo:hi]
        run.windows += 1
        with _Clock(run, "bot"):
            scored = bot_scores(chunk, history, end * period_s * 1000, thresholds.bot)
        for s in scored:
            run.keep("bot", s.actor, s.score)
            if s.score >= thresholds.bot.threshold:
                run.flagged["bot"].add(s.actor)
        memory_s = thresholds.lockstep.memory_hours * 3600
        recent = [g for g in recent if window_span(g.window)[1] >= end * period_s - memory_s]
        with _Clock(run, "lockstep"):
            result = find_lockstep(chunk, window, thresholds.lockstep, recent)
        recent.extend(result.groups)
        _keep_lockstep(run, result)
        _bursts(run, volumes, lo, hi, end - first - per_window, thresholds)
        _microclusters(run, events, lo, hi, destination, window, thresholds)
        if n % 100 == 0 or n == len(ends) - 1:
            say(f"  window {n + 1}/{len(ends)}: {hi - lo} events, {time.perf_counter() - started:.0f} s")
    run.memory["actor_history_bytes"] = history.memory_bytes()
    run.memory["actor_history_accounts"] = len(history)
    return run


def _keep_lockstep(run: DetectorRun, result: LockstepResult) -> None:
    run.memory["lsh_bytes_peak"] = max(run.memory.get("lsh_bytes_peak", 0), result.stats.get("lsh_bytes", 0))
    run.groups_found.extend(result.groups)
    for group in result.groups:
        run.grouped.update(group.members)
    for flag in result.flags:
        run.keep("lockstep", flag.user, flag.score)
        run.flagged["lockstep"].add(flag.user)


def _midas_scores(events: list[Event], cols: _Columns, thresholds: Thresholds, shards: int, run: DetectorRun
                  ) -> np.ndarray:
    """Destination score of every edge: MIDAS-R sharded by destination, edges in stream order per shard."""
    config = thresholds.midas
    shard = np.fromiter((shard_of(a, shards) for a in cols.names), dtype=np.int64, count=len(cols.names))[cols.target]
    ticks = cols.ts // (config.tick_s * 1000)
    destination = np.zeros(len(events))
    step = 10_000  # edges per call, as a streaming DoFn's bundle; results do not depend on it
    for k in range(shards):
        midas = MidasR(config)
        mine = np.flatnonzero(shard == k)
        for lo in range(0, len(mine), step):
            part = mine[lo:lo + step].tolist()
            with _Clock(run, "microcluster"):
                src = np.fromiter((account_key(events[i].actor) for i in part), dtype=np.uint64, count=len(part))
                dst = np.fromiter((account_key(events[i].target) for i in part), dtype=np.uint64, count=len(part))
                destination[part] = midas.update_keys(src, dst, ticks[part])[:, 2]
        run.memory["midas_bytes_per_shard"] = midas.memory_bytes()
    run.memory["midas_bytes_total"] = shards * run.memory["midas_bytes_per_shard"]
    return destination


def _microclusters(run: DetectorRun, events: list[Event], lo: int, hi: int, destination: np.ndarray, window: str,
                   thresholds: Thresholds) -> None:
    config = thresholds.midas
    hot = (lo + np.flatnonzero(destination[lo:hi] >= config.threshold)).tolist()
    scored = [EdgeScore(events[i].actor, events[i].target, 0, 0.0, 0.0, 0.0, float(destination[i])) for i in hot]
    with _Clock(run, "microcluster"):
        flags = microcluster_flags(scored, window, config)
    run.flagged["microcluster"].update(f.user for f in flags)
    sources: dict[str, set[str]] = defaultdict(set)
    for e in scored:
        sources[e.dst].add(e.src)
    for target, who in sources.items():  # every target's score, flagged or not, for the ROC-AUC
        run.keep("microcluster", target, target_strength(len(who), config))
        run.midas_sources[target] = max(len(who), run.midas_sources.get(target, 0))


class _Volumes:
    """Each window's (received, sent) per account as sparse arrays: the counts the pipeline already keeps."""

    def __init__(self, cols: _Columns, baseline_windows: int, per_window: int) -> None:
        self.cols, self.baseline_windows, self.per_window = cols, baseline_windows, per_window
        self.by_start: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # start slice -> (codes, volumes n x 2)

    def window(self, lo: int, hi: int, start: int) -> tuple[np.ndarray, np.ndarray]:
        cols = self.cols
        codes, inverse = np.unique(np.concatenate([cols.target[lo:hi], cols.actor[lo:hi]]), return_inverse=True)
        n = hi - lo
        vol = np.stack([np.bincount(inverse[:n], minlength=len(codes)),
                        np.bincount(inverse[n:], minlength=len(codes))], axis=1)
        self.by_start[start] = (codes, vol)
        horizon = start - self.baseline_windows * self.per_window
        for old in [s for s in self.by_start if s < horizon]:
            del self.by_start[old]
        return codes, vol

    def earlier(self, codes: np.ndarray, start: int, back: int) -> np.ndarray:
        """codes x back x 2: volumes in the `back` non-overlapping windows before `start`, oldest first."""
        out = np.zeros((len(codes), back, 2), dtype=np.int64)
        for j, k in enumerate(range(back, 0, -1)):
            past = self.by_start.get(start - k * self.per_window)
            if past is None:
                continue
            pcodes, pvol = past
            at = np.minimum(np.searchsorted(pcodes, codes), len(pcodes) - 1)
            hit = pcodes[at] == codes
            out[hit, j] = pvol[at[hit]]
        return out


def _bursts(run: DetectorRun, volumes: _Volumes, lo: int, hi: int, start: int, thresholds: Thresholds) -> None:
    """`start`: the window's first slice, counted from the stream's first slice."""
    config = thresholds.burst
    codes, vol = volumes.window(lo, hi, start)
    pick = np.flatnonzero(vol.max(axis=1) >= BURST_PREFILTER)
    back = min(config.baseline_windows, max(0, start) // volumes.per_window)
    past = volumes.earlier(codes[pick], start, back)
    names = volumes.cols.names
    current = {names[c]: Volume(int(r), int(s)) for c, (r, s) in zip(codes[pick].tolist(), vol[pick].tolist(),
                                                                      strict=True)}
    history = {names[c]: [Volume(int(r), int(s)) for r, s in rows]
               for c, rows, any_ in zip(codes[pick].tolist(), past.tolist(), past.any(axis=(1, 2)).tolist(),
                                        strict=True) if any_}
    with _Clock(run, "burst"):
        scored = burst_scores(current, history, back, config)
    for user, pair in scored.items():
        run.keep("burst", user, max(burst_strength(s, config) for s in pair))
        if any(s.fired for s in pair):
            run.flagged["burst"].add(user)
        eligible = [s.volume for s in pair if s.z >= config.min_z and s.ratio >= config.min_ratio]
        if eligible:
            run.burst_volume[user] = max(max(eligible), run.burst_volume.get(user, 0))


# --------------------------------------------------------------------------- figures


def roc_auc(positive: Iterable[float], negative: Iterable[float]) -> float:
    """Mann-Whitney ROC-AUC with ties counted half."""
    pos, neg = np.fromiter(positive, dtype=np.float64), np.fromiter(negative, dtype=np.float64)
    if not len(pos) or not len(neg):
        return float("nan")
    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


@dataclass
class Row:
    anomaly: str
    detector: str
    planted: int
    tp: int
    fn: int
    fp: int
    other: int  # flagged planted accounts of another type (not counted as false positives)
    auc: float

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")

    @property
    def recall(self) -> float:
        return self.tp / self.planted if self.planted else float("nan")

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0


def planted_rows(run: DetectorRun, planted: Planted, negatives: set[str]) -> list[Row]:
    types = [("bots", "bot", planted.bots), ("ring members", "lockstep", planted.ring),
             ("bought target", "burst", {planted.purchase_target}),
             ("bought target", "microcluster", {planted.purchase_target}),
             ("bought accounts", "any", planted.purchase_accounts)]
    rows = []
    for anomaly, detector, truth in types:
        detectors = ["bot", "lockstep", "burst", "microcluster"] if detector == "any" else [detector]
        flagged = set().union(*(run.flagged[d] for d in detectors))
        scores: dict[str, float] = {}
        for d in detectors:
            for account, score in run.scores[d].items():
                scores[account] = max(score, scores.get(account, 0.0))
        auc = roc_auc((scores.get(a, 0.0) for a in truth), (scores.get(a, 0.0) for a in negatives))
        others = (planted.accounts | planted.ring_targets | {planted.purchase_target}) - truth
        rows.append(Row(anomaly, detector, len(truth), len(flagged & truth), len(truth - flagged),
                        len(flagged & negatives), len(flagged & others), auc))
    return rows


def print_table(header: Sequence[str], rows: Iterable[Sequence[object]], out: Callable[[str], None]) -> None:
    text = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in text)) for i, h in enumerate(header)]
    out("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    out("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in text:
        out("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.3f}"
    return str(value)


def sensitivity_rows(run: DetectorRun, planted: Planted, negatives: set[str], thresholds: Thresholds
                     ) -> list[list[object]]:
    """Found planted accounts and flagged Higgs accounts as each detector's main threshold varies,
    recomputed exactly from the run (the default is starred): where the defaults come from."""
    rows: list[list[object]] = []

    def add(detector: str, setting: str, default: float, values: Sequence[float], truth: set[str],
            flagged: Callable[[float], set[str]]) -> None:
        for value in values:
            hit = flagged(value)
            star = "*" if value == default else ""
            rows.append([detector, f"{setting} {value:g}{star}", f"{len(hit & truth)}/{len(truth)}",
                         len(hit & negatives)])

    bot = run.scores["bot"]
    add("bot", "threshold", thresholds.bot.threshold, (0.5, 0.6, 0.7, 0.75, 0.8, 0.9), planted.bots,
        lambda v: {a for a, s in bot.items() if s >= v})
    lock = thresholds.lockstep
    seen = {g.id: recurrences(g, [e for e in run.groups_found
                                  if window_span(g.window)[1] - window_span(e.window)[1] <= lock.memory_hours * 3600],
                              lock) for g in run.groups_found}
    add("lockstep", "recurrence", lock.recurrence, (0, 1, 2, 3), planted.ring,
        lambda v: {m for g in run.groups_found if seen[g.id] >= v for m in g.members})
    add("burst", "min_volume", thresholds.burst.min_volume, (50, 100, 150, 200, 300), {planted.purchase_target},
        lambda v: {a for a, n in run.burst_volume.items() if n >= v})
    add("microcluster", "min_sources", thresholds.midas.min_sources, (20, 50, 100, 150, 200),
        {planted.purchase_target}, lambda v: {a for a, n in run.midas_sources.items() if n >= v})
    return rows


# --------------------------------------------------------------------------- the command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clout eval legacy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="datasets folder (default: CLOUT_DATA_DIR "
                        "or ../shared/data)")
    parser.add_argument("--window", type=int, default=3600, help="window size, seconds")
    parser.add_argument("--period", type=int, default=900, help="window period, seconds")
    parser.add_argument("--shards", type=int, default=4, help="MIDAS-R shards (by destination)")
    parser.add_argument("--seed", type=int, default=7, help="synthetic generator seed")
    parser.add_argument("--synthetic-users", type=int, default=10_000)
    parser.add_argument("--synthetic-events", type=int, default=700_000,
                        help="size of the synthetic world over the week (sets the planted accounts' pace: the "
                             "default gives the demo's, about 10 actions an hour per bot)")
    parser.add_argument("--skip-otc", action="store_true", help="skip the Bitcoin OTC part")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    folder = args.data_dir or data_dir()

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    higgs_path = folder / "higgs-twitter" / "higgs-activity_time.txt.gz"
    needed = [higgs_path] + ([] if args.skip_otc else [folder / "bitcoin-otc" / "soc-sign-bitcoinotc.csv",
                                                        folder / "bitcoin-otc" / "otc_gt.csv"])
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        say(f"clout eval: missing dataset files {missing}; see README 'Real data' (or set CLOUT_DATA_DIR)")
        return 2
    thresholds = Thresholds()
    began = time.perf_counter()
    say("loading the Higgs Twitter week ...")
    higgs = load_higgs(higgs_path)
    say(f"  {len(higgs):,} events; planting synthetic anomalies (seed {args.seed}) ...")
    synthetic = SyntheticConfig(users=args.synthetic_users, events=args.synthetic_events, seed=args.seed,
                                start_ms=HIGGS_WEEK_START_MS, days=7.0)
    planted = plant(higgs, synthetic)
    stream = sorted(higgs + planted.events, key=lambda e: e.ts)
    say(f"  {len(planted.events):,} planted events: {len(planted.bots)} bots, {len(planted.ring)} ring members, "
        f"{len(planted.purchase_accounts)} bought accounts; running the detectors ...")
    run = run_windows(stream, thresholds, args.window, args.period, args.shards, say)
    higgs_accounts = {a for e in higgs for a in (e.actor, e.target)}
    negatives = higgs_accounts - planted.ring_targets - {planted.purchase_target}
    rows = planted_rows(run, planted, negatives)
    out = print
    out(f"\n## Planted anomalies in the Higgs week ({len(stream):,} events, {run.windows} windows of "
        f"{args.window} s every {args.period} s)\n")
    print_table(["anomaly", "detector", "planted", "TP", "FN", "FP (Higgs)", "other planted", "precision",
                 "recall", "F1", "ROC-AUC"],
                ([r.anomaly, r.detector, r.planted, r.tp, r.fn, r.fp, r.other, r.precision, r.recall, r.f1, r.auc]
                 for r in rows), out)
    out(f"\nFalse positives over the {len(negatives):,} active Higgs accounts (beneficiaries of planted "
        "engagement that are in the answer key excluded):\n")
    fp_rows = []
    for detector in ("bot", "lockstep", "burst", "microcluster"):
        n = len(run.flagged[detector] & negatives)
        fp_rows.append([detector, n, f"{100 * n / len(negatives):.3f} %"])
    n_any = len(set().union(*run.flagged.values()) & negatives)
    fp_rows.append(["any detector", n_any, f"{100 * n_any / len(negatives):.3f} %"])
    print_table(["detector", "Higgs accounts flagged", "FP rate"], fp_rows, out)
    out("\nSensitivity (defaults starred; other thresholds at their defaults):\n")
    print_table(["detector", "setting", "planted found", "Higgs accounts flagged"],
                sensitivity_rows(run, planted, negatives, thresholds), out)
    bot = run.scores["bot"]
    out(f"\nBot scores: lowest planted bot {min(bot.get(a, 0.0) for a in planted.bots):.3f}, highest Higgs account "
        f"{max((bot[a] for a in bot.keys() & negatives), default=0.0):.3f}.")
    lock_only = run.grouped - run.flagged["lockstep"]
    out(f"\nLockstep groups found: {len(run.groups_found)} (in any window); {len(lock_only & negatives)} Higgs "
        "accounts were in a group that did not recur, so they were reported as a group but not flagged.")
    otc_rows = [] if args.skip_otc else _otc(folder / "bitcoin-otc", thresholds, args, say)
    if otc_rows:
        out("\n## Bitcoin OTC: REV2 labels, fraudulent (positive) vs benign\n")
        print_table(["windows", "score", "users scored > 0", "ROC-AUC"], otc_rows, out)
    out("\n## Cost (plain Python, one process)\n")
    cost_rows = [[d, f"{run.seconds[d]:.1f}", f"{len(stream) / max(run.seconds[d], 1e-9):,.0f}"]
                 for d in ("bot", "lockstep", "burst", "microcluster")]
    total = sum(run.seconds.values())
    cost_rows.append(["all four", f"{total:.1f}", f"{len(stream) / total:,.0f}"])
    print_table(["detector", "seconds", "stream events/s"], cost_rows, out)
    out(f"\nMIDAS-R sketches: {run.memory['midas_bytes_per_shard'] / 1e6:.2f} MB per shard, "
        f"{run.memory['midas_bytes_total'] / 1e6:.2f} MB for {args.shards} shards (constant). "
        f"LSH state (signatures, tokens, candidate pairs) peak per window: "
        f"{run.memory['lsh_bytes_peak'] / 1e6:.2f} MB. "
        f"Actor history: {run.memory['actor_history_bytes'] / 1e6:.1f} MB for "
        f"{run.memory['actor_history_accounts']:,} accounts.")
    out(f"Each event is read by {args.window // args.period} overlapping windows; "
        f"whole evaluation {time.perf_counter() - began:.0f} s.")
    return 0


def _otc(folder: Path, thresholds: Thresholds, args: argparse.Namespace, say: Say) -> list[list[object]]:
    say("Bitcoin OTC ...")
    events, labels = load_otc(folder)
    rows: list[list[object]] = []
    for size, period in ((args.window, args.period), (86_400, 21_600)):
        run = run_windows(events, thresholds, size, period, args.shards, lambda _line: None)
        positive = [u for u, label in labels.items() if label < 0]
        negative = [u for u, label in labels.items() if label > 0]
        combined: dict[str, float] = {}
        for d in ("bot", "lockstep", "burst", "microcluster"):
            for u, s in run.scores[d].items():
                combined[u] = max(s, combined.get(u, 0.0))
            scores = run.scores[d]
            rows.append([f"{size} s / {period} s", d, sum(scores.get(u, 0) > 0 for u in labels),
                         roc_auc((scores.get(u, 0.0) for u in positive), (scores.get(u, 0.0) for u in negative))])
        rows.append([f"{size} s / {period} s", "max of all", sum(combined.get(u, 0) > 0 for u in labels),
                     roc_auc((combined.get(u, 0.0) for u in positive), (combined.get(u, 0.0) for u in negative))])
        say(f"  windows {size} s / {period} s done")
    return rows
