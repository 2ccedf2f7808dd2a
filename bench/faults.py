"""Fault injection, the whole matrix: broker, Redis and pipeline kills, pauses and a lossy link, each
followed by the check (Redis equals the independent recount of the topic, PageRank of the busiest
window against networkx, nothing valid missing from Redis or the DLQ, consumer lag back to zero).

Run from the repository root:
    .venv/bin/python bench/faults.py [--trials N] [--kills K] [--events E] [--only FAULT,...] [--seed S]

It starts a Kafka broker and a redis-server of its own on loopback (Kafka 31132 to 31135 and Redis
31419, moved by CLOUT_TEST_PORT_OFFSET; state in .state/faults-bench), which it kills and restarts;
every trial has its own topic, group and key prefix. `--trials` trials of every fault (default 1;
the broker gone for good, 150 s of retries, runs once), `--kills` pipeline SIGKILLs at seeded
random moments shared among its trials (default 10, each followed by a restart with
the same group), each trial on the first `--events` events of the real Higgs file (default 10,000:
38 hours, 157 windows). Prints a progress line per trial and one markdown table (for the pipeline
kills, trials counts kills); exits 1 if any trial lost a record or failed its check.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "faults"))

from harness import HIGGS, Ports, TrialFailed, fault_stack, higgs_slice, write_slice  # noqa: E402
from recount import recount  # noqa: E402
from trials import MATRIX, Outcome  # noqa: E402

ONE_SHOT = {"ingest-broker-gone"}  # 150 s of the connectors retrying: once is enough


def main() -> int:
    args = parse_args()
    faults = args.only.split(",") if args.only else list(MATRIX)
    unknown = [f for f in faults if f not in MATRIX]
    if unknown:
        print(f"unknown fault(s) {unknown}; choose from {', '.join(MATRIX)}", file=sys.stderr)
        return 2
    if not HIGGS.exists():
        print(f"the real Higgs dataset is missing at {HIGGS}; see README 'Real data'", file=sys.stderr)
        return 2
    state = REPO / ".state" / "faults-bench"
    rng = random.Random(args.seed)
    results: dict[str, list[Outcome]] = {}
    started = time.monotonic()
    with fault_stack(Ports.for_bench(), state) as stack:
        data = write_slice(state / "higgs-slice.txt", args.events)
        windows = len(recount(higgs_slice(args.events)))
        print(f"fault stack up: broker {stack.settings.kafka_bootstrap}, Redis {stack.redis.url}; "
              f"{args.events:,} Higgs events, {windows} windows", flush=True)
        for fault in faults:
            trials = 1 if fault in ONE_SHOT else args.trials
            options = {"kills": -(-args.kills // trials)} if fault == "pipeline-sigkill" else {}
            for n in range(1, trials + 1):
                outcome = run_trial(fault, stack, data, rng, windows, **options)
                results.setdefault(fault, []).append(outcome)
                print(f"[{time.monotonic() - started:6.0f} s] {fault} {n}/{trials}: {outcome.line()}", flush=True)
    print()
    print(table(results))
    failed = [o for outcomes in results.values() for o in outcomes if not o.survived]
    print(f"\n{sum(map(len, results.values()))} trials in {time.monotonic() - started:.0f} s; "
          f"{len(failed)} failed, {sum(o.lost for outcomes in results.values() for o in outcomes)} records lost")
    return 1 if failed else 0


def run_trial(fault: str, stack: object, data: Path, rng: random.Random, windows: int, **options: int) -> Outcome:
    try:
        return MATRIX[fault](stack, data, rng, windows, **options)
    except TrialFailed as error:
        return Outcome(fault, False, 0, None, [str(error)])


def table(results: dict[str, list[Outcome]]) -> str:
    rows = ["| fault | trials | survived | records lost | recovery s |", "| --- | --- | --- | --- | --- |"]
    for outcomes in results.values():
        times = [o.recovery_s for o in outcomes if o.recovery_s is not None]
        recovery = f"{min(times):.1f} to {max(times):.1f}" if len(times) > 1 else f"{times[0]:.1f}" if times else "n/a"
        rows.append(f"| {outcomes[0].fault} | {sum(o.faults for o in outcomes)} | "
                    f"{sum(o.faults for o in outcomes if o.survived)} | "
                    f"{sum(o.lost for o in outcomes)} | {recovery} |")
    return "\n".join(rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1, help="trials of each fault (default 1)")
    parser.add_argument("--kills", type=int, default=10,
                        help="pipeline SIGKILLs in all, shared among its trials, each then restarted (default 10)")
    parser.add_argument("--events", type=int, default=10_000, help="first N Higgs events per trial (default 10,000)")
    parser.add_argument("--only", help=f"comma-separated faults: {', '.join(MATRIX)}")
    parser.add_argument("--seed", type=int, default=13)
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(main())
