"""Assemble and run the streaming pipeline. No runner-specific code lives in the transforms, so the
same graph runs on Prism locally and on Flink or Dataflow when submitted with their options."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult, PipelineState
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from redis.exceptions import RedisError

from clout.anomalies.config import Thresholds
from clout.anomalies.detect import context_needed_ms
from clout.influence.scores import InfluenceConfig
from clout.local.stack import install_prism
from clout.model.windows import WindowPolicy
from clout.pipelines.account_verdicts import AccountSnapshots
from clout.pipelines.aggregates import EngagementCounts
from clout.pipelines.interactions import ReadInteractions
from clout.pipelines.recovery import (
    RecordProgress,
    RedisLost,
    StartPlan,
    lost_message,
    plan_start,
    progress_intact,
    utc_minute,
)
from clout.pipelines.runner_noise import hold_back_runner_gone_noise
from clout.pipelines.sink import WriteWindowTotals
from clout.pipelines.source import ReadAhead, SourceConfig
from clout.pipelines.window_scores import WindowGraphs
from clout.settings import Settings
from clout.store.client import RedisTarget
from clout.store.layout import KeyLayout
from clout.store.window_results import ResultsConfig

STREAMING_JOB_DEADLINE_S = 10 * 365 * 24 * 3600


@dataclass(frozen=True)
class RunConfig:
    policy: WindowPolicy = field(default_factory=WindowPolicy)
    shards: int = 4
    from_beginning: bool = False
    reset: bool = False
    stop_when_idle_s: float | None = None
    out_of_orderness_s: float = 30.0
    idle_after_s: float = 10.0
    dedup_horizon_s: float = 3600.0
    read_ahead_s: float = 6 * 3600.0  # 0: readers are never paused
    influence: InfluenceConfig = field(default_factory=InfluenceConfig)
    thresholds: Thresholds = field(default_factory=Thresholds)
    beam_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        least = self.policy.size_s + self.policy.lateness_s + self.policy.period_s + self.out_of_orderness_s
        if self.read_ahead_s and self.read_ahead_s <= least:
            raise ValueError(f"--read-ahead {self.read_ahead_s:g}s must be 0 or more than window + lateness + "
                             f"period + out-of-orderness ({least:g}s): a reader that cannot get past a window's "
                             "deadline would wait for it forever")

    @property
    def context_ms(self) -> int:
        """Event time behind each window's end that its analyses read (and a restart replays)."""
        return context_needed_ms(self.thresholds, self.policy)


def build_pipeline(pipeline: beam.Pipeline, settings: Settings, config: RunConfig, plan: StartPlan) -> None:
    """events -> windows -> counts, and window graphs -> influence and flags -> Redis; progress for restarts."""
    redis_target = RedisTarget.from_settings(settings)
    layout = KeyLayout(settings.key_prefix)
    source = SourceConfig(
        client=settings.kafka_client_config(), topic=settings.topic, group=settings.group,
        start_offsets=plan.start_offsets, out_of_orderness_ms=int(config.out_of_orderness_s * 1000),
        lateness_ms=config.policy.lateness_s * 1000,
        idle_after_s=config.idle_after_s, stop_when_idle_s=config.stop_when_idle_s,
        dedup_horizon_ms=int(config.dedup_horizon_s * 1000),
        read_ahead=ReadAhead(redis_target, layout.progress(settings.group), int(config.read_ahead_s * 1000))
        if config.read_ahead_s else None, windows=config.policy)
    single = single_worker(config.beam_args)
    events = pipeline | "ReadInteractions" >> ReadInteractions(source, settings.dlq_topic, single_worker=single)
    counts = events | "EngagementCounts" >> EngagementCounts(config.policy, config.shards)
    written = counts | "WriteWindowTotals" >> WriteWindowTotals(
        redis_target, layout, config.policy, settings.retention_seconds, plan.horizon_ms, single_worker=single)
    results = ResultsConfig(redis_target, layout, config.influence, config.policy, settings.retention_seconds,
                            config.thresholds, settings.kafka_client_config(), settings.flags_topic, config.shards)
    snapshots = AccountSnapshots(redis_target, layout, settings.group, settings.retention_seconds,
                                 plan.accounts_from_ms)
    analysed = events | "WindowGraphs" >> WindowGraphs(results, config.context_ms, plan.horizon_ms, snapshots, single)
    _ = ((written, analysed) | "WindowEnds" >> beam.Flatten()
         | "RecordProgress" >> RecordProgress(redis_target, layout, settings.group, config.policy))


def single_worker(beam_args: Sequence[str]) -> bool:
    """Whether the runner runs all Python in one worker process for the job's life (Prism, the default,
    whatever its options): its caches of keyed state are then complete by construction (state_cache.py)."""
    runners = [a.split("=", 1)[1] for a in beam_args if a.startswith("--runner=")]
    return not runners or runners[-1] in ("PrismRunner", "prism")


def prism_args(settings: Settings) -> list[str]:
    """Prism, built into the cache on first use, without bundle splits: Prism 2.77 drops the watermark
    holds of timers in a split-off remainder (Beam issue 35771), and one Python worker gains nothing
    from a split."""
    return ["--runner=PrismRunner", f"--prism_location={install_prism(settings)}",
            "--experiments=disable_prism_server_singleton", "--experiments=prism_disable_sdf_split"]


def pipeline_options(settings: Settings, beam_args: Sequence[str]) -> PipelineOptions:
    """Prism by default (built into the cache on first use); any --runner in beam_args wins."""
    from clout.pipelines.flink_options import with_flink_defaults  # declares Flink's options for the job server

    args = with_flink_defaults(list(beam_args))
    if not any(a.startswith("--runner") for a in args):
        args += prism_args(settings)
    if "--streaming" not in args:
        args.append("--streaming")
    if not any(a.startswith("--job_server_timeout") for a in args):
        # Beam puts this deadline on the job's state stream too: a job running longer would fail with
        # DEADLINE_EXCEEDED after 300 s (the default). A streaming job runs until it is stopped.
        args.append(f"--job_server_timeout={STREAMING_JOB_DEADLINE_S}")
    return PipelineOptions(args)


def run(settings: Settings, config: RunConfig, progress_interval: float = 5.0,
        on_plan: Callable[[StartPlan], Any] | None = None) -> dict[str, int]:
    """Plan the start, run to completion (or Ctrl-C), print progress and a summary of Beam counters.
    `on_plan` hears the plan just before the job is submitted (what a watch on the job needs)."""
    # kafka-python 3 warns whenever its I/O loop waits on the GIL, which a busy pipeline always does.
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
    noise = hold_back_runner_gone_noise()
    consumer = KafkaConsumer(**settings.kafka_client_config(), group_id=None, enable_auto_commit=False)
    try:
        plan = plan_start(consumer, RedisTarget.from_settings(settings), KeyLayout(settings.key_prefix),
                          settings.topic, settings.group, config.policy, config.from_beginning, config.reset,
                          config.context_ms, group_committed=_group_committed(settings), shards=config.shards)
        print(f"clout run: {plan.describe()}", file=sys.stderr, flush=True)
        if on_plan is not None:
            on_plan(plan)
        pipeline = beam.Pipeline(options=pipeline_options(settings, config.beam_args))
        build_pipeline(pipeline, settings, config, plan)
        result = pipeline.run()
        reporter = _LagReporter(consumer, settings, progress_interval, on_redis_lost=result.cancel)
        reporter.start()
        try:
            result.wait_until_finish()
        except RuntimeError:  # how Beam reports a job that ended CANCELLED, as a lost Redis makes it
            if not reporter.redis_lost.is_set():
                _say_runner_gone(noise.held)
                raise
        finally:
            reporter.stop()
    finally:
        consumer.close()
    counters = beam_counters(result)
    print("clout run done: " + ", ".join(f"{k} {v:,}" for k, v in counters.items()), file=sys.stderr, flush=True)
    if reporter.redis_lost.is_set():
        raise RedisLost(lost_message(settings.group))
    if result.state != PipelineState.DONE:
        raise RuntimeError(f"pipeline ended in state {result.state}")
    return counters


def _say_runner_gone(threads: int) -> None:
    """A run that failed (not one interrupted) says that its worker lost the runner, if it did."""
    if threads:
        print(f"clout run: {threads} Beam worker streams lost the runner's connection (gRPC UNAVAILABLE)",
              file=sys.stderr, flush=True)


def _group_committed(settings: Settings) -> bool:
    """Whether the group has offsets committed in Kafka: it ran before, whatever Redis says now."""
    consumer = KafkaConsumer(**settings.kafka_client_config(), group_id=settings.group, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(settings.topic) or set()
        return any(consumer.committed(TopicPartition(settings.topic, p)) is not None for p in partitions)
    finally:
        consumer.close()


def beam_counters(result: PipelineResult) -> dict[str, int]:
    """Committed counter values by name (read, rejected, duplicates, written ...)."""
    try:
        counters = result.metrics().query()["counters"]
    except (NotImplementedError, KeyError, AttributeError):
        return {}
    totals: dict[str, int] = {}
    for counter in counters:
        if not counter.key.metric.namespace.startswith("clout."):
            continue
        name = counter.key.metric.name
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[name] = totals.get(name, 0) + (value or 0)
    return dict(sorted(totals.items()))


class _LagReporter(threading.Thread):
    """Prints the group's committed position against the topic's end every few seconds, and watches
    that Redis still holds the group's progress: a Redis that lost its data (a restart without
    persistence) leaves windows the pipeline will never write again, so the run is cancelled and
    says so (`on_redis_lost`), instead of finishing as if the results were whole."""

    def __init__(self, consumer: KafkaConsumer, settings: Settings, interval: float,
                 on_redis_lost: Callable[[], Any] = lambda: None) -> None:
        super().__init__(daemon=True, name="clout-progress")
        self.settings = settings
        self.interval = interval
        self.on_redis_lost = on_redis_lost
        self.redis_lost = threading.Event()
        self._stop_event = threading.Event()
        self._admin_client: dict[str, Any] = settings.kafka_client_config()
        self._redis = RedisTarget.from_settings(settings).connect()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        consumer = KafkaConsumer(**self._admin_client, group_id=self.settings.group, enable_auto_commit=False)
        try:
            partitions = [TopicPartition(self.settings.topic, p)
                          for p in sorted(consumer.partitions_for_topic(self.settings.topic) or [])]
            last, last_time = None, time.monotonic()
            while not self._stop_event.wait(self.interval):
                if progress_intact(self._redis, KeyLayout(self.settings.key_prefix), self.settings.group) is False:
                    print(f"clout run: {lost_message(self.settings.group)}; cancelling the run", file=sys.stderr,
                          flush=True)
                    self.redis_lost.set()
                    self.on_redis_lost()
                    return
                try:
                    done = sum(consumer.committed(tp) or 0 for tp in partitions)
                    end = sum(consumer.end_offsets(partitions).values())
                except KafkaError as error:  # the broker away: say so, and ask again next time
                    print(f"clout run: Kafka unavailable ({type(error).__name__}); {self._results()}",
                          file=sys.stderr, flush=True)
                    continue
                now = time.monotonic()
                rate = 0.0 if last is None else (done - last) / (now - last_time)
                print(f"clout run: committed {done:,} of {end:,} records (lag {end - done:,}, {rate:,.0f} records/s); "
                      f"{self._results()}", file=sys.stderr, flush=True)
                last, last_time = done, now
        finally:
            consumer.close()
            self._redis.close()

    def _results(self) -> str:
        """How far the results are: records are committed when read, before their windows are written."""
        layout = KeyLayout(self.settings.key_prefix)
        try:
            scored = self._redis.zrange(layout.scored_windows(), -1, -1, withscores=True)
            sealed = self._redis.hget(layout.progress(self.settings.group), "sealed_ms")
        except RedisError as error:
            return f"Redis unavailable ({type(error).__name__})"
        newest = utc_minute(int(scored[0][1]) * 1000) if scored else "none yet"
        final = utc_minute(int(sealed)) if sealed else "none yet"
        return f"newest scored window ends {newest}, results final up to {final}"
