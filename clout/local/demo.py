"""`clout demo`: the whole path on the local stack, live, until Ctrl-C.

Starts Kafka and Redis (unless already up), the pipeline on a fresh group, the read API with its
dashboard, and the synthetic connector replaying two days of activity with planted bots, a ring and
a bought burst at `speed` x real time, placed so that it ends now (it catches up with the clock).
Prints the dashboard's URL and a status line every few seconds; Ctrl-C, SIGTERM (a service manager,
`timeout`) or the end of the stream and `--linger` stops everything it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from clout.connectors.topics import create_topics
from clout.local import stack
from clout.settings import Settings
from clout.store.client import SyncClient, sync_client
from clout.store.layout import KeyLayout

GROUP = "demo"
Say = Callable[[str], None]


@dataclass(frozen=True)
class DemoOptions:
    users: int = 10_000
    events: int = 200_000
    speed: float = 120.0  # two days of event time in 24 minutes
    host: str = "127.0.0.1"
    port: int = 8000
    linger_s: float | None = None  # after the stream ends, keep serving this long (None: until Ctrl-C)


def run_demo(settings: Settings, options: DemoOptions, say: Say = print) -> int:
    previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        return _run_demo(settings, options, say)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminate_as_interrupt(_signum: int, _frame: object) -> None:
    """SIGTERM takes Ctrl-C's path, so the children are stopped on the way out; a second one while
    they stop is ignored, so it cannot cut that short."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def _run_demo(settings: Settings, options: DemoOptions, say: Say) -> int:
    settings = settings.replace(group=GROUP)
    with ExitStack() as started:
        if not all(stack.running_pid(s) for s in stack.servers(settings)):
            stack.up(settings, say=say)
            started.callback(stack.down, settings, say)
        create_topics(settings)
        _forget_previous_results(settings)
        truth = Path(settings.state_dir) / "truth.json"
        pipeline = started.enter_context(_child("pipeline", ["run", "--reset", "--from-latest"], settings, say))
        _wait_for_start(settings, pipeline)
        started.enter_context(_child("serve", ["serve", "--host", options.host, "--port", str(options.port)],
                                     settings, say))
        ingest = started.enter_context(_child("ingest", [
            "ingest", "synthetic", "--users", str(options.users), "--events", str(options.events),
            "--truth", str(truth), "--speed", str(options.speed), "--ending-now"], settings, say,
            stdout=subprocess.DEVNULL))  # its JSON summary is for scripts; its progress goes to stderr
        say(f"clout demo: dashboard at http://{options.host}:{options.port}/ (planted anomalies: {truth}); "
            "Ctrl-C stops everything")
        return _watch(settings, pipeline, ingest, options, say)


def _watch(settings: Settings, pipeline: subprocess.Popen, ingest: subprocess.Popen, options: DemoOptions,
           say: Say) -> int:
    client = sync_client(settings.redis_url, **settings.redis_client_config())
    layout, ended_at = KeyLayout(settings.key_prefix), None
    try:
        while pipeline.poll() is None:
            time.sleep(5)
            say(_status(client, layout))
            if ended_at is None and ingest.poll() is not None:
                ended_at = time.monotonic()
                say("clout demo: the synthetic stream has been published; results keep updating")
            if ended_at is not None and options.linger_s is not None and time.monotonic() - ended_at > options.linger_s:
                return 0
        say(f"clout demo: the pipeline stopped (exit {pipeline.returncode})")
        return 1
    except KeyboardInterrupt:
        say("clout demo: stopping")
        return 0
    finally:
        client.close()


def _status(client: SyncClient, layout: KeyLayout) -> str:
    newest = client.zrevrange(layout.scored_windows(), 0, 0)
    if not newest:
        return "clout demo: waiting for the first window to close"
    window = newest[0].decode()
    top = client.zrevrange(layout.score_board(window), 0, 2, withscores=True)
    flagged = sum(client.zcard(layout.flagged(w.decode())) for w in client.zrevrange(layout.scored_windows(), 0, 7))
    leaders = ", ".join(f"{u.decode()} {s:.0f}" for u, s in top) or "scores pending"
    return f"clout demo: window {window}: top {leaders}; {flagged} flags in the last 8 windows"


def _forget_previous_results(settings: Settings) -> None:
    """A demo starts clean: the previous demo's windows would sit beside this one's."""
    client = sync_client(settings.redis_url, **settings.redis_client_config())
    try:
        for key in client.scan_iter(match=f"{KeyLayout(settings.key_prefix).root}:*", count=10_000):
            client.delete(key)
    finally:
        client.close()


def _wait_for_start(settings: Settings, pipeline: subprocess.Popen, timeout: float = 120.0) -> None:
    """The pipeline records its start offsets before reading; publishing must begin after that."""
    client = sync_client(settings.redis_url, **settings.redis_client_config())
    deadline = time.monotonic() + timeout
    try:
        while not client.exists(KeyLayout(settings.key_prefix).progress(GROUP)):
            if pipeline.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the pipeline did not start (see its output above)")
            time.sleep(0.5)
    finally:
        client.close()


@contextmanager
def _child(name: str, args: list[str], settings: Settings, say: Say, stdout: int | None = None
           ) -> Iterator[subprocess.Popen]:
    """A `clout` subcommand in its own process group, stopped with SIGINT (then SIGKILL) on exit."""
    env = {**os.environ, **settings.environment()}  # the demo's flags too (--bootstrap, --redis-url ...)
    process = subprocess.Popen([sys.executable, "-m", "clout.cli", *args], env=env, stdout=stdout,
                               start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            say(f"clout demo: stopping {name}")
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
