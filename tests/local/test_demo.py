"""`clout demo` stopped with SIGTERM (as a service manager or `timeout` stops it) stops what it started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from clout.settings import Settings

pytestmark = pytest.mark.servers


def processes_in_groups(groups: set[int]) -> list[int]:
    """Live (non-zombie) processes whose process group is one of `groups`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) in groups:
            found.append(int(entry.name))
    return found


def children_of(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.add(int(entry.name))
            except OSError:
                continue
    return out


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_sigterm_stops_pipeline_server_and_ingest(settings: Settings, redis_client: object) -> None:
    names = ("kafka_bootstrap", "redis_url", "topic", "dlq_topic", "flags_topic", "key_prefix", "state_dir",
             "kafka_port", "redis_port")
    env = {**os.environ, **{f"CLOUT_{n.upper()}": str(getattr(settings, n)) for n in names}}
    demo = subprocess.Popen([sys.executable, "-m", "clout.cli", "demo", "--users", "300", "--events", "200000",
                             "--speed", "60", "--port", str(free_port())], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in demo.stdout:
            lines.append(line)
            if "dashboard at" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    children: set[int] = set()
    try:
        assert ready.wait(240), "".join(lines)[-3000:]
        children = children_of(demo.pid)
        assert len(children) == 3, children  # pipeline, serve, ingest (each its own process group)
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(90) == 0, "".join(lines)[-3000:]
        deadline = time.monotonic() + 10
        while processes_in_groups(children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert processes_in_groups(children) == [], "".join(lines)[-3000:]
        assert any("clout demo: stopping" in line for line in lines)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
        for pid in processes_in_groups(children):
            os.kill(pid, signal.SIGKILL)
