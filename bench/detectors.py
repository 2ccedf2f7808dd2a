"""Account-verdict cost on the Higgs week, as the pipeline's per-shard account stage will pay it.

Run from the repository root:  .venv/bin/python bench/detectors.py [--shards 4] [--days 7]

The real Higgs week (563,069 events) is cut into 15-minute slices of EventColumns. For every
slice, in order, each shard's `update` takes the whole slice (as the stage receives it); at every
slice end (a window end: 1-hour windows every 15 minutes) each shard's `summarise`, one
`Context.combine` of all summaries (the per-window gather) and each shard's `verdicts` run. It
prints ms per slice and per window (median, p99, max, per shard and all shards), the state's
memory and `to_bytes` size, and the time of one `to_bytes` / `from_bytes` round trip of the
largest shard (what Beam state costs if the state is written each slice). Beside them, in the same
process and the same windows: `window_influence` on each window's events (the vectorised influence
step every window pays already), the ceiling the detectors are compared with.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from clout.anomalies.verdicts import AccountState, Context, VerdictConfig, summarise, update, verdicts
from clout.evaluation import longhorizon
from clout.evaluation.windows import data_dir, print_table
from clout.influence.scores import InfluenceConfig, window_influence
from clout.model.columns import concat


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--days", type=float, default=None, help="only the first DAYS of the week")
    args = parser.parse_args(argv)
    higgs = longhorizon.load_higgs(data_dir() / "higgs-twitter" / "higgs-activity_time.txt.gz", args.days)
    stream = longhorizon.Stream.of(*higgs)
    parts = longhorizon.slices_of(stream)
    print(f"{len(stream.ts):,} Higgs events in {len(parts)} slices, {args.shards} shards", file=sys.stderr)
    load_before = os.getloadavg()[0]
    timings, flags, sizes = run(parts, args.shards)
    states = timings.pop("states")
    report(timings, states, flags, sizes, len(stream.ts), args.shards)
    print(f"\n{os.cpu_count()} CPUs; 1-min load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after "
          "(the machine is shared); one process, shards in turn")
    return 0


def run(parts: list, shards: int) -> tuple[dict, int, tuple[int, int]]:
    config = VerdictConfig(stream_start_ms=int(parts[0].ts[0]))
    influence = InfluenceConfig()
    states = [AccountState.empty(k, shards) for k in range(shards)]
    t: dict[str, list[float]] = {"update": [], "summarise": [], "combine": [], "verdicts": [], "influence": []}
    flagged, context_bytes, summary_bytes = 0, 0, 0
    for n, cols in enumerate(parts):
        now = (int(cols.ts[0]) // longhorizon.SLICE_MS + 1) * longhorizon.SLICE_MS
        t["update"].append(_each(lambda s, c=cols: update(s, c), states))
        t0 = time.perf_counter()
        summaries = [summarise(s, now, config) for s in states]
        t1 = time.perf_counter()
        context = Context.combine(summaries, config)
        t2 = time.perf_counter()
        flagged += sum(len(verdicts(s, now, context, config)) for s in states)
        t3 = time.perf_counter()
        window = concat(parts[max(0, n - 3):n + 1])
        window_influence(window, influence)
        t4 = time.perf_counter()
        t["summarise"].append(t1 - t0)
        t["combine"].append(t2 - t1)
        t["verdicts"].append(t3 - t2)
        t["influence"].append(t4 - t3)
        context_bytes = max(context_bytes, context.nbytes)
        summary_bytes = max(summary_bytes, max(x.nbytes for x in summaries))
        if n % 96 == 0:
            print(f"  slice {n}/{len(parts)}", file=sys.stderr, flush=True)
    return {**t, "states": states}, flagged, (context_bytes, summary_bytes)


def _each(step, states: list[AccountState]) -> float:
    began = time.perf_counter()
    for s in states:
        step(s)
    return time.perf_counter() - began


def report(t: dict, states: list[AccountState], flags: int, sizes: tuple[int, int], events: int, shards: int) -> None:
    rows = []
    for name, per in (("update (per slice)", t["update"]), ("summarise (per window)", t["summarise"]),
                      ("Context.combine (per window)", t["combine"]), ("verdicts (per window)", t["verdicts"]),
                      ("detectors, all (per window)", np.add.reduce([t[k] for k in ("update", "summarise", "combine",
                                                                                     "verdicts")])),
                      ("ceiling: window_influence (per window)", t["influence"])):
        ms = 1000 * np.asarray(per)
        rows.append([name, f"{np.median(ms):.1f}", f"{np.percentile(ms, 99):.1f}", f"{ms.max():.1f}",
                     f"{ms.sum() / 1000:.1f}", f"{np.median(ms) / shards:.2f}"])
    print_table(["step (all shards)", "median ms", "p99 ms", "max ms", "total s", "median ms per shard"], rows, print)
    total = sum(sum(t[k]) for k in ("update", "summarise", "combine", "verdicts"))
    print(f"\ndetectors: {events / total:,.0f} events/s over the stream; {flags} account flags over all windows")
    biggest = max(states, key=len)
    began = time.perf_counter()
    blob = biggest.to_bytes()
    mid = time.perf_counter()
    AccountState.from_bytes(blob)
    done = time.perf_counter()
    accounts = sum(len(s) for s in states)
    memory = sum(s.memory_bytes() for s in states)
    print(f"state: {accounts:,} accounts, {memory / 1e6:.1f} MB in memory ({AccountState.BYTES_PER_ACCOUNT} B of "
          f"columns per account), largest shard {len(biggest):,} accounts, to_bytes {len(blob) / 1e6:.1f} MB in "
          f"{1000 * (mid - began):.0f} ms, from_bytes {1000 * (done - mid):.0f} ms; largest Context "
          f"{sizes[0] / 1e3:.1f} kB, largest per-shard Summary {sizes[1] / 1e3:.1f} kB")


if __name__ == "__main__":
    sys.exit(main())
