"""The pipeline on Flink (parallelism 1 and 2) beside Prism, on the same topic in the same run.

Run from the repository root (or `bench/pipeline.py --runner flink`):
    .venv/bin/python bench/flink.py [--days D] [--data-dir DIR]

It uses the bench stack (Kafka 39092, Redis 36379, state in .state/bench) plus Flink on ports of its
own (REST 38081, job server 38099, worker pool 39500), started here if not running and stopped at the
end if started here. It publishes the first D days of Higgs (default 2: 20,288 events) into a fresh
topic, then runs `clout run --from-beginning --stop-when-idle 3` on Prism, `clout run --flink
--parallelism=1 --sdk_worker_parallelism=1` and `clout run --flink` (parallelism 2, two Python
workers), each on a fresh group, and prints events/s over each run's wall time less the idle wait, the
Flink job's own duration, the CPU seconds of each Python SDK worker process (children of the pool), and
those of the TaskManager, JobManager and job server JVMs during the run.
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from clout.connectors.file import read_source  # noqa: E402
from clout.connectors.publisher import Publisher  # noqa: E402
from clout.connectors.replay import replay  # noqa: E402
from clout.connectors.topics import create_topics  # noqa: E402
from clout.local import flink, stack  # noqa: E402
from clout.settings import Settings, load_settings  # noqa: E402

IDLE_S = 3
PORTS = {"kafka_port": 39092, "kafka_controller_port": 39093, "redis_port": 36379, "flink_rest_port": 38081,
         "flink_rpc_port": 36123, "flink_job_server_port": 38099, "flink_worker_pool_port": 39500}
TICKS = os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("CLOUT_DATA_DIR", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--days", type=int, default=2, help="days of Higgs event time to replay (default 2)")
    args = parser.parse_args(argv)
    settings = load_settings(overrides={**PORTS, "state_dir": REPO / ".state" / "bench",
                                        "kafka_bootstrap": f"127.0.0.1:{PORTS['kafka_port']}",
                                        "redis_url": f"redis://127.0.0.1:{PORTS['redis_port']}/0"})
    owned = not any(stack.running_pid(s) for s in stack.servers(settings, flink=True))
    stack.up(settings, say=lambda line: print(f"stack: {line}", file=sys.stderr), flink=True)
    tag = uuid.uuid4().hex[:8]
    settings = settings.replace(topic=f"bench{tag}.interactions", dlq_topic=f"bench{tag}.dlq",
                                flags_topic=f"bench{tag}.flags")
    try:
        events = publish_days(settings, Path(args.data_dir) / "higgs-twitter" / "higgs-activity_time.txt.gz",
                              args.days)
        rows = [measure(settings, label, events, flags) for label, flags in (
            ("prism", []), ("flink p1", ["--flink", "--parallelism=1", "--sdk_worker_parallelism=1"]),
            ("flink p2", ["--flink"]))]
    finally:
        if owned:
            stack.down(settings, say=lambda line: print(f"stack: {line}", file=sys.stderr), flink=True)
    print(f"\nHiggs first {args.days} day(s): {events:,} events; {os.cpu_count()} CPUs, "
          f"1-min load {os.getloadavg()[0]:.1f} at the end (shared machine)")
    print(f"{'runner':<10} {'wall s':>7} {'events/s':>9} {'flink job s':>11}  {'Python worker CPU s':<20}"
          f"  JVM CPU s (TaskManager, JobManager, job server)")
    for label, wall, job_s, cpu, jvm in rows:
        workers = ", ".join(f"{c:.1f}" for c in cpu) or "-"
        jvms = ", ".join(f"{c:.1f}" for c in jvm) or "-"
        print(f"{label:<10} {wall:7.1f} {events / wall:9,.0f} {job_s or '-':>11}  {workers:<20}  {jvms}")
    return 0


def publish_days(settings: Settings, path: Path, days: int) -> int:
    piece = settings.state_dir / f"{settings.topic}.txt"
    piece.parent.mkdir(parents=True, exist_ok=True)
    lines, cutoff = [], None
    with gzip.open(path, "rt") as handle:
        for line in handle:
            ts = int(line.split()[2])
            cutoff = cutoff or ts + days * 86_400
            if ts >= cutoff:
                break
            lines.append(line)
    piece.write_text("".join(lines))
    create_topics(settings)
    with Publisher(settings) as publisher:
        replay(read_source(piece, "snap-higgs"), publisher, str(piece), progress_interval=30)
    piece.unlink()
    return len(lines)


def measure(settings: Settings, label: str, events: int,
            flags: list[str]) -> tuple[str, float, int | None, list[float], list[float]]:
    tag = uuid.uuid4().hex[:8]
    names = {"CLOUT_KAFKA_BOOTSTRAP": settings.kafka_bootstrap, "CLOUT_REDIS_URL": settings.redis_url,
             "CLOUT_TOPIC": settings.topic, "CLOUT_DLQ_TOPIC": settings.dlq_topic,
             "CLOUT_FLAGS_TOPIC": settings.flags_topic, "CLOUT_GROUP": f"bench{tag}",
             "CLOUT_KEY_PREFIX": f"bench{tag}", "CLOUT_STATE_DIR": str(settings.state_dir)}
    names |= {f"CLOUT_{k.upper()}": str(v) for k, v in PORTS.items() if k.startswith("flink")}
    sampler = WorkerCpu(settings) if flags else None
    if sampler:
        sampler.start()
    jvm_before = jvm_cpu(settings) if flags else {}
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "clout.cli", "run", "--from-beginning", "--stop-when-idle",
                          str(IDLE_S), *flags], env={**os.environ, **names}, capture_output=True, text=True)
    wall = time.perf_counter() - started - IDLE_S
    cpu = sampler.stop() if sampler else []
    jvm = [after - jvm_before.get(name, 0.0) for name, after in jvm_cpu(settings).items()] if flags else []
    if run.returncode != 0 or f"events_valid {events:,}" not in run.stderr + run.stdout:
        raise SystemExit(f"{label}: run failed or miscounted:\n{(run.stderr + run.stdout)[-3000:]}")
    job_s = None
    if flags:
        finished = [j for j in (flink._rest(settings, "/jobs/overview") or {}).get("jobs", [])
                    if f"bench{tag}" in j["name"]]
        job_s = round(finished[0]["duration"] / 1000) if finished else None
    print(f"{label}: {wall:.1f} s", file=sys.stderr, flush=True)
    return label, wall, job_s, cpu, jvm


class WorkerCpu(threading.Thread):
    """CPU seconds of each SDK worker process the pool starts (they exit with the job, so sampled)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        pool = next(s for s in flink.flink_servers(settings) if s.name == "flink-worker-pool")
        self.pool_pid = stack.running_pid(pool)
        self.seen: dict[int, float] = {}
        self._done = threading.Event()

    def stop(self) -> list[float]:
        self._done.set()
        self.join()
        return sorted(self.seen.values(), reverse=True)

    def run(self) -> None:
        while not self._done.wait(0.5):
            for pid in children(self.pool_pid):
                if seconds := cpu_seconds(pid):
                    self.seen[pid] = seconds


def jvm_cpu(settings: Settings) -> dict[str, float]:
    """CPU seconds so far of the TaskManager, the JobManager and the job server, in that order."""
    names = ("flink-taskmanager", "flink-jobmanager", "flink-job-server")
    servers = {s.name: s for s in flink.flink_servers(settings)}
    return {name: cpu_seconds(stack.running_pid(servers[name])) for name in names}


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process so far; 0 for one that is not running."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def children(pid: int | None) -> list[int]:
    """Processes whose parent is `pid` (the pool starts workers from gRPC threads, so /proc/PID/children,
    which lists only the main thread's, misses them)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


if __name__ == "__main__":
    sys.exit(main())
