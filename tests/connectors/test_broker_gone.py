"""A connector with no broker to talk to: it retries for a bounded time, then says so and exits."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens once the probe is closed


def test_ingest_without_a_broker_fails_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "edges.txt"
    path.write_bytes(b"1 2 1341100972 RT\n")
    env = {**os.environ, "CLOUT_KAFKA_BOOTSTRAP": f"127.0.0.1:{closed_port()}"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "clout.cli", "ingest", "file", str(path), "--format", "snap-higgs"],
                          env=env, capture_output=True, text=True, timeout=120)
    took = time.monotonic() - started
    assert done.returncode == 2, done.stderr[-2000:]
    assert "did not answer within 30 s" in done.stderr.splitlines()[-1], done.stderr[-2000:]
    assert took < 60, f"took {took:.0f} s"
