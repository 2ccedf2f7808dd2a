"""End-to-end benchmark of the streaming pipeline (Kafka -> Beam on Prism -> Redis) beside its ceilings.

Run from the repository root:
    .venv/bin/python bench/pipeline.py [--limit N] [--freshness-seconds S] [--rate R] [--data-dir DIR]
    .venv/bin/python bench/pipeline.py --runner flink [--days D]   # Flink p1 and p2 beside Prism: bench/flink.py

It uses its own local stack (Kafka on 39092/39093, Redis on 36379, state in .state/bench) so that it
disturbs no other stack: started here if it is not running, stopped at the end only if started here.

1. publishes higgs-activity_time.txt.gz (or its first --limit lines) into a fresh 6-partition scratch
   topic, then runs `clout run --from-beginning --stop-when-idle 3` as a subprocess, exactly as a user
   would: events/s over the run's wall time less the idle wait, the time until its first window is in
   Redis, and a check that events_valid equals the events published;
2. samples the resident memory (VmRSS) of that run and of its descendants (Prism is one) every 0.2 s;
3. measures the ceilings on the same data, one at a time: a plain KafkaConsumer alone, orjson decode +
   sliding-window counting in plain Python alone, and pipelined Redis HSETs of as many entries as the
   run wrote;
4. freshness: `clout run --from-latest` on another scratch topic, fed steady live events (event time =
   now) with a probe every 100 ms; the publish -> visible-in-Redis latency of each probe;
then prints the figures side by side with the targets, deletes its scratch topics, groups and keys, and
exits 1 only if a correctness check failed (a missed target is reported, not fatal).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
import orjson
import redis
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient

from clout.connectors.file import read_source
from clout.connectors.publisher import Publisher
from clout.connectors.replay import replay
from clout.connectors.topics import create_topics
from clout.influence.scores import InfluenceConfig, window_influence
from clout.local import stack
from clout.model.columns import from_events
from clout.model.events import Event
from clout.model.kinds import KIND_INDEX
from clout.progress import RateReporter
from clout.schemas import InteractionEvent
from clout.settings import Settings, load_settings
from clout.store.layout import KeyLayout

REPO = Path(__file__).resolve().parent.parent
CLOUT = Path(sys.executable).parent / "clout"  # the venv's console script, as a user runs it
PY_SPY = Path(sys.executable).parent / "py-spy"  # the bench extra's sampling profiler
HIGGS = Path("higgs-twitter") / "higgs-activity_time.txt.gz"
EXPECTED_EVENTS = 563_069
BENCH_STACK = {"kafka_port": 39092, "kafka_controller_port": 39093, "redis_port": 36379}
PARTITIONS = 6
IDLE_S = 3
WINDOW_MS, PERIOD_MS = 3_600_000, 900_000  # clout run's defaults: 1 h windows every 15 min
TARGET_EVENTS_PER_S = 50_000
TARGET_P99_S = 2.0
TARGET_PEAK_MIB = 2048
SAMPLE_EVERY_S = 0.2
PROBE_EVERY_S = 0.1
PROBE_TIMEOUT_S = 30.0
POOL_USERS = 5_000
REDIS_CHUNK = 5_000
STOP_GRACE_S = 20.0
SETTLE_S = 3.0
START_TIMEOUT_S = 300.0
RUN_TIMEOUT_S = 3600.0

Row = tuple[str, float | None, str]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--runner=flink" in argv or "--runner flink" in " ".join(argv):
        return _flink_bench([a for a in argv if a not in ("--runner=flink", "--runner", "flink")])
    args = _parse_args(argv)
    path = Path(args.data_dir) / HIGGS
    if not path.exists():
        print(f"missing dataset: {path}", file=sys.stderr)
        return 2
    if args.profile and not PY_SPY.exists():
        print(f"the CPU profile needs py-spy, not found at {PY_SPY}: `make bench` installs it "
              "(or `.venv/bin/pip install -e .[bench]`); --no-profile runs without it", file=sys.stderr)
        return 2
    base = _bench_settings()
    started_stack = _start_stack(base)
    scratch = Scratch(uuid.uuid4().hex[:8])
    load_before = os.getloadavg()[0]
    try:
        report = _run(args, path, base, scratch)
    finally:
        scratch.clean_up(base)
        if started_stack:
            stack.down(base, say=_say("stack"))
    report.print()
    print(f"{os.cpu_count()} CPUs; 1-min load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after "
          "(the broker, Redis, Prism and anything else running share them)")
    for failure in report.failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    print("all checks passed" if not report.failures else f"{len(report.failures)} check(s) failed", file=sys.stderr)
    return 1 if report.failures else 0


def _flink_bench(argv: list[str]) -> int:
    """`--runner flink`: Flink at parallelism 1 and 2 beside Prism on one topic (bench/flink.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from flink import main as flink_main

    return flink_main(argv)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("CLOUT_DATA_DIR", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--limit", type=int, help="publish only the first N lines of the Higgs file")
    parser.add_argument("--freshness-seconds", type=float, default=30.0,
                        help="seconds of live load for the freshness probe (0 skips it; default 30)")
    parser.add_argument("--rate", type=float, default=5_000.0, help="live events/s during the freshness probe")
    parser.add_argument("--no-profile", dest="profile", action="store_false",
                        help="skip the py-spy CPU profile of the end-to-end run")
    return parser.parse_args(argv)


def _say(label: str) -> Callable[[str], None]:
    return lambda line: print(f"{label}: {line}", file=sys.stderr, flush=True)


def _bench_settings() -> Settings:
    """The bench's own stack; bootstrap and URL follow its ports (the defaults name 9092 and 6379)."""
    return load_settings(overrides={
        **BENCH_STACK, "state_dir": REPO / ".state" / "bench",
        "kafka_bootstrap": f"127.0.0.1:{BENCH_STACK['kafka_port']}",
        "redis_url": f"redis://127.0.0.1:{BENCH_STACK['redis_port']}/0"})


def _start_stack(settings: Settings) -> bool:
    """Start the bench stack unless some of it already runs; True if this script owns (and stops) it."""
    was_running = any(stack.running_pid(server) for server in stack.servers(settings))
    stack.up(settings, say=_say("stack"))
    return not was_running


# --- scratch names and their clean-up ---------------------------------------------------------------


@dataclass
class Scratch:
    """Everything this run creates (topics, groups, key prefixes), so the end removes exactly that."""

    tag: str
    topics: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)

    def topic(self, base: Settings, name: str) -> Settings:
        """Settings for a fresh 6-partition topic (and DLQ), group and key prefix of their own."""
        topic = f"bench.pipeline.{self.tag}.{name}"
        settings = base.replace(topic=topic, dlq_topic=f"{topic}.dlq", group=f"bench-{self.tag}-{name}",
                                key_prefix=self.prefix(name))
        self.topics += [settings.topic, settings.dlq_topic]
        self.groups.append(settings.group)
        create_topics(settings, PARTITIONS)
        return settings

    def prefix(self, name: str) -> str:
        prefix = f"bench{self.tag}{name}"
        self.prefixes.append(prefix)
        return prefix

    def clean_up(self, base: Settings) -> None:
        """Best effort: a failure here must not hide the figures or the failure that came before."""
        try:
            admin = KafkaAdminClient(**base.kafka_client_config())
            try:
                if self.topics:
                    admin.delete_topics(self.topics, raise_errors=False)
                if self.groups:
                    admin.delete_groups(self.groups)
            finally:
                admin.close()
        except Exception as error:  # reported; the keys are still removed
            print(f"clean-up: Kafka: {error!r}", file=sys.stderr)
        client = redis.Redis.from_url(base.redis_url)
        try:
            for prefix in self.prefixes:
                _delete_prefix(client, prefix)
        finally:
            client.close()


def _delete_prefix(client: redis.Redis, prefix: str) -> None:
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}:*", count=10_000):
        batch.append(key)
        if len(batch) >= 10_000:
            client.unlink(*batch)
            batch = []
    if batch:
        client.unlink(*batch)


# --- the run as a user starts it ----------------------------------------------------------------------


class RunProcess:
    """`clout run` in its own session (so a signal reaches Prism too); output read as it comes,
    progress lines echoed."""

    def __init__(self, settings: Settings, *flags: str) -> None:
        env = {**os.environ, "CLOUT_KAFKA_BOOTSTRAP": settings.kafka_bootstrap, "CLOUT_REDIS_URL": settings.redis_url,
               "CLOUT_TOPIC": settings.topic, "CLOUT_DLQ_TOPIC": settings.dlq_topic,
               "CLOUT_KEY_PREFIX": settings.key_prefix}
        self.lines: list[str] = []
        self.progress_seen = threading.Event()
        self.started = time.perf_counter()
        self.process = subprocess.Popen([str(CLOUT), "run", *flags, "--group", settings.group], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True, name="run-output")
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.rstrip("\n")
            self.lines.append(line)
            if line.startswith("clout"):
                print(f"  | {line}", file=sys.stderr, flush=True)
            if line.startswith("clout run: committed"):
                self.progress_seen.set()

    def wait(self, timeout: float = RUN_TIMEOUT_S) -> float:
        """Seconds from start to exit (the process is stopped if it outlives `timeout`)."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
        elapsed = time.perf_counter() - self.started
        self._reader.join(timeout=10)
        return elapsed

    def stop(self) -> str:
        """Ctrl-C as a user would (the whole session), then SIGKILL if it is still alive after 20 s;
        says how it ended, since a pipeline that ignores Ctrl-C is worth knowing about."""
        if self.process.poll() is not None:
            return f"had already exited (code {self.process.returncode})"
        asked = time.perf_counter()
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=STOP_GRACE_S)
            outcome = f"stopped by SIGINT in {time.perf_counter() - asked:.1f} s (code {self.process.returncode})"
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            outcome = f"ignored SIGINT for {STOP_GRACE_S:.0f} s: killed"
        self._reader.join(timeout=10)
        return outcome

    def counters(self) -> dict[str, int] | None:
        """The Beam counters of the closing `clout run done: name N, ...` line, if there was one."""
        done = [line for line in self.lines if line.startswith("clout run done:")]
        if not done:
            return None
        return {name: int(value.replace(",", "")) for name, value in re.findall(r"(\w+) ([\d,]+)", done[-1][15:])}

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.lines[-lines:])


# Where a sample's time goes: the innermost clout module on its stack names the stage; samples with
# none are Beam's own element handling, coders and gRPC (the runner's share of the Python worker).
STAGES = (
    ("clout/pipelines/source", "read: Kafka source"), ("clout/pipelines/interactions", "read: dead letters"),
    ("clout/pipelines/decode", "decode"), ("clout/schemas", "decode"), ("clout/pipelines/dedup", "dedup"),
    ("clout/pipelines/aggregates", "aggregate slices"), ("clout/pipelines/sink", "window totals -> Redis"),
    ("clout/influence", "analyse: influence"), ("clout/anomalies", "analyse: detectors"),
    ("clout/model", "analyse: slices and columns"), ("clout/pipelines/window_graph", "analyse: slices and columns"),
    ("clout/store", "results -> Redis"),
    ("clout/pipelines/recovery", "progress"), ("clout/pipelines/state_cache", "state reads"),
)


class StageProfile:
    """py-spy sampling `clout run` (Prism's loopback worker runs in that process) for the whole run;
    prints the share of CPU samples per pipeline stage. Needs py-spy (`pip install -e .[bench]`)."""

    def __init__(self, pid: int, out: Path) -> None:
        self.out = out
        self.process = subprocess.Popen(
            ["py-spy", "record", "--pid", str(pid), "--rate", "50", "--format", "raw", "--nonblocking",
             "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            executable=str(PY_SPY))

    def stop(self) -> dict[str, float]:
        """Share of samples per stage (idle samples, waiting in a poll or a lock, left out)."""
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
        counts: dict[str, int] = {}
        for line in self.out.read_text().splitlines() if self.out.exists() else []:
            stack, _, n = line.rpartition(" ")
            stage = _stage_of(stack)
            if stage is not None:
                counts[stage] = counts.get(stage, 0) + int(n)
        total = sum(counts.values()) or 1
        return {stage: n / total for stage, n in sorted(counts.items(), key=lambda kv: -kv[1])}


def _stage_of(stack: str) -> str | None:
    frames = stack.split(";")
    if frames and any(idle in frames[-1] for idle in ("wait (threading", "select (", "poll (", "_wait_for_tstate")):
        return None
    for frame in reversed(frames):
        for marker, stage in STAGES:
            if marker in frame:
                return stage
    return "Beam: elements, coders, gRPC"


class MemorySampler(threading.Thread):
    """Peak VmRSS of a process tree: of the sum, and of each process (Prism is a child of the run)."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.root = root
        self.peak_total_kb = 0
        self.peaks_kb: dict[int, tuple[str, int]] = {}
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def run(self) -> None:
        while True:
            self._sample()
            if self._stop_event.wait(SAMPLE_EVERY_S):
                return

    def _sample(self) -> None:
        total = 0
        for pid in _process_tree(self.root):
            rss = _rss_kb(pid)
            if rss is None:
                continue
            total += rss
            name, peak = self.peaks_kb.get(pid) or (_comm(pid), 0)
            self.peaks_kb[pid] = (name, max(peak, rss))
        self.peak_total_kb = max(self.peak_total_kb, total)


def _process_tree(root: int) -> list[int]:
    """`root` and all its descendants, from the parent ids in /proc (no `children` files here)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def _rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None  # gone, or a zombie (no VmRSS line)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


class FirstWindow(threading.Thread):
    """Seconds from the run's start until its windows index exists in Redis (the first flush)."""

    def __init__(self, settings: Settings, started: float) -> None:
        super().__init__(daemon=True, name="first-window")
        self.client = redis.Redis.from_url(settings.redis_url)
        self.key = KeyLayout(settings.key_prefix).windows()
        self.started = started
        self.seconds: float | None = None
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.client.close()

    def run(self) -> None:
        while not self._stop_event.wait(0.05):
            if self.client.exists(self.key):
                self.seconds = time.perf_counter() - self.started
                return


# --- 1 + 2: end to end, with memory -------------------------------------------------------------------


@dataclass
class EndToEnd:
    published: int
    wall_s: float
    first_window_s: float | None
    counters: dict[str, int] | None
    returncode: int
    memory: MemorySampler
    stages: dict[str, float] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        return self.published / max(self.wall_s - IDLE_S, 1e-9)


def _publish_higgs(settings: Settings, path: Path, limit: int | None) -> int:
    """Through `clout ingest file`'s code path (replay + Publisher), all acknowledged on return."""
    lines = read_source(path, "snap-higgs")
    with Publisher(settings) as publisher:
        summary = replay(lines if limit is None else islice(lines, limit), publisher, path.name)
    return summary.published


def _end_to_end(settings: Settings, published: int, profile: bool) -> tuple[EndToEnd, RunProcess]:
    """One replay run from the beginning of the topic until it has been idle for IDLE_S."""
    print(f"end to end: clout run --from-beginning --stop-when-idle {IDLE_S} over {published:,} events ...",
          file=sys.stderr, flush=True)
    run = RunProcess(settings, "--from-beginning", "--stop-when-idle", str(IDLE_S))
    memory = MemorySampler(run.process.pid)
    first = FirstWindow(settings, run.started)
    profiler = StageProfile(run.process.pid, REPO / ".state" / "bench" / "profile.txt") if profile else None
    memory.start()
    first.start()
    wall = run.wait()
    memory.stop()
    first.stop()
    stages = profiler.stop() if profiler is not None else {}
    return EndToEnd(published, wall, first.seconds, run.counters(), run.process.returncode, memory, stages), run


def _check_end_to_end(result: EndToEnd, run: RunProcess) -> list[str]:
    if result.returncode != 0 or result.counters is None:
        print(f"clout run output (last lines):\n{run.tail()}", file=sys.stderr)
        return [f"clout run exited with code {result.returncode} (no closing counters line)"]
    valid = result.counters.get("events_valid", -1)
    late = result.counters.get("late_deltas_dropped", 0)
    if late:  # not a failed check (the brief's check is events_valid), but counts are missing from Redis
        print(f"WARNING: late_deltas_dropped {late:,} in a replay of time-ordered data: those deltas' counts are "
              "missing from Redis (the watermark passed data still in flight)", file=sys.stderr)
    return [] if valid == result.published else [f"events_valid {valid:,}, expected {result.published:,}"]


# --- 3: ceilings --------------------------------------------------------------------------------------


def _consume_alone(settings: Settings) -> tuple[list[bytes], float]:
    """Every value of the topic with a plain KafkaConsumer: all partitions, from the beginning to the end."""
    consumer = KafkaConsumer(**settings.kafka_client_config(), enable_auto_commit=False, group_id=None,
                             fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=16 * 1024 * 1024)
    partitions = [TopicPartition(settings.topic, p) for p in sorted(consumer.partitions_for_topic(settings.topic))]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    end = consumer.end_offsets(partitions)
    values: list[bytes] = []
    reporter = RateReporter("consume alone", lambda: {"consumed": len(values)}, rate_of="consumed")
    started = time.perf_counter()
    while any(consumer.position(tp) < end[tp] for tp in partitions):
        for batch in consumer.poll(timeout_ms=1000, max_records=100_000).values():
            values += [record.value for record in batch]
        reporter.tick()
    elapsed = time.perf_counter() - started
    reporter.summary()
    consumer.close()
    return values, elapsed


def _window_counts(values: list[bytes]) -> int:
    """orjson decode and, per sliding window holding the event, one more received for the target and
    one more sent for the actor; returns the number of (window, user) entries."""
    counts: dict[tuple[int, str], list[int]] = {}
    for value in values:
        event = orjson.loads(value)
        ts = event["ts"]
        for start in range(ts - ts % PERIOD_MS, ts - WINDOW_MS, -PERIOD_MS):
            for user, side in ((event["target"], 0), (event["actor"], 1)):
                entry = counts.get((start, user))
                if entry is None:
                    entry = counts[(start, user)] = [0, 0]
                entry[side] += 1
    return len(counts)


def _activity_value(n: int) -> bytes:
    """About 150 bytes, shaped like the sink's activity JSON (clout/store/layout.py)."""
    return orjson.dumps({"received": {"like": n % 9, "mention": n % 7, "quote": n % 2, "reply": n % 3,
                                      "repost": 10 + n % 90},
                         "sent": {"like": n % 4, "mention": n % 5, "reply": n % 2, "repost": 1 + n % 40},
                         "engagers": 5 + n % 80, "in": 20 + n % 100, "out": 2 + n % 47})


def _redis_writes(settings: Settings, prefix: str, entries: int) -> tuple[float, float]:
    """Seconds to write `entries` (window, user) values as pipelined HSETs, 5,000 entries per round
    trip, split over 4 window keys as one batch's users land in the 4 windows holding it; and the
    mean value size."""
    layout = KeyLayout(prefix)
    users = [(f"u{n}", _activity_value(n)) for n in range(REDIS_CHUNK)]
    full = _quarters(users, REDIS_CHUNK)  # built once, outside the timing
    client = redis.Redis.from_url(settings.redis_url)
    started = time.perf_counter()
    for chunk, first in enumerate(range(0, entries, REDIS_CHUNK)):
        count = min(REDIS_CHUNK, entries - first)
        pipe = client.pipeline(transaction=False)
        for window, part in enumerate(full if count == REDIS_CHUNK else _quarters(users, count)):
            pipe.hset(layout.activity(f"bench-{chunk}-{window}"), mapping=part)
        pipe.execute()
    elapsed = time.perf_counter() - started
    client.close()
    return elapsed, sum(len(value) for _, value in users) / len(users)


def _quarters(users: list[tuple[str, bytes]], count: int) -> list[dict[str, bytes]]:
    """The first `count` users in (up to) 4 mappings, one per window key."""
    step = -(-count // 4)
    return [dict(users[start:start + step]) for start in range(0, count, step)]


def _timed(label: str, work: Callable[[], int]) -> tuple[int, float]:
    print(f"measuring {label} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


def _analysis_alone(values: list[bytes]) -> tuple[int, float]:
    """Influence of every (1 h / 15 min) window, as the pipeline's analysis computes it (clout.influence
    on columns), with the events already in memory: the graph maths alone, no Beam, no Redis."""
    events = from_events(Event(e["ts"], e["actor"], e["target"], KIND_INDEX[e["kind"]], e.get("platform", ""))
                         for e in map(orjson.loads, values))
    order = np.argsort(events.ts, kind="stable")
    ts = events.ts[order]
    first = int(ts[0]) - int(ts[0]) % PERIOD_MS - WINDOW_MS + PERIOD_MS
    config, windows = InfluenceConfig(), 0
    started = time.process_time()
    for start in range(first, int(ts[-1]) + 1, PERIOD_MS):
        lo, hi = np.searchsorted(ts, [start, start + WINDOW_MS])
        if hi > lo:
            window_influence(events.take(order[lo:hi]), config)
            windows += 1
    return windows, time.process_time() - started


def _ceilings(settings: Settings, scratch: Scratch, e2e: EndToEnd) -> list[Row]:
    """The pieces alone, on the same data, one after the other in this process (nothing else of ours runs)."""
    values, consumed_in = _consume_alone(settings)
    rows: list[Row] = [("consume alone (plain KafkaConsumer)", len(values) / consumed_in,
                        f"{len(values):,} records in {consumed_in:.2f} s")]
    entries, counted_in = _timed("parse + window-count", lambda: _window_counts(values))
    rows.append(("parse + window-count alone (orjson, plain Python)", len(values) / counted_in,
                 f"{len(values):,} events in {counted_in:.2f} s; {entries:,} (window, user) entries"))
    print("measuring the window analysis alone (influence of every window, columns) ...", file=sys.stderr, flush=True)
    windows, analysed_in = _analysis_alone(values)
    rows.append(("window influence alone (numpy/scipy, CPU time)", len(values) / analysed_in,
                 f"{windows:,} windows in {analysed_in:.2f} CPU-s"))
    written = (e2e.counters or {}).get("users_written") or entries  # without counters: as many as counted
    print(f"measuring Redis writes alone ({written:,} entries) ...", file=sys.stderr, flush=True)
    wrote_in, value_size = _redis_writes(settings, scratch.prefix("writes"), written)
    rows.append(("Redis writes alone (pipelined HSET)", e2e.published / wrote_in,
                 f"{written:,} entries in {wrote_in:.2f} s ({written / wrote_in:,.0f} entries/s, "
                 f"{value_size:.0f}-byte values); events/s-equivalent for {e2e.published:,} events"))
    return rows


# --- 4: freshness -------------------------------------------------------------------------------------


@dataclass
class Probe:
    n: int
    key: str
    field: str
    sent: float  # perf_counter just before publishing


class ProbeWatcher(threading.Thread):
    """Polls Redis for each probe's user in the newest window holding it; publish -> visible latency."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True, name="probe-watcher")
        self.client = redis.Redis.from_url(settings.redis_url)
        self.latencies: dict[int, float] = {}  # probe number -> seconds from publish to visible
        self.lost = 0
        self._pending: dict[int, Probe] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()

    def add(self, probe: Probe) -> None:
        with self._lock:
            self._pending[probe.n] = probe

    def close(self) -> None:
        """Wait until every probe is seen or has timed out (PROBE_TIMEOUT_S after its publication)."""
        self._closing.set()
        self.join()
        self.client.close()

    def run(self) -> None:
        while True:
            with self._lock:
                pending = list(self._pending.values())
            if not pending and self._closing.is_set():
                return
            if pending:
                self._poll(pending)
            time.sleep(0.02)

    def _poll(self, pending: list[Probe]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for probe in pending:
            pipe.hget(probe.key, probe.field)
        found = pipe.execute()
        now = time.perf_counter()
        for probe, value in zip(pending, found, strict=True):
            if value is not None:
                self.latencies[probe.n] = now - probe.sent
            elif now - probe.sent > PROBE_TIMEOUT_S:
                self.lost += 1
            else:
                continue
            with self._lock:
                del self._pending[probe.n]


@dataclass
class Freshness:
    latencies: dict[int, float]
    lost: int
    sent: int
    seconds: float
    memory_peak_kb: int = 0
    stop_outcome: str = ""

    def quantile(self, q: float) -> float | None:
        return _quantile(list(self.latencies.values()), q)

    def trend(self) -> str:
        """Median of the first and of the last tenth of the probes: rising means the run falls behind."""
        ordered = [self.latencies[n] for n in sorted(self.latencies)]
        tenth = max(len(ordered) // 10, 1)
        first, last = _quantile(ordered[:tenth], 0.5), _quantile(ordered[-tenth:], 0.5)
        return f"median of the first {tenth} probes {first:.2f} s, of the last {tenth} {last:.2f} s"


def _quantile(values: list[float], q: float) -> float | None:
    """Nearest-rank quantile."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)] if ordered else None


class LiveLoad:
    """Synthetic live events (event time = now, kind repost, users from a pool of 5,000) at a steady
    rate, and a probe to a target of its own every 100 ms."""

    def __init__(self, publisher: Publisher, watcher: ProbeWatcher, layout: KeyLayout, tag: str) -> None:
        self.publisher = publisher
        self.watcher = watcher
        self.layout = layout
        self.tag = tag
        self.rng = random.Random(7)
        self.users = [f"user{n}" for n in range(POOL_USERS)]
        self.sent = 0
        self.probes = 0

    def run(self, seconds: float, rate: float) -> float:
        """Publish for `seconds`; returns the seconds it took (events due are caught up, not skipped)."""
        started = time.perf_counter()
        next_probe = started
        while (now := time.perf_counter()) - started < seconds:
            while self.sent < int((now - started) * rate):
                self._publish(self.rng.choice(self.users), f"{self.tag}-{self.sent}")
                self.sent += 1
            if now >= next_probe:
                self._probe()
                next_probe += PROBE_EVERY_S
            time.sleep(0.002)
        return time.perf_counter() - started

    def _probe(self) -> None:
        target = f"probe-{self.probes}"
        sent = time.perf_counter()
        ts = self._publish(target, f"{self.tag}-{target}")
        start_s = (ts - ts % PERIOD_MS) // 1000  # the newest window holding ts
        window = f"{start_s}-{start_s + WINDOW_MS // 1000}"
        self.watcher.add(Probe(self.probes, self.layout.activity(window), target, sent))
        self.probes += 1

    def _publish(self, target: str, event_id: str) -> int:
        ts = int(time.time() * 1000)
        self.publisher.publish(InteractionEvent(event_id=event_id, ts=ts, platform="bench",
                                                actor=self.rng.choice(self.users), target=target, kind="repost"))
        return ts


def _freshness(settings: Settings, seconds: float, rate: float) -> tuple[Freshness | None, list[str]]:
    """A live run from the latest offsets; probes are sent once it is running (its first progress
    line, plus SETTLE_S)."""
    print(f"freshness: clout run --from-latest, then {seconds:.0f} s at {rate:,.0f} events/s with probes ...",
          file=sys.stderr, flush=True)
    run = RunProcess(settings, "--from-latest")
    memory = MemorySampler(run.process.pid)
    memory.start()
    try:
        if not _wait_running(run):
            print(f"clout run output (last lines):\n{run.tail()}", file=sys.stderr)
            return None, [f"freshness: clout run did not start (exit code {run.process.poll()})"]
        result = _probe_live(settings, seconds, rate)
        alive = run.process.poll() is None
    finally:
        stopped = run.stop()
        memory.stop()
    result.memory_peak_kb, result.stop_outcome = memory.peak_total_kb, stopped
    return result, [] if alive else [f"freshness: clout run died during the load (exit code {run.process.returncode})"]


def _wait_running(run: RunProcess) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not run.progress_seen.wait(0.5):
        if run.process.poll() is not None or time.monotonic() > deadline:
            return False
    time.sleep(SETTLE_S)
    return run.process.poll() is None


def _probe_live(settings: Settings, seconds: float, rate: float) -> Freshness:
    watcher = ProbeWatcher(settings)
    watcher.start()
    with Publisher(settings) as publisher:
        load = LiveLoad(publisher, watcher, KeyLayout(settings.key_prefix), f"bench-{uuid.uuid4().hex[:8]}")
        took = load.run(seconds, rate)
    print(f"freshness: sent {load.sent:,} events and {load.probes} probes in {took:.1f} s; waiting for the probes",
          file=sys.stderr, flush=True)
    watcher.close()
    return Freshness(watcher.latencies, watcher.lost, load.sent, took)


# --- all of it, and the report ------------------------------------------------------------------------


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    e2e: EndToEnd | None = None
    freshness: Freshness | None = None
    failures: list[str] = field(default_factory=list)

    def print(self) -> None:
        _print_rows(self.rows)
        if self.e2e is not None:
            _print_memory(self.e2e.memory)
            _print_stages(self.e2e.stages)
        if self.freshness is not None:
            _print_freshness(self.freshness)
        _print_targets(self.e2e, self.freshness)


def _run(args: argparse.Namespace, path: Path, base: Settings, scratch: Scratch) -> Report:
    report = Report()
    higgs = scratch.topic(base, "higgs")
    published = _publish_higgs(higgs, path, args.limit)
    if args.limit is None and published != EXPECTED_EVENTS:
        report.failures.append(f"published {published:,}, expected {EXPECTED_EVENTS:,}")
    e2e, run = _end_to_end(higgs, published, args.profile)
    report.e2e = e2e
    report.failures += _check_end_to_end(e2e, run)
    report.rows.append(("end to end (clout run on Prism)", e2e.events_per_s, _e2e_detail(e2e)))
    report.rows += _ceilings(higgs, scratch, e2e)
    if args.freshness_seconds > 0:
        freshness, failures = _freshness(scratch.topic(base, "live"), args.freshness_seconds, args.rate)
        report.freshness = freshness
        report.failures += failures
    return report


def _e2e_detail(e2e: EndToEnd) -> str:
    first = f"{e2e.first_window_s:.1f} s" if e2e.first_window_s is not None else "never"
    counters = e2e.counters or {}
    return (f"{e2e.published:,} events in {e2e.wall_s - IDLE_S:.2f} s (wall {e2e.wall_s:.2f} s less {IDLE_S} s idle); "
            f"first window after {first}; events_valid {counters.get('events_valid', 0):,}, "
            f"users_written {counters.get('users_written', 0):,}")


def _print_rows(rows: list[Row]) -> None:
    if not rows:
        return
    e2e = rows[0][1] or 0.0
    width = max(len(name) for name, _, _ in rows)
    print(f"\n{'phase':<{width}}  {'events/s':>12}  {'x e2e':>6}  detail")
    print(f"{'-' * width}  {'-' * 12}  {'-' * 6}  {'-' * 40}")
    for name, rate, note in rows:
        ratio = f"{rate / e2e:6.1f}" if rate and e2e else f"{'':6}"
        print(f"{name:<{width}}  {rate or 0:>12,.0f}  {ratio}  {note}")


def _print_stages(stages: dict[str, float]) -> None:
    if not stages:
        return
    print("\nCPU profile of clout run's Python worker (py-spy samples while busy, by innermost clout stage):")
    for stage, share in stages.items():
        print(f"  {stage:<32} {100 * share:5.1f} %")


def _print_memory(memory: MemorySampler) -> None:
    print(f"\npeak resident memory of the end-to-end run: {memory.peak_total_kb / 1024:,.0f} MiB "
          "(peak of the sum of the process tree, sampled every 0.2 s)")
    for pid, (name, peak) in sorted(memory.peaks_kb.items(), key=lambda item: -item[1][1]):
        print(f"  {name:<20} pid {pid:<8} peak {peak / 1024:>8,.0f} MiB")


def _print_freshness(result: Freshness) -> None:
    p50, p99 = result.quantile(0.5), result.quantile(0.99)
    seen = len(result.latencies)
    figures = (f"p50 {p50:.2f} s, p99 {p99:.2f} s, max {max(result.latencies.values()):.2f} s; {result.trend()}"
               if seen else "no probe seen")
    print(f"\nfreshness (publish -> visible in Redis): {figures}")
    print(f"  {seen} of {seen + result.lost} probes seen, {result.lost} never within {PROBE_TIMEOUT_S:.0f} s; "
          f"load {result.sent / result.seconds:,.0f} events/s for {result.seconds:.1f} s; "
          f"peak RSS of that run {result.memory_peak_kb / 1024:,.0f} MiB; the run {result.stop_outcome}")


def _print_targets(e2e: EndToEnd | None, freshness: Freshness | None) -> None:
    print(f"\n{'target':<32}  {'goal':>14}  {'measured':>14}  verdict")
    rate = e2e.events_per_s if e2e else None
    _target_line("end-to-end throughput", f">= {TARGET_EVENTS_PER_S:,} ev/s", rate, "{:,.0f} ev/s",
                 rate is not None and rate >= TARGET_EVENTS_PER_S)
    p99 = freshness.quantile(0.99) if freshness else None
    lost = freshness.lost if freshness else 0
    fmt = "{:.2f} s" + (f" ({lost} lost)" if lost else "")  # a lost probe misses the target whatever p99 says
    _target_line("freshness p99", f"<= {TARGET_P99_S:.0f} s", p99, fmt,
                 p99 is not None and not lost and p99 <= TARGET_P99_S, measured=freshness is not None)
    peak = e2e.memory.peak_total_kb / 1024 if e2e else None
    _target_line("peak memory, all processes", f"<= {TARGET_PEAK_MIB:,} MiB", peak, "{:,.0f} MiB",
                 peak is not None and peak <= TARGET_PEAK_MIB)


def _target_line(name: str, goal: str, value: float | None, fmt: str, met: bool, measured: bool = True) -> None:
    shown = fmt.format(value) if value is not None else ("none seen" if measured else "not measured")
    verdict = "PASS" if met else ("MISS" if measured else "-")
    print(f"{name:<32}  {goal:>14}  {shown:>14}  {verdict}")


if __name__ == "__main__":
    sys.exit(main())
