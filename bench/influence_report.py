"""Influence report on the Higgs week: does our score rank users like reach, reposts or mentions do?

Run from the repository root:  .venv/bin/python bench/influence_report.py [--data PATH] [--out docs/influence-report.md]

Cha, Haddadi, Benevenuto and Gummadi ("Measuring User Influence in Twitter: The Million Follower
Fallacy", ICWSM 2010) ranked users by followers, retweets received and mentions received and found
the rankings only loosely related. This asks the same of the Higgs Twitter week (SNAP; RT = repost,
MT = mention, RE = reply), in one graph for the whole week and one per UTC day, with our score
(clout.influence.scores.window_influence) beside the simple counts:
- reach: distinct engagers (our stand-in for followers: the stream has no follow graph);
- reposts received, mentions received (self-interactions left out, as everywhere in influence);
- network: the PageRank part alone; score: the 1..100 score (unrounded, so ties are rare).
Spearman's rho (scipy.stats.spearmanr, ties averaged) over the graph's active users (received at
least one engagement from someone else), and how our top 20 differs from each ranking's top 20.
Prints the tables and writes them as markdown.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from clout.influence.scores import InfluenceConfig, UserInfluence, window_influence
from clout.model.events import Event
from clout.model.kinds import KIND_INDEX

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("CLOUT_DATA_DIR", REPO.parent / "shared" / "data"))
HIGGS = DATA / "higgs-twitter" / "higgs-activity_time.txt.gz"
HIGGS_KINDS = {"RT": KIND_INDEX["repost"], "MT": KIND_INDEX["mention"], "RE": KIND_INDEX["reply"]}
METRICS = ("reach", "reposts", "mentions", "network", "score")
TOP = 20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(HIGGS), help="higgs-activity_time.txt.gz")
    parser.add_argument("--out", default=str(REPO / "docs" / "influence-report.md"))
    args = parser.parse_args(argv)
    if not Path(args.data).exists():
        print(f"missing dataset: {args.data}; see README 'Real data'", file=sys.stderr)
        return 2
    started = time.perf_counter()
    events = read_higgs(Path(args.data))
    by_day: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_day[datetime.fromtimestamp(event.ts // 1000, UTC).strftime("%Y-%m-%d")].append(event)
    graphs = {"week": events} | dict(sorted(by_day.items()))
    config = InfluenceConfig()
    studies = {}
    for name, graph in graphs.items():
        print(f"scoring {name}: {len(graph):,} events ...", file=sys.stderr, flush=True)
        studies[name] = study(graph, config)
    markdown = render(studies, Path(args.data).name, time.perf_counter() - started)
    print(markdown)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(markdown)
    print(f"written to {args.out}", file=sys.stderr)
    return 0


def read_higgs(path: Path) -> list[Event]:
    with gzip.open(path, "rt") as lines:
        return [Event(int(ts) * 1000, actor, target, HIGGS_KINDS[kind], "twitter")
                for actor, target, ts, kind in (line.split() for line in lines)]


def study(events: list[Event], config: InfluenceConfig) -> dict:
    """Per-user values of every metric over the active users, their correlations and top lists."""
    influence = window_influence(events, config)
    engagers: dict[str, set[str]] = defaultdict(set)
    received: dict[int, Counter[str]] = {KIND_INDEX["repost"]: Counter(), KIND_INDEX["mention"]: Counter()}
    for e in events:  # the simple counts, recounted here without clout
        if e.actor != e.target:
            engagers[e.target].add(e.actor)
            if e.kind in received:
                received[e.kind][e.target] += 1
    users = sorted(engagers)
    mismatch = sum(influence[u].reach != len(engagers[u]) for u in users)
    if mismatch:
        raise SystemExit(f"reach disagrees with a plain count of distinct engagers for {mismatch} users")
    values = {
        "reach": np.array([len(engagers[u]) for u in users], dtype=float),
        "reposts": np.array([received[KIND_INDEX["repost"]][u] for u in users], dtype=float),
        "mentions": np.array([received[KIND_INDEX["mention"]][u] for u in users], dtype=float),
        "network": np.array([influence[u].network for u in users]),
        "score": np.array([influence[u].raw for u in users]),
    }
    rho = {(a, b): float(spearmanr(values[a], values[b]).statistic) for a in METRICS for b in METRICS}
    top = {m: [users[i] for i in sorted(range(len(users)), key=lambda i: (-values[m][i], users[i]))[:TOP]]
           for m in METRICS}
    return {"events": len(events), "users": len(influence), "active": len(users), "rho": rho, "top": top,
            "values": values, "index": {u: i for i, u in enumerate(users)}, "influence": influence}


def render(studies: dict[str, dict], source: str, seconds: float) -> str:
    week = studies["week"]
    lines = [
        "# Influence report: Higgs Twitter week", "",
        f"Generated by `python bench/influence_report.py` from `{source}` in {seconds:.0f} s "
        "(formulas: docs/influence.md). Rankings over the active users of each graph (received at least "
        "one repost, mention or reply from someone else); Spearman's rho, ties averaged.", "",
        f"## The whole week in one graph ({week['events']:,} events, {week['users']:,} users, "
        f"{week['active']:,} active)", "",
        "| rho | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|",
    ]
    lines += [f"| {a} | " + " | ".join(f"{week['rho'][a, b]:.3f}" for b in METRICS) + " |" for a in METRICS]
    lines += ["", "## Per UTC day", "",
              "| day | events | active | score~reach | score~reposts | score~mentions | score~network | "
              "reach~reposts | reach~mentions | reposts~mentions |", "|---" * 10 + "|"]
    pairs = [("score", "reach"), ("score", "reposts"), ("score", "mentions"), ("score", "network"),
             ("reach", "reposts"), ("reach", "mentions"), ("reposts", "mentions")]
    for name, s in studies.items():
        if name != "week":
            lines.append(f"| {name} | {s['events']:,} | {s['active']:,} | "
                         + " | ".join(f"{s['rho'][p]:.3f}" for p in pairs) + " |")
    lines += ["", f"## How our top {TOP} differs (overlap of the top-{TOP} sets)", "",
              "| graph | " + " | ".join(f"with {m}" for m in METRICS[:4]) + " |", "|---" * 5 + "|"]
    for name, s in studies.items():
        lines.append(f"| {name} | " + " | ".join(str(len(set(s['top']['score']) & set(s['top'][m])))
                                                  for m in METRICS[:4]) + " |")
    lines += ["", "### The week: who differs", ""]
    ours = week["top"]["score"]
    for m in METRICS[:4]:
        only_ours = [u for u in ours if u not in week["top"][m]]
        only_theirs = [u for u in week["top"][m] if u not in ours]
        lines.append(f"- **{m}**: {TOP - len(only_ours)} shared; only in ours: {', '.join(only_ours) or '-'}; "
                     f"only in theirs: {', '.join(only_theirs) or '-'}")
    lines += ["", f"### The week: our top {TOP} with each metric's rank", "",
              "| # | user | score | reach (rank) | reposts (rank) | mentions (rank) | amplification | "
              "network (rank) |", "|---" * 8 + "|"]
    ranks = {m: _ranks(week["values"][m]) for m in METRICS[:4]}
    for n, user in enumerate(ours, 1):
        i, info = week["index"][user], week["influence"][user]
        cells = [f"{int(week['values'][m][i]):,} ({ranks[m][i]:,})" for m in ("reach", "reposts", "mentions")]
        lines.append(f"| {n} | {user} | {_score(info)} | " + " | ".join(cells)
                     + f" | {info.amplification:.2f} | {info.network:.5f} ({ranks['network'][i]:,}) |")
    return "\n".join(lines) + "\n"


def _ranks(values: np.ndarray) -> np.ndarray:
    """Competition rank, 1 = highest."""
    ordered = np.sort(values)
    return len(values) - np.searchsorted(ordered, values, side="right") + 1


def _score(info: UserInfluence) -> str:
    return f"{info.score} ({info.raw:.1f})"


if __name__ == "__main__":
    sys.exit(main())
