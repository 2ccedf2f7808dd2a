"""Kafka -> Beam on a real Flink session cluster (parallelism 2, two Python worker processes) -> Redis,
checked against the independent recount; a SIGKILL of the TaskManager mid-stream, then a new
TaskManager and a second run on the same group, compared key by key with the uninterrupted run.

The replay is Higgs's first two days of event time (20,288 events; the busy days after them would
take the Flink runs past CI's budget): `clout run --flink --stop-when-idle`, exactly as a user runs it.
"""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from recount import (
    Interaction,
    differences,
    influence_differences,
    networkx_pagerank,
    read_back,
    read_influence,
    recount,
    recount_influence_parts,
    snapshot,
)
from scipy.stats import spearmanr
from test_end_to_end import HIGGS_KIND, finish, publish

from clout.local import flink, stack
from clout.settings import Settings

pytestmark = [pytest.mark.servers, pytest.mark.slow]
DAYS = 2


def run_env(settings: Settings) -> dict[str, str]:
    names = ("kafka_bootstrap", "redis_url", "topic", "dlq_topic", "flags_topic", "group", "key_prefix", "state_dir",
             "flink_rest_port", "flink_job_server_port", "flink_worker_pool_port")
    return {**os.environ, **{f"CLOUT_{name.upper()}": str(getattr(settings, name)) for name in names}}


def start_flink_run(settings: Settings) -> subprocess.Popen:
    command = [sys.executable, "-m", "clout.cli", "run", "--flink", "--from-beginning", "--stop-when-idle", "4"]
    return subprocess.Popen(command, env=run_env(settings), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def first_days(path: Path, days: int, target: Path) -> list[Interaction]:
    """The file's first `days` of event time, written to `target` and read back as plain tuples."""
    lines, out, cutoff = [], [], None
    with gzip.open(path, "rt") as handle:
        for line in handle:
            actor, other, ts, kind = line.split()
            cutoff = cutoff or int(ts) + days * 86_400
            if int(ts) >= cutoff:
                break
            lines.append(line)
            out.append((actor, other, int(ts) * 1000, HIGGS_KIND[kind]))
    target.write_text("".join(lines))
    return out


@pytest.fixture(scope="module")
def higgs_days(flink_settings: Settings, higgs_path: Path,
               tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, list[Interaction]]:
    tag = uuid.uuid4().hex[:8]
    settings = flink_settings.replace(topic=f"flink{tag}.higgs", dlq_topic=f"flink{tag}.higgs.dlq",
                                      flags_topic=f"flink{tag}.flags")
    piece = tmp_path_factory.mktemp("flink") / "higgs-first-days.txt"
    raw = first_days(higgs_path, DAYS, piece)
    publish(settings, piece)
    return settings, raw


@pytest.fixture(scope="module")
def flink_run(higgs_days: tuple[Settings, list[Interaction]]) -> Iterator[tuple[Settings, str, redis.Redis]]:
    """One uninterrupted run on Flink: the reference for the restart test too."""
    settings, _ = higgs_days
    tag = uuid.uuid4().hex[:8]
    mine = settings.replace(group=f"g{tag}", key_prefix=f"test{tag}")
    started = time.monotonic()
    output = finish(start_flink_run(mine), timeout=600)
    print(f"flink run: {time.monotonic() - started:.0f} s")
    client = redis.Redis.from_url(mine.redis_url)
    yield mine, output, client
    for key in client.scan_iter(match=f"{mine.key_prefix}:*", count=10_000):
        client.delete(key)
    client.close()


def test_flink_replay_equals_recount(flink_run: tuple[Settings, str, redis.Redis],
                                     higgs_days: tuple[Settings, list[Interaction]]) -> None:
    mine, output, client = flink_run
    raw = higgs_days[1]
    assert f"events_valid {len(raw):,}" in output, output[-2000:]
    assert "draining Flink job" in output, output[-2000:]
    assert differences(recount(raw), read_back(client, mine.key_prefix)) == []
    assert influence_differences(recount_influence_parts(raw), read_influence(client, mine.key_prefix)) == []


def test_flink_network_influence_agrees_with_networkx(flink_run: tuple[Settings, str, redis.Redis],
                                                      higgs_days: tuple[Settings, list[Interaction]]) -> None:
    mine, _, client = flink_run
    raw = higgs_days[1]
    influence = read_influence(client, mine.key_prefix)
    window = max(influence, key=lambda w: len(influence[w]))
    reference = networkx_pagerank(raw, window)
    users = sorted(influence[window])
    rho = spearmanr([reference[u] for u in users], [influence[window][u]["network"] for u in users]).statistic
    assert rho >= 0.999, (window, len(users), rho)


def test_flink_used_two_python_worker_processes(flink_run: tuple[Settings, str, redis.Redis]) -> None:
    """The worker pool starts one SDK worker process per slot for each job (`--sdk_worker_parallelism=2`)."""
    mine = flink_run[0]
    log = (mine.state_dir.resolve() / "flink-worker-pool.out").read_text()
    ids = {line.split('worker_id="')[1].split('"')[0] for line in log.splitlines() if 'worker_id="' in line}
    jobs = defaultdict(set)
    for worker in ids:
        job, number = worker.split("-")
        jobs[job].add(number)
    assert any(len(workers) >= 2 for workers in jobs.values()), ids


def wait_until_scored(run: subprocess.Popen, settings: Settings, client: redis.Redis, windows: int,
                      timeout_s: float) -> None:
    """Until `windows` windows are scored; if not in time, the run and its Flink job are stopped (not
    left running into later tests) and the failure shows the job's vertices and the run's output."""
    deadline = time.monotonic() + timeout_s
    while client.zcard(f"{settings.key_prefix}:v1:scored") < windows:
        problem = ("the pipeline finished before it could be killed mid-stream" if run.poll() is not None
                   else f"fewer than {windows} windows scored in {timeout_s:.0f} s" if time.monotonic() > deadline
                   else None)
        if problem:
            running = flink.running_jobs(settings)
            jobs = [flink.job_vertices(settings, job["id"]) for job in running]
            for job in running:
                flink.cancel_job(settings, job["id"])
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
            output, _ = run.communicate()
            pytest.fail(f"{problem}; running jobs: {jobs}; clout run said:\n{output[-3000:]}")
        time.sleep(0.2)


def test_sigkill_of_the_taskmanager_then_restart_equals_an_uninterrupted_run(
        flink_run: tuple[Settings, str, redis.Redis], higgs_days: tuple[Settings, list[Interaction]],
        redis_client: redis.Redis, settings: Settings) -> None:
    topic_settings, raw = higgs_days
    mine = topic_settings.replace(group=settings.group, key_prefix=settings.key_prefix)
    first = start_flink_run(mine)
    wait_until_scored(first, mine, redis_client, windows=60, timeout_s=400)
    taskmanager = next(s for s in flink.flink_servers(mine) if s.name == "flink-taskmanager")
    os.kill(stack.running_pid(taskmanager), signal.SIGKILL)  # the TaskManager, and with it the job, mid-stream
    gone_by = time.monotonic() + 30
    while stack.running_pid(taskmanager) and time.monotonic() < gone_by:  # a JVM takes a moment to die;
        time.sleep(0.1)  # until then `stack up` would take it for running and start no new one
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    for job in flink.running_jobs(mine):
        flink.cancel_job(mine, job["id"])
    stack.up(mine, say=lambda _line: None, flink=True)  # a new TaskManager joins the cluster
    finish(start_flink_run(mine), timeout=600)
    assert differences(recount(raw), read_back(redis_client, mine.key_prefix)) == []
    reference, client = flink_run[0], flink_run[2]
    expected, got = snapshot(client, reference.key_prefix), snapshot(redis_client, mine.key_prefix)
    order_dependent = (":flags", ":flags:stream", ":announced")  # as in the Prism restart test
    exact = sorted(key for key in expected if not key.endswith(order_dependent))
    assert exact == sorted(key for key in got if not key.endswith(order_dependent))
    assert [key for key in exact if expected[key] != got[key]][:5] == []
