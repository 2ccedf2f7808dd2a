"""Fault injection, black box: real `clout` processes against a Kafka broker and a redis-server of the
harness's own, which it may kill, pause and restart without disturbing anyone else's servers.

Used by tests/faults (a CI-sized matrix) and bench/faults.py (the whole matrix). Every trial is
bounded: a fixed slice of real data, a deadline on every wait, one group and key prefix of its own.
The check after a fault reads what is in the topic back with a plain consumer and recounts it with
tests/pipelines/recount.py, which shares no code with the pipeline.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import redis
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pipelines"))
from recount import (
    Interaction,
    differences,
    influence_differences,
    networkx_pagerank,
    read_back,
    read_influence,
    recount,
    recount_influence_parts,
)

from clout.connectors.topics import create_topics
from clout.local import stack
from clout.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent.parent
DATA = Path(os.environ.get("CLOUT_DATA_DIR", ROOT.parent / "shared" / "data"))
HIGGS = DATA / "higgs-twitter" / "higgs-activity_time.txt.gz"
HIGGS_KIND = {"RT": "repost", "MT": "mention", "RE": "reply"}
IDLE_S = 4  # `clout run --stop-when-idle`


def offset() -> int:
    return int(os.environ.get("CLOUT_TEST_PORT_OFFSET", "0"))


@dataclass(frozen=True)
class Ports:
    """The harness's own servers, away from the test stack's (29092, 26379 + offset) and the bench's,
    and below Linux's ephemeral range (32768 on): a restarted broker must be able to bind its ports
    again, which fails when a client's outgoing socket happens to hold one meanwhile."""

    kafka: int
    controller: int
    proxied: int  # a second broker listener, advertised as the lossy proxy's port
    proxy: int
    redis: int

    @classmethod
    def for_tests(cls) -> Ports:
        base = offset() + 40
        return cls(29092 + base, 29093 + base, 29094 + base, 29095 + base, 26379 + base)

    @classmethod
    def for_bench(cls) -> Ports:
        base = offset() + 40
        return cls(31092 + base, 31093 + base, 31094 + base, 31095 + base, 31379 + base)


# --- servers the harness owns -----------------------------------------------------------------------


class Broker:
    """A single-node KRaft broker from the local stack's install, as a process this harness may kill.

    Besides the stack's PLAINTEXT listener it has a PROXIED one, advertised at `proxy_port`: a client
    that bootstraps through the lossy proxy is told to keep talking to the proxy."""

    def __init__(self, settings: Settings, ports: Ports, proxy_port: int) -> None:
        self.server = next(s for s in stack.servers(settings) if s.name == "kafka")
        self.ports = ports
        self.proxy_port = proxy_port
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> None:
        self.server.prepare()
        self._add_proxied_listener()
        with open(self.server.log_file, "ab") as log:
            self.process = subprocess.Popen(self.server.command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        wait_for(self.server.answers, timeout, "the fault broker to answer", poll=0.5,
                 alive=lambda: self.process.poll() is None)

    def _add_proxied_listener(self) -> None:
        config = self.server.state_dir / "kafka" / "server.properties"
        lines = []
        for line in config.read_text().splitlines():
            if line.startswith("listeners="):
                line += f",PROXIED://127.0.0.1:{self.ports.proxied}"
            elif line.startswith("advertised.listeners="):
                line += f",PROXIED://127.0.0.1:{self.proxy_port}"
            elif line.startswith("listener.security.protocol.map="):
                line += ",PROXIED:PLAINTEXT"
            lines.append(line)
        config.write_text("\n".join(lines) + "\n")

    def kill(self) -> None:
        """SIGKILL: no flush, no controlled shutdown; the log is recovered on the next start."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self, timeout: float = 60) -> None:
        """A clean shutdown (SIGTERM, as `clout stack down` does)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)


class RedisServer:
    """Debian's redis-server, persistence off as in the local stack, DEBUG allowed from loopback."""

    def __init__(self, port: int, home: Path) -> None:
        self.port = port
        self.home = home
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        command = [stack.install_redis(), "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.home),
                   "--save", "", "--appendonly", "no", "--enable-debug-command", "local",
                   "--logfile", str(self.home / "redis.log")]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for(self._answers, timeout, "the fault Redis to answer", alive=lambda: self.process.poll() is None)

    def _answers(self) -> bool:
        client = redis.Redis(port=self.port, socket_timeout=2)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=60)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def pause(self, seconds: float) -> None:
        """CLIENT PAUSE ALL: every client's commands wait (the server answers nothing) for `seconds`."""
        with self.client() as client:
            client.execute_command("CLIENT", "PAUSE", int(seconds * 1000), "ALL")

    def sleep(self, seconds: float) -> threading.Thread:
        """DEBUG SLEEP: the server's one thread blocks, for everyone; returns the thread that waits on it."""
        def block() -> None:
            with self.client() as client:
                client.execute_command("DEBUG", "SLEEP", seconds)

        thread = threading.Thread(target=block, daemon=True, name="redis-debug-sleep")
        thread.start()
        return thread


class LossyProxy:
    """A TCP proxy on loopback (asyncio, in a thread): every chunk is held `delay_s` in each direction,
    and each connection is cut (both sides closed, bytes in flight lost) after a random lifetime,
    uniform in [`min_life_s`, `max_life_s`] from a seeded generator."""

    def __init__(self, port: int, target_port: int, delay_s: float = 0.05, min_life_s: float = 1.0,
                 max_life_s: float = 6.0, seed: int = 13) -> None:
        self.port = port
        self.target_port = target_port
        self.delay_s = delay_s
        self.min_life_s, self.max_life_s = min_life_s, max_life_s
        self.random = random.Random(seed)
        self.dropping = threading.Event()
        self.connections = 0
        self.dropped = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="lossy-proxy")
        self._server: asyncio.base_events.Server | None = None

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.close()
            return
        life = self.random.uniform(self.min_life_s, self.max_life_s) if self.dropping.is_set() else None
        pipes = [asyncio.ensure_future(self._pipe(client_reader, upstream_writer)),
                 asyncio.ensure_future(self._pipe(upstream_reader, client_writer))]
        _, pending = await asyncio.wait(pipes, timeout=life, return_when=asyncio.FIRST_COMPLETED)
        if pending and life is not None:
            self.dropped += 1
        for task in pending:
            task.cancel()
        for writer in (client_writer, upstream_writer):
            writer.transport.abort()  # no FIN, no flush: as a broken link, not a polite close

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65536):
            await asyncio.sleep(self.delay_s)
            writer.write(chunk)
            await writer.drain()


# --- the data and the pipeline ------------------------------------------------------------------------


def higgs_slice(limit: int) -> list[Interaction]:
    """The first `limit` events of the real Higgs file, read with plain Python."""
    out: list[Interaction] = []
    with gzip.open(HIGGS, "rt") as handle:
        for n, line in enumerate(handle):
            if n >= limit:
                break
            actor, target, ts, kind = line.split()
            out.append((actor, target, int(ts) * 1000, HIGGS_KIND[kind]))
    return out


def write_slice(path: Path, limit: int) -> Path:
    with gzip.open(HIGGS, "rb") as source, open(path, "wb") as out:
        for n, line in enumerate(source):
            if n >= limit:
                break
            out.write(line)
    return path


def run_env(settings: Settings) -> dict[str, str]:
    names = ("kafka_bootstrap", "redis_url", "topic", "dlq_topic", "flags_topic", "group", "key_prefix")
    return {**os.environ, **{f"CLOUT_{name.upper()}": str(getattr(settings, name)) for name in names}}


@dataclass
class Run:
    """One `clout run` process (its own session, so a SIGKILL takes its Prism runner along)."""

    process: subprocess.Popen
    log: Path
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def start(cls, settings: Settings, log: Path, *flags: str, idle_s: float = IDLE_S) -> Run:
        command = [sys.executable, "-m", "clout.cli", "run", "--from-beginning", "--stop-when-idle", str(idle_s),
                   *flags]
        handle = open(log, "ab")  # noqa: SIM115 (the child holds it; closed on wait)
        process = subprocess.Popen(command, env=run_env(settings), start_new_session=True,
                                   stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        handle.close()
        return cls(process, log)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TrialFailed(f"clout run did not finish within {timeout:.0f} s:\n{self.tail()}") from None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, lines: int = 25) -> str:
        return "\n".join(self.output().splitlines()[-lines:])


class TrialFailed(AssertionError):
    """A fault trial whose pipeline or check did not come out as required; the message says how."""


def wait_for(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.2,
             alive: Callable[[], bool] | None = None) -> float:
    """Waits until `condition()`; returns the seconds it took. Raises TrialFailed on the deadline."""
    started = time.monotonic()
    while not condition():
        if alive is not None and not alive():
            raise TrialFailed(f"gave up waiting for {what}: the process ended")
        if time.monotonic() - started > timeout:
            raise TrialFailed(f"gave up waiting for {what} after {timeout:.0f} s")
        time.sleep(poll)
    return time.monotonic() - started


# --- the check -------------------------------------------------------------------------------------------


@dataclass
class Verdict:
    """What the check found after a fault: empty `problems` means the trial survived."""

    published: int
    repeats: int  # records that repeat an earlier record's event_id (and bytes)
    lost: int  # valid events in the topic that are neither counted in Redis nor dead-lettered
    dead_letters: int
    lag: int
    problems: list[str]


@dataclass
class Published:
    """The topic read back: each event_id's event once, and how often a record repeated an event_id
    (a producer retry after a broker failure may write a batch twice; the pipeline drops repeats)."""

    events: list[Interaction]
    repeats: int
    conflicting: int  # repeats whose bytes differ from the first record with that event_id


def topic_events(settings: Settings) -> Published:
    """What was published, read back with a plain consumer."""
    consumer = KafkaConsumer(**settings.kafka_client_config(), enable_auto_commit=False, consumer_timeout_ms=5000)
    try:
        partitions = [TopicPartition(settings.topic, p) for p in consumer.partitions_for_topic(settings.topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        first: dict[bytes, bytes] = {}
        events: list[Interaction] = []
        repeats = conflicting = 0
        deadline = time.monotonic() + 120
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise TrialFailed("could not read the topic back within 120 s")
            for records in consumer.poll(timeout_ms=1000).values():
                for record in records:
                    event_id = dict(record.headers).get("event_id", b"")
                    if event_id in first:
                        repeats += 1
                        conflicting += first[event_id] != record.value
                        continue
                    first[event_id] = record.value
                    value = orjson.loads(record.value)
                    events.append((value["actor"], value["target"], value["ts"], value["kind"]))
        return Published(events, repeats, conflicting)
    finally:
        consumer.close()


def group_lag(settings: Settings) -> int:
    """Records in the topic past the pipeline group's committed offsets."""
    consumer = KafkaConsumer(**settings.kafka_client_config(), group_id=settings.group, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(settings.topic, p) for p in consumer.partitions_for_topic(settings.topic)]
        ends = consumer.end_offsets(partitions)
        return sum(ends[tp] - (consumer.committed(tp) or 0) for tp in partitions)
    finally:
        consumer.close()


def wait_lag_zero(settings: Settings, timeout: float = 60) -> float:
    """Offsets are committed when Beam finalizes a checkpoint, which may come just after the run's end."""
    def zero() -> bool:
        try:
            return group_lag(settings) == 0
        except KafkaError:
            return False

    return wait_for(zero, timeout, "the consumer lag to return to zero", poll=1.0)


def dead_letters(settings: Settings) -> int:
    consumer = KafkaConsumer(**settings.kafka_client_config(), enable_auto_commit=False)
    try:
        partitions = [TopicPartition(settings.dlq_topic, p)
                      for p in consumer.partitions_for_topic(settings.dlq_topic) or ()]
        ends, starts = consumer.end_offsets(partitions), consumer.beginning_offsets(partitions)
        return sum(ends[tp] - starts[tp] for tp in partitions)
    finally:
        consumer.close()


def counter(output: str, name: str) -> int:
    """A Beam counter from `clout run`'s summary line (0 when absent)."""
    summary = next((line for line in reversed(output.splitlines()) if line.startswith("clout run done")), "")
    for part in summary.split(": ", 1)[-1].split(", "):
        key, _, value = part.partition(" ")
        if key == name:
            return int(value.replace(",", ""))
    return 0


def check(settings: Settings, client: redis.Redis, networkx_windows: int = 1) -> Verdict:
    """Redis against the independent recount of the topic: counts per window and user, reach and
    amplification, PageRank of the busiest windows against networkx; and the group's lag."""
    published = topic_events(settings)
    events = published.events
    problems: list[str] = []
    if published.conflicting:
        problems.append(f"{published.conflicting} records repeat an event_id with other content")
    expected = recount(events)
    stored = read_back(client, settings.key_prefix)
    problems += differences(expected, stored)
    influence = read_influence(client, settings.key_prefix)
    problems += influence_differences(recount_influence_parts(events), influence)
    problems += pagerank_differences(events, influence, networkx_windows)
    lag = group_lag(settings)
    if lag:
        problems.append(f"consumer lag {lag} after the run")
    letters = dead_letters(settings)
    lost = max(0, missing_events(expected, stored) - letters)
    return Verdict(len(events), published.repeats, lost, letters, lag, problems)


def missing_events(expected: dict[str, dict], stored: dict[str, dict], size_s: int = 3600) -> int:
    """Events the recount has and Redis does not: every event is sent by its actor in exactly one of
    the windows that start at a multiple of the window size, so a shortfall there is a lost event."""
    missing = 0
    for window, users in expected.items():
        if int(window.split("-")[0]) % size_s:
            continue
        got = stored.get(window, {})
        missing += sum(max(0, user["out"] - got.get(name, {}).get("out", 0)) for name, user in users.items())
    return missing


def pagerank_differences(events: list[Interaction], influence: dict[str, dict[str, dict]],
                         windows: int) -> list[str]:
    """The busiest windows' network part against networkx.pagerank on edges rebuilt from the events."""
    out = []
    busiest = sorted(influence, key=lambda w: len(influence[w]), reverse=True)[:windows]
    for window in busiest:
        reference = networkx_pagerank(events, window)
        worst = max((abs(reference[u] - v["network"]) / reference[u] for u, v in influence[window].items()),
                    default=0.0)
        if worst > 1e-3:
            out.append(f"window {window}: PageRank differs from networkx by up to {worst:.2%}")
    return out


# --- a trial's environment ------------------------------------------------------------------------------


@dataclass
class FaultStack:
    """The harness's broker, Redis and proxy, plus the settings that point `clout` at them."""

    settings: Settings
    broker: Broker
    redis: RedisServer
    proxy_port: int
    state_dir: Path

    def trial_settings(self, through_proxy: bool = False) -> Settings:
        """A topic, group and key prefix of the trial's own."""
        tag = uuid.uuid4().hex[:8]
        bootstrap = f"127.0.0.1:{self.proxy_port}" if through_proxy else self.settings.kafka_bootstrap
        return self.settings.replace(topic=f"f{tag}.interactions", dlq_topic=f"f{tag}.interactions.dlq",
                                     flags_topic=f"f{tag}.flags", group=f"g{tag}", key_prefix=f"fault{tag}",
                                     kafka_bootstrap=bootstrap)

    def proxy(self, **options: float) -> LossyProxy:
        return LossyProxy(self.proxy_port, self.broker.ports.proxied, **options)

    def client(self) -> redis.Redis:
        return self.redis.client()


@contextmanager
def fault_stack(ports: Ports, state_dir: Path) -> Iterator[FaultStack]:
    """Starts a broker and a Redis of the harness's own (fresh state each time) and stops them after."""
    shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.mkdir(parents=True)
    settings = load_settings(overrides={
        "kafka_port": ports.kafka, "kafka_controller_port": ports.controller, "redis_port": ports.redis,
        "state_dir": state_dir, "kafka_bootstrap": f"127.0.0.1:{ports.kafka}",
        "redis_url": f"redis://127.0.0.1:{ports.redis}/0"})
    proxy_port = ports.proxy
    broker = Broker(settings, ports, proxy_port)
    server = RedisServer(ports.redis, state_dir / "redis")
    broker.start()
    try:
        server.start()
        try:
            yield FaultStack(settings, broker, server, proxy_port, state_dir)
        finally:
            server.stop()
    finally:
        broker.stop()


def publish_file(settings: Settings, path: Path) -> None:
    """`clout ingest file` as a user runs it (topics first)."""
    create_topics(settings)
    done = subprocess.run([sys.executable, "-m", "clout.cli", "ingest", "file", str(path), "--format", "snap-higgs"],
                          env=run_env(settings), capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise TrialFailed(f"clout ingest failed: {done.stderr[-2000:]}")
