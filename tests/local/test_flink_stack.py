"""The local Flink stack: a real session cluster with two slots, the job server and the worker pool;
`up` is idempotent and `clout run --flink` without the stack says how to start it."""

from __future__ import annotations

from pathlib import Path

import pytest

from clout.local import flink, stack
from clout.settings import Settings

pytestmark = pytest.mark.servers


def test_flink_up_twice_is_harmless(flink_settings: Settings) -> None:
    pieces = stack.servers(flink_settings, flink=True)
    before = {s.name: stack.running_pid(s) for s in pieces}
    lines: list[str] = []
    stack.up(flink_settings, say=lines.append, flink=True)
    assert {s.name: stack.running_pid(s) for s in pieces} == before and all(before.values())
    assert sum("already running" in line for line in lines) == len(pieces)
    report = stack.status(flink_settings, flink=True)
    assert set(report) >= {"flink-jobmanager", "flink-taskmanager", "flink-job-server", "flink-worker-pool"}
    assert all(entry["answers"] for entry in report.values()), report
    overview = flink._rest(flink_settings, "/overview")
    assert overview["taskmanagers"] == 1 and overview["slots-total"] == flink.SLOTS


def test_run_on_flink_without_the_stack_says_how_to_start_it(flink_settings: Settings, tmp_path: Path) -> None:
    elsewhere = flink_settings.replace(state_dir=tmp_path, flink_rest_port=flink_settings.flink_rest_port + 7,
                                       flink_job_server_port=flink_settings.flink_job_server_port + 7,
                                       flink_worker_pool_port=flink_settings.flink_worker_pool_port + 7)
    with pytest.raises(stack.StackError, match="clout stack up --flink"):
        flink.require_running(elsewhere)


def test_the_job_server_jar_names_its_runner_jars(flink_settings: Settings) -> None:
    """The manifest-only jar: `java -jar` finds FlinkJobServerDriver through its Class-Path."""
    import zipfile

    with zipfile.ZipFile(flink.job_server_jar(flink_settings)) as jar:
        manifest = jar.read("META-INF/MANIFEST.MF").decode().replace("\r\n ", "")
    assert f"Main-Class: {flink.JOB_SERVER_MAIN}" in manifest
    listed = manifest.split("Class-Path: ")[1].split()
    assert any(name.startswith("beam-runners-flink-1.19") for name in listed)
    assert all((flink.flink_libs(flink_settings) / name).exists() for name in listed)


def test_a_job_that_reads_nothing_with_records_waiting_is_cancelled(flink_settings: Settings, settings: Settings
                                                                     ) -> None:
    """What a stuck start looks like from outside (RUNNING, checkpointing, no record moved, records
    waiting), made on purpose with a job that reads nothing: the watch cancels it, and Beam's wait ends
    in the RuntimeError on which `clout run --flink` submits again."""
    import uuid

    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from kafka import KafkaProducer

    from clout.connectors.topics import create_topics

    watched = flink_settings.replace(topic=settings.topic)
    create_topics(watched, partitions=1)
    producer = KafkaProducer(**watched.kafka_client_config())
    producer.send(watched.topic, b"{}").get(timeout=30)
    producer.close()
    job_name = f"clout-stuck-{uuid.uuid4().hex[:8]}"
    options = PipelineOptions([*flink.flink_beam_args(watched, job_name), "--streaming"])
    pipeline = beam.Pipeline(options=options)
    _ = pipeline | beam.Impulse() | beam.FlatMap(lambda _: [])
    watch = flink.StartWatch(watched, job_name, after_s=5, poll_s=1)
    watch.begin({0: 0})
    try:
        result = pipeline.run()
        with pytest.raises(RuntimeError, match="Job was cancelled"):  # FAILED, as Beam 2.62 says
            result.wait_until_finish(duration=180_000)
            raise AssertionError(f"the job was not cancelled: {result.state}")
    finally:
        watch.stop()
    assert watch.cancelled.is_set()
