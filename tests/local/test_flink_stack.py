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
