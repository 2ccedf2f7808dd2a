"""The app on a real uvicorn server in a thread, for the serving tests (imported by name, unlike conftest).

The app runs on a real socket rather than an in-process transport, so the tests see the same HTTP,
headers and lifespan that `clout serve` gives a caller.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from clout.serving.app import create_app
from clout.settings import Settings


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_app(settings: Settings, max_staleness_s: float | None = 1800.0) -> Iterator[httpx.Client]:
    """`create_app(settings)` listening on a free loopback port; an HTTP client pointed at it."""
    port = free_port()
    config = uvicorn.Config(create_app(settings, max_staleness_s), host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name=f"uvicorn-{port}")
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the app did not start"
        time.sleep(0.01)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)
