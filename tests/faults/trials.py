"""The fault matrix: one function per fault, each a bounded trial on a FaultStack that ends with the
check (Redis against the independent recount, nothing valid missing, lag back to zero).

A trial returns an Outcome instead of asserting, so bench/faults.py can tabulate every trial and the
tests can assert on each. "Recovery" is the time from the end of the fault (the server back, the
pipeline restarted, the link healed) until the pipeline scores a window it had not scored before.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
from harness import (
    HIGGS,
    IDLE_S,
    FaultStack,
    Run,
    TrialFailed,
    check,
    publish_file,
    run_env,
    topic_events,
    wait_for,
    wait_lag_zero,
)

from clout.connectors.publisher import STALL_MARGIN_SECONDS
from clout.settings import Settings

RUN_TIMEOUT_S = 600
BROKER_DOWN_S = 10
REDIS_PAUSE_S = 15
REDIS_SLEEP_S = 10


@dataclass
class Outcome:
    fault: str
    survived: bool
    lost: int
    recovery_s: float | None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    faults: int = 1  # faults injected in this trial (pipeline kills come several to a trial)

    def line(self) -> str:
        recovery = "-" if self.recovery_s is None else f"{self.recovery_s:.1f} s"
        verdict = "survived" if self.survived else "FAILED: " + "; ".join(self.problems[:3])
        return f"{self.fault}: {verdict}, lost {self.lost}, recovery {recovery}" + (
            f" ({'; '.join(self.notes)})" if self.notes else "")


@dataclass
class Trial:
    """One trial's topic, group and key prefix on the fault stack, with the slice published."""

    stack: FaultStack
    settings: Settings
    client: redis.Redis
    logs: Path
    runs: int = 0
    processes: list[subprocess.Popen] = field(default_factory=list)  # stopped on close, whatever happened

    @classmethod
    def prepare(cls, stack: FaultStack, data: Path, through_proxy: bool = False, publish: bool = True) -> Trial:
        settings = stack.trial_settings(through_proxy=through_proxy)
        if publish:
            publish_file(settings.replace(kafka_bootstrap=stack.settings.kafka_bootstrap), data)
        logs = stack.state_dir / "logs"
        logs.mkdir(exist_ok=True)
        return cls(stack, settings, stack.client(), logs)

    def direct(self) -> Settings:
        """The trial's settings, but straight to the broker (the harness's own reads bypass any proxy)."""
        return self.settings.replace(kafka_bootstrap=self.stack.settings.kafka_bootstrap)

    def start_run(self, *flags: str, idle_s: float = IDLE_S) -> Run:
        self.runs += 1
        run = Run.start(self.settings, self.logs / f"{self.settings.group}-{self.runs}.log", *flags, idle_s=idle_s)
        self.processes.append(run.process)
        return run

    def scored(self) -> set[bytes]:
        try:
            return set(self.client.zrange(f"{self.settings.key_prefix}:v1:scored", 0, -1))
        except redis.RedisError:
            return set()

    def wait_scored(self, count: int, run: Run) -> None:
        """Until `count` windows are scored: the pipeline is mid-stream, with results in Redis."""
        wait_for(lambda: len(self.scored()) >= count, RUN_TIMEOUT_S, f"{count} scored windows",
                 alive=lambda: run.process.poll() is None)

    def finish(self, run: Run, before: set[bytes], fault: str, ended: float) -> Outcome:
        """Waits for the run's clean end, timing recovery meanwhile; then the check."""
        recovered: float | None = None
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while run.process.poll() is None:
            if recovered is None and self.scored() - before:
                recovered = time.monotonic() - ended
            if time.monotonic() > deadline:
                run.kill()
                raise TrialFailed(f"{fault}: clout run did not finish within {RUN_TIMEOUT_S} s:\n{run.tail()}")
            time.sleep(0.1)
        if run.process.returncode != 0:
            return Outcome(fault, False, 0, None, [f"clout run exited {run.process.returncode}:\n{run.tail()}"])
        if recovered is None and self.scored() - before:
            recovered = time.monotonic() - ended
        return self.verdict(fault, recovered)

    def verdict(self, fault: str, recovery_s: float | None) -> Outcome:
        try:
            wait_lag_zero(self.direct())
        except TrialFailed as error:
            print(f"  {error}", flush=True)  # the check below names the lag left
        found = check(self.direct(), self.client)
        notes = [f"{found.repeats} records repeated an event_id (producer retries; dropped)"] if found.repeats else []
        return Outcome(fault, not found.problems and found.lost == 0, found.lost, recovery_s, found.problems,
                       notes)

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        for key in self.client.scan_iter(match=f"{self.settings.key_prefix}:*", count=10_000):
            self.client.delete(key)
        self.client.close()


INGEST_RATE = 500  # events/s of the paced `clout ingest` that broker trials run beside the pipeline
# `--stop-when-idle` beside a live connector: longer than the producer takes to resume after the broker
# is back, or the pipeline would rightly finish (its partitions sat at their end) before the rest came.
LIVE_IDLE_S = 20
# A producer's retry after a broker failure can land a batch again seconds later, behind newer records.
# At 500 Higgs events/s event time runs about 7,000 x real time, so the default horizon (1 h of event
# time) would be half a second of this replay: live trials de-duplicate over the whole slice instead.
LIVE_DEDUP_HORIZON_S = 3 * 86_400


def live(trial: Trial, data: Path) -> tuple[subprocess.Popen, Run]:
    """`clout ingest file --rate` and `clout run` side by side: the pipeline reads at the head of a
    topic that is still being written, so a broker fault hits the connector and the reader alike."""
    from clout.connectors.topics import create_topics

    create_topics(trial.direct())
    run = trial.start_run("--dedup-horizon", str(LIVE_DEDUP_HORIZON_S), idle_s=LIVE_IDLE_S)
    wait_for(lambda: "clout run: committed" in run.output(), RUN_TIMEOUT_S, "the pipeline to be running",
             alive=lambda: run.process.poll() is None)  # its first progress line: the job is reading
    ingest = start_ingest(trial.direct(), data, rate=INGEST_RATE)
    trial.processes.append(ingest)
    return ingest, run


def during_ingest(trial: Trial, run: Run, ingest: subprocess.Popen, data: Path, rng: random.Random) -> None:
    """Waits for the pipeline's first counts in Redis, then for a seeded random moment before the
    connector ends."""
    started = time.monotonic()
    windows = f"{trial.settings.key_prefix}:v1:windows"
    wait_for(lambda: trial.client.zcard(windows) > 0, RUN_TIMEOUT_S, "the first counts in Redis",
             alive=lambda: run.process.poll() is None)
    left = len(lines(data)) / INGEST_RATE - (time.monotonic() - started)
    if left < 3 or ingest.poll() is not None:
        raise TrialFailed("the connector was done before the pipeline's first results: publish more events")
    time.sleep(rng.uniform(0.1, 0.7) * left)


def end_live(trial: Trial, ingest: subprocess.Popen, run: Run, data: Path, fault: str, ended: float) -> Outcome:
    """The connector must finish by itself (retries, nothing twice); then the pipeline and the check.
    Recovery: until the group has committed everything the topic held when the fault ended."""
    ends = end_offsets(trial.direct())
    recovery = wait_committed(trial.direct(), ends, run) - ended
    output, _ = ingest.communicate(timeout=RUN_TIMEOUT_S)
    problems = [] if ingest.returncode == 0 else [f"clout ingest exited {ingest.returncode}: {output[-1500:]}"]
    problems += exactly_once(trial.direct(), data)
    outcome = trial.finish(run, set(), fault, ended)
    outcome.problems = problems + outcome.problems
    outcome.survived = outcome.survived and not problems
    outcome.recovery_s = recovery
    return outcome


def end_offsets(settings: Settings) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**settings.kafka_client_config(), enable_auto_commit=False)
    try:
        partitions = [TopicPartition(settings.topic, p) for p in consumer.partitions_for_topic(settings.topic)]
        return {tp.partition: n for tp, n in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def wait_committed(settings: Settings, ends: dict[int, int], run: Run) -> float:
    """Until the group's committed offsets reach `ends`; returns the monotonic time it happened."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    consumer = KafkaConsumer(**settings.kafka_client_config(), group_id=settings.group, enable_auto_commit=False)
    try:
        def reached() -> bool:
            try:
                return all((consumer.committed(TopicPartition(settings.topic, p)) or 0) >= n for p, n in ends.items())
            except KafkaError:
                return False

        wait_for(reached, RUN_TIMEOUT_S, "the group to commit what the topic held after the fault", poll=0.25,
                 alive=lambda: run.process.poll() is None)
        return time.monotonic()
    finally:
        consumer.close()


def mid_stream(trial: Trial, run: Run, rng: random.Random, windows: int) -> set[bytes]:
    """Waits for a seeded random point of progress (between 10 % and 70 % of the windows scored)."""
    trial.wait_scored(max(1, int(windows * rng.uniform(0.1, 0.7))), run)
    return trial.scored()


# --- the faults -------------------------------------------------------------------------------------


def broker_sigkill(stack: FaultStack, data: Path, rng: random.Random, windows: int) -> Outcome:
    """SIGKILL the broker mid-replay (connector and pipeline both at work), start it again after 10 s."""
    trial = Trial.prepare(stack, data, publish=False)
    try:
        ingest, run = live(trial, data)
        during_ingest(trial, run, ingest, data, rng)
        stack.broker.kill()
        time.sleep(BROKER_DOWN_S)
        stack.broker.start()
        return end_live(trial, ingest, run, data, "broker SIGKILL, back after 10 s", time.monotonic())
    finally:
        trial.close()


def broker_restart(stack: FaultStack, data: Path, rng: random.Random, windows: int) -> Outcome:
    """A clean broker restart (SIGTERM, controlled shutdown, start) mid-replay."""
    trial = Trial.prepare(stack, data, publish=False)
    try:
        ingest, run = live(trial, data)
        during_ingest(trial, run, ingest, data, rng)
        stack.broker.stop()
        stack.broker.start()
        return end_live(trial, ingest, run, data, "broker clean restart", time.monotonic())
    finally:
        trial.close()


def redis_sigkill(stack: FaultStack, data: Path, rng: random.Random, windows: int) -> Outcome:
    """SIGKILL Redis (persistence off: everything it held is gone) and start it again at once.

    The pipeline notices that the group's progress vanished, exits 2 saying Redis lost its data, and
    a restart with the same group and --from-beginning rebuilds every window from the topic."""
    fault = "Redis SIGKILL + restart (no persistence)"
    trial = Trial.prepare(stack, data)
    try:
        run = trial.start_run()
        mid_stream(trial, run, rng, windows)
        stack.redis.kill()
        stack.redis.start()
        ended = time.monotonic()
        code = run.wait(RUN_TIMEOUT_S)
        noticed = time.monotonic() - ended
        output = run.output()
        if code != 2 or "clout: error: Redis lost" not in output:
            return Outcome(fault, False, 0, None, [f"expected exit 2 naming the lost data, got {code}:\n{run.tail()}"])
        rerun = trial.start_run()
        outcome = trial.finish(rerun, set(), fault, ended)
        outcome.notes.append(f"the first run stopped {noticed:.0f} s after the loss, saying so")
        if "rebuilding" not in rerun.output():
            outcome.survived = False
            outcome.problems.append("the restart did not say it rebuilds:\n" + rerun.tail())
        return outcome
    finally:
        trial.close()


def redis_pause(stack: FaultStack, data: Path, rng: random.Random, windows: int) -> Outcome:
    """CLIENT PAUSE ALL for 15 s mid-replay: every command waits."""
    trial = Trial.prepare(stack, data)
    try:
        run = trial.start_run()
        mid_stream(trial, run, rng, windows)
        stack.redis.pause(REDIS_PAUSE_S)
        time.sleep(REDIS_PAUSE_S)
        return trial.finish(run, trial.scored(), "Redis CLIENT PAUSE 15 s", time.monotonic())
    finally:
        trial.close()


def redis_sleep(stack: FaultStack, data: Path, rng: random.Random, windows: int) -> Outcome:
    """DEBUG SLEEP 10 mid-replay: the server itself blocks, connections and all."""
    trial = Trial.prepare(stack, data)
    try:
        run = trial.start_run()
        mid_stream(trial, run, rng, windows)
        stack.redis.sleep(REDIS_SLEEP_S).join(timeout=REDIS_SLEEP_S + 30)
        return trial.finish(run, trial.scored(), f"Redis DEBUG SLEEP {REDIS_SLEEP_S} s", time.monotonic())
    finally:
        trial.close()


def redis_stalls(stack: FaultStack, data: Path, rng: random.Random, windows: int) -> Outcome:
    """CLIENT PAUSE 15 s, then DEBUG SLEEP 10 s, in one run (the CI-sized matrix's cheaper form)."""
    trial = Trial.prepare(stack, data)
    try:
        run = trial.start_run()
        mid_stream(trial, run, rng, windows // 2)
        stack.redis.pause(REDIS_PAUSE_S)
        time.sleep(REDIS_PAUSE_S)
        mid_stream(trial, run, rng, windows)
        stack.redis.sleep(REDIS_SLEEP_S).join(timeout=REDIS_SLEEP_S + 30)
        fault = f"Redis CLIENT PAUSE {REDIS_PAUSE_S} s, then DEBUG SLEEP {REDIS_SLEEP_S} s"
        return trial.finish(run, trial.scored(), fault, time.monotonic())
    finally:
        trial.close()


def pipeline_sigkills(stack: FaultStack, data: Path, rng: random.Random, windows: int, kills: int = 1) -> Outcome:
    """SIGKILL `clout run` (and its Prism runner) at `kills` seeded random moments, each followed by a
    restart with the same group; the last run goes to the end."""
    fault = "pipeline SIGKILL + restart"
    trial = Trial.prepare(stack, data)
    try:
        run = trial.start_run()
        recoveries = []
        for _ in range(kills):
            mid_stream(trial, run, rng, windows)
            time.sleep(rng.uniform(0, 1.5))
            run.kill()
            ended = time.monotonic()
            before = trial.scored()
            run = trial.start_run()
            wait_for(lambda b=before: bool(trial.scored() - b), RUN_TIMEOUT_S, "results after the restart",
                     alive=lambda r=run: r.process.poll() is None)
            recoveries.append(time.monotonic() - ended)
        outcome = trial.finish(run, trial.scored(), fault, time.monotonic())
        if "resuming" not in run.output():
            outcome.survived = False
            outcome.problems.append("the restart did not resume from the group's progress")
        outcome.recovery_s = max(recoveries)
        outcome.faults = kills
        return outcome
    finally:
        trial.close()


def lossy_link(stack: FaultStack, data: Path, rng: random.Random, windows: int) -> Outcome:
    """The pipeline's Kafka traffic through a TCP proxy that holds every chunk 20 ms each way and cuts
    each connection after 1 to 6 s (seeded), while the connector publishes beside it."""
    fault = "slow, lossy link to the broker"
    proxy = stack.proxy(delay_s=0.02, min_life_s=1.0, max_life_s=6.0, seed=rng.randrange(1 << 30))
    proxy.start()
    try:
        trial = Trial.prepare(stack, data, through_proxy=True, publish=False)
        try:
            proxy.dropping.set()
            ingest, run = live(trial, data)
            outcome = end_live(trial, ingest, run, data, fault, time.monotonic())
            outcome.recovery_s = None
            outcome.notes.append(f"{proxy.dropped} of {proxy.connections} connections cut")
            if proxy.dropped == 0:
                outcome.survived = False
                outcome.problems.append("the proxy cut no connection: the fault did not happen")
            return outcome
        finally:
            trial.close()
    finally:
        proxy.stop()


def ingest_broker_gone(stack: FaultStack, data: Path, rng: random.Random, windows: int,
                       delivery_timeout_s: float | None = None) -> Outcome:
    """SIGKILL the broker for good while two `clout ingest file` publish: the paced one (records one
    by one through KafkaProducer.send) on the slice, the unpaced one (whole batches, the fast path)
    on the whole Higgs file. Each retries for the stall limit (kafka_delivery_timeout_s + 30 s), then
    exits 2 with one line naming the broker and how many records were not delivered; the records it
    says are in the topic are, each published once. The broker is started again for the next trial."""
    fault = "broker gone for good during clout ingest"
    trial = Trial.prepare(stack, data, publish=False)
    try:
        from clout.connectors.topics import create_topics

        paced, fast = trial.settings, stack.trial_settings()
        for settings in (paced, fast):
            create_topics(settings)
        extra = {} if delivery_timeout_s is None else {"CLOUT_KAFKA_DELIVERY_TIMEOUT_S": str(delivery_timeout_s)}
        ingests = {"paced": start_ingest(paced, data, rate=INGEST_RATE, **extra),
                   "unpaced": start_ingest(fast, HIGGS, rate=None, **extra)}
        trial.processes.extend(ingests.values())
        wait_for(lambda: all(sum(end_offsets(s).values()) > 0 for s in (paced, fast)), RUN_TIMEOUT_S,
                 "both connectors to publish", alive=lambda: all(p.poll() is None for p in ingests.values()))
        time.sleep(rng.uniform(0.2, 1.0))  # past their start: the broker goes while they publish
        stack.broker.kill()
        killed = time.monotonic()
        outputs, took = {}, {}
        try:
            for name, ingest in ingests.items():
                outputs[name], _ = ingest.communicate(timeout=RUN_TIMEOUT_S)
                took[name] = time.monotonic() - killed
        finally:
            stack.broker.start()
        problems, notes = [], []
        limit_s = (delivery_timeout_s or Settings().kafka_delivery_timeout_s) + STALL_MARGIN_SECONDS
        for (name, ingest), settings in zip(ingests.items(), (paced, fast), strict=True):
            if took[name] > limit_s + GIVE_UP_SLACK_S:
                problems.append(f"{name}: exited {took[name]:.0f} s after the broker went; limit {limit_s:.0f} s")
            output = outputs[name]
            last = output.strip().splitlines()[-1] if output.strip() else ""
            if ingest.returncode != 2 or not last.startswith("clout: error:"):
                problems.append(f"{name}: expected exit 2 with 'clout: error: ...', got {ingest.returncode}: "
                                f"{output[-1500:]}")
                continue
            problems += [f"{name}: {problem}" for problem in delivered_as_said(settings, last)]
            notes.append(f"{name} failed after {took[name]:.0f} s: {last[:400]}")
        problems += exactly_once(paced, data, complete=False)
        return Outcome(fault, not problems, 0, None, problems, notes)
    finally:
        trial.close()


# Beyond the stall limit, from the kill: the last acknowledgement's lead, a check's round (1 s),
# the producer's abort (at most 10 s) and the exit.
GIVE_UP_SLACK_S = 15


def delivered_as_said(settings: Settings, error: str) -> list[str]:
    """The error names the broker and says how many of the records sent were not delivered; the
    others must all be in the topic, and nothing beyond what was sent, each event_id with one content."""
    found = re.search(r"acknowledged no record for \d+ s .*: ([\d,]+) of ([\d,]+) records sent were not "
                      r"delivered .* the other ([\d,]+) are in the topic", error)
    if settings.kafka_bootstrap not in error or found is None:
        return [f"the error does not name the broker and what was not delivered: {error[:400]}"]
    failed, sent, acknowledged = (int(group.replace(",", "")) for group in found.groups())
    published = topic_events(settings)
    distinct = len(published.events)
    problems = [] if failed + acknowledged == sent else [f"{failed} + {acknowledged} is not {sent}"]
    if distinct < acknowledged:
        problems.append(f"{acknowledged} records said to be in the topic, {distinct} are")
    if distinct > sent:
        problems.append(f"{distinct} distinct records in the topic, only {sent} sent")
    if published.conflicting:
        problems.append(f"{published.conflicting} records published twice with one event_id and other content")
    return problems


def start_ingest(settings: Settings, data: Path, rate: float | None, **env: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "clout.cli", "ingest", "file", str(data), "--format", "snap-higgs"]
    if rate is not None:
        command += ["--rate", str(rate)]
    return subprocess.Popen(command, env={**run_env(settings), **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def exactly_once(settings: Settings, data: Path, complete: bool = True) -> list[str]:
    """The topic against the file: a record published twice only as the same event (same event_id,
    same bytes), nothing that is not in the file, and (when the ingest completed) every line there."""
    expected = len(lines(data))
    published = topic_events(settings)
    distinct = len(published.events)
    problems = []
    if published.conflicting:
        problems.append(f"{published.conflicting} records published twice with one event_id and other content")
    if complete and distinct != expected:
        problems.append(f"{distinct} distinct event ids in the topic, {expected} lines in the file")
    if distinct > expected:
        problems.append("more distinct event ids than lines")
    return problems


def lines(data: Path) -> list[bytes]:
    return data.read_bytes().splitlines()


Fault = Callable[..., Outcome]
MATRIX: dict[str, Fault] = {
    "broker-sigkill": broker_sigkill,
    "broker-restart": broker_restart,
    "redis-sigkill": redis_sigkill,
    "redis-pause": redis_pause,
    "redis-sleep": redis_sleep,
    "pipeline-sigkill": pipeline_sigkills,
    "lossy-link": lossy_link,
    "ingest-broker-gone": ingest_broker_gone,
}
