"""The local stack: a real single-node Kafka (KRaft) broker, a real Redis server, and the Prism runner
(plus Debian's chromium, which the dashboard's browser test drives).

Installs go into the user cache (``~/.cache/clout``) so every clone on the machine shares them;
running state (data, logs, pid files) goes into the settings' ``state_dir``. ``up`` is idempotent and
``down`` stops only processes whose pid files ``up`` wrote and whose command line is still ours.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from clout.settings import Settings

KAFKA_VERSION = "4.1.1"
BEAM_VERSION = "2.77.0"
KAFKA_DIR = Path(__file__).resolve().parent / "kafka"  # the broker's pom, config and log4j, as package data


class StackError(RuntimeError):
    """Something the local stack needs is missing or in the way; the message says what and how to fix it."""


# --- installs -------------------------------------------------------------------------------------


def kafka_libs(settings: Settings) -> Path:
    return settings.cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"


def prism_binary(settings: Settings) -> Path:
    return settings.cache_dir / "bin" / f"prism-{BEAM_VERSION}-clout{PRISM_PATCH_LEVEL}"


def install_kafka(settings: Settings) -> Path:
    """Fetch the broker jars from Maven Central with mvn (once; the cache is reused)."""
    libs = kafka_libs(settings)
    if (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
        return libs
    _require("mvn", "Maven fetches the Kafka broker from Maven Central (apt-get install maven)")
    _require("java", "the Kafka broker runs on Java 17+ (apt-get install openjdk-17-jre-headless)")
    partial = libs.with_name("libs.partial")
    shutil.rmtree(partial, ignore_errors=True)
    _run(["mvn", "-q", "-B", "-f", str(KAFKA_DIR / "pom.xml"), "dependency:copy-dependencies",
          f"-DoutputDirectory={partial}"], "fetching Kafka jars with mvn")
    partial.rename(libs)
    return libs


# Prism 2.77's changes to its own source, each (file, code it replaces, replacement); `prism_binary`
# names the patch level so a binary built without them is never reused.
#  1. Prism asks a runner-side transform (a Flatten) for its progress as if it were an SDK bundle when
#     the progress ticker fires before the loop sees the transform done (under load: 100 ms without
#     the CPU), and the nil worker panics the stage, failing the job. A guard skips it.
#  2. Prism asks every running bundle for its progress every 100 ms at least. With bundle splits off
#     (prism_args) progress only feeds live metrics, yet each answer makes the one Python worker
#     gather every metric of the bundle: a quarter of its time on a replay. Five seconds apart at most.
PRISM_PATCH_LEVEL = 2
_STAGE = "go/pkg/beam/runners/prism/internal/stage.go"
PRISM_PATCHES = (
    (_STAGE, "\t\tcase <-progTick.C:\n\t\t\tticked = true\n",
     "\t\tcase <-progTick.C:\n\t\t\tticked = true\n"
     "\t\t\tif wk == nil { // a runner-side transform: there is no SDK bundle to ask (clout patch)\n"
     "\t\t\t\tcontinue progress\n\t\t\t}\n"),
    (_STAGE, "\tminimumProgTick = 100 * time.Millisecond\n",
     "\tminimumProgTick = 5 * time.Second // clout patch: progress only feeds live metrics\n"),
)


def install_prism(settings: Settings) -> Path:
    """Build Beam's Prism runner from its Go module (it cannot be downloaded as a binary offline), with
    `PRISM_PATCHES` applied to a copy of the source."""
    target = prism_binary(settings)
    if target.exists():
        return target
    _require("go", "Beam's Prism runner is built from source with Go (https://go.dev/dl)")
    module = f"github.com/apache/beam/sdks/v2@v{BEAM_VERSION}"
    env = {**os.environ, "GOFLAGS": "-buildvcs=false"}
    downloaded = _run(["go", "mod", "download", "-json", module], "fetching Beam's Go module", env=env)
    source = target.parent / f"prism-{BEAM_VERSION}-source"
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(json.loads(downloaded)["Dir"], source, copy_function=shutil.copyfile)
    for folder, _, _ in os.walk(source):
        os.chmod(folder, 0o755)  # the module cache's folders are read-only; the copy is ours to remove
    try:
        for relative, before, after in PRISM_PATCHES:
            _patch(source / relative, before, after)
        _run(["go", "build", "-o", str(target), "./go/cmd/prism"], "building Prism with go build", env=env,
             cwd=source)
    finally:
        shutil.rmtree(source, ignore_errors=True)
    return target


def _patch(path: Path, before: str, after: str) -> None:
    text = path.read_text()
    if text.count(before) != 1:
        raise StackError(f"cannot patch {path}: the code it fixes is not there exactly once (Beam changed?)")
    path.write_text(text.replace(before, after))


def install_redis() -> str:
    """Use a redis-server on PATH, or install Debian's package when running as root."""
    return _debian_package("redis-server", "redis-server")


def install_chromium() -> str:
    """Use a chromium on PATH, or install Debian's package when running as root (the dashboard's browser test)."""
    return _debian_package("chromium", "chromium")


def _debian_package(program: str, package: str) -> str:
    found = shutil.which(program)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise StackError(f"{program} is not on PATH; install it (Debian: sudo apt-get install {package})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}  # no debconf question may stop `make setup`
    _run(["apt-get", "update", "-q"], "apt-get update", env=env)
    _run(["apt-get", "install", "-y", "-q", package], f"installing {package} with apt-get", env=env)
    return shutil.which(program) or f"/usr/bin/{program}"


def install_all(settings: Settings, say: Callable[[str], None] = print, flink: bool = False) -> None:
    say(f"kafka  {install_kafka(settings)}")
    if flink:
        from clout.local.flink import install_flink

        say(f"flink  {install_flink(settings)}")
    say(f"redis  {install_redis()}")
    say(f"prism  {install_prism(settings)}")
    say(f"chromium {install_chromium()}")


# --- servers --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """One server process the stack owns: how to start it, and how to know it really answers."""

    name: str
    port: int
    state_dir: Path
    command: Callable[[], list[str]]
    prepare: Callable[[], None]
    answers: Callable[[], bool]

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"{self.name}.out"


def servers(settings: Settings, flink: bool = False) -> list[Server]:
    """Kafka and Redis; with `flink`, the Flink session cluster, Beam job server and worker pool too."""
    state = settings.state_dir.resolve()
    base = [_kafka_server(settings, state), _redis_server(settings, state)]
    if not flink:
        return base
    from clout.local.flink import flink_servers

    return base + flink_servers(settings)


def up(settings: Settings, say: Callable[[str], None] = print, timeout: float = 90.0, flink: bool = False) -> None:
    """Start whatever is not already running, then wait until every server answers."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    for server in servers(settings, flink):
        pid = running_pid(server)
        if pid:
            say(f"{server.name}: already running (pid {pid}, port {server.port})")
            continue
        if _port_taken(server.port) and not server.name.startswith("flink-taskmanager"):
            raise StackError(f"{server.name}: port {server.port} is already in use by another process; "
                             f"stop it or choose another port (CLOUT_{server.name.upper()}_PORT)")
        _start(server)
        say(f"{server.name}: started (pid {running_pid(server)}, port {server.port})")
        if server.name.startswith("flink-"):  # each Flink piece needs the one before it answering
            _wait_until_answers(server, timeout)
    for server in servers(settings, flink):
        _wait_until_answers(server, timeout)
        say(f"{server.name}: answering on 127.0.0.1:{server.port}")


def down(settings: Settings, say: Callable[[str], None] = print, flink: bool = False) -> None:
    """Stop only the processes `up` started (recorded pid and our command line); Flink first, if asked."""
    for server in reversed(servers(settings, flink)) if flink else servers(settings):
        pid = running_pid(server)
        if not pid:
            say(f"{server.name}: not running")
            server.pid_file.unlink(missing_ok=True)
            continue
        _terminate(pid)
        server.pid_file.unlink(missing_ok=True)
        say(f"{server.name}: stopped (pid {pid})")


def status(settings: Settings, flink: bool = False) -> dict[str, dict[str, object]]:
    return {
        s.name: {"pid": running_pid(s), "port": s.port, "answers": bool(running_pid(s)) and s.answers()}
        for s in servers(settings, flink)
    }


def running_pid(server: Server) -> int | None:
    """The recorded pid, if that process is alive and is still the one we started.

    The pid file holds the pid and the process's start time, so a recycled pid never matches.
    """
    try:
        pid, started = server.pid_file.read_text().split()
        alive = _start_time(int(pid)) == started and not _is_zombie(int(pid))
    except (OSError, ValueError):
        return None
    return int(pid) if alive else None


def _start_time(pid: int) -> str:
    """Field 22 of /proc/PID/stat: clock ticks since boot at which the process started."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[19]


# --- Kafka ----------------------------------------------------------------------------------------


def _kafka_server(settings: Settings, state: Path) -> Server:
    home = state / "kafka"
    config = home / "server.properties"

    def prepare() -> None:
        _require("java", "the Kafka broker runs on Java 17+ (apt-get install openjdk-17-jre-headless)")
        install_kafka(settings)
        home.mkdir(parents=True, exist_ok=True)
        template = (KAFKA_DIR / "server.properties").read_text()
        config.write_text(template.format(port=settings.kafka_port, controller_port=settings.kafka_controller_port,
                                          data_dir=home / "data"))
        if not (home / "data" / "meta.properties").exists():
            _run(_java(settings, home, "kafka.tools.StorageTool", "format", "--ignore-formatted",
                       "-t", _cluster_id(home), "-c", str(config)), "formatting Kafka storage")

    return Server(
        name="kafka",
        port=settings.kafka_port,
        state_dir=state,
        command=lambda: [*_java(settings, home, "kafka.Kafka", str(config))],
        prepare=prepare,
        answers=lambda: _kafka_answers(settings.kafka_port),
    )


def _java(settings: Settings, home: Path, main: str, *args: str) -> list[str]:
    return ["java", "-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={KAFKA_DIR / 'log4j2.properties'}",
            f"-Dclout.kafka.log={home / 'server.log'}",
            "-cp", f"{kafka_libs(settings)}/*", main, *args]


def _cluster_id(home: Path) -> str:
    """KRaft wants a base64 UUID; keep it with the data so a re-format is never needed."""
    id_file = home / "cluster.id"
    if not id_file.exists():
        id_file.write_text(new_cluster_id())
    return id_file.read_text().strip()


def new_cluster_id() -> str:
    """A random base64 UUID that does not start with '-', as Kafka's own `Uuid.randomUuid` makes them:
    `kafka-storage format -t -x...` would take such an id for an option (1 in 64 ids did; CI saw one)."""
    import base64

    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _kafka_answers(port: int) -> bool:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}", request_timeout_ms=3000)
    except (KafkaError, OSError, ValueError):
        return False
    try:
        return bool(admin.describe_cluster().get("brokers"))
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


# --- Redis ----------------------------------------------------------------------------------------


def _redis_server(settings: Settings, state: Path) -> Server:
    home = state / "redis"

    def command() -> list[str]:
        args = [install_redis(), "--bind", "127.0.0.1", "--port", str(settings.redis_port), "--dir", str(home),
                "--daemonize", "no", "--save", "", "--appendonly", "no", "--protected-mode", "yes",
                "--logfile", str(home / "redis.log")]
        if settings.redis_password:
            args += ["--requirepass", settings.redis_password.reveal()]
        return args

    return Server(
        name="redis",
        port=settings.redis_port,
        state_dir=state,
        command=command,
        prepare=lambda: home.mkdir(parents=True, exist_ok=True),
        answers=lambda: _redis_answers(settings),
    )


def _redis_answers(settings: Settings) -> bool:
    password = settings.redis_password.reveal() if settings.redis_password else None
    client = redis.Redis(host="127.0.0.1", port=settings.redis_port, password=password, socket_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


# --- process plumbing -----------------------------------------------------------------------------


def _start(server: Server) -> None:
    server.prepare()
    with open(server.log_file, "ab") as log:
        process = subprocess.Popen(server.command(), stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    server.pid_file.write_text(f"{process.pid} {_start_time(process.pid)}")
    time.sleep(0.3)
    if process.poll() is not None:
        server.pid_file.unlink(missing_ok=True)
        raise StackError(f"{server.name} exited at once (code {process.returncode}); see {server.log_file}:\n"
                         + _tail(server.log_file))


def _wait_until_answers(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running_pid(server):
            raise StackError(f"{server.name} stopped while starting; see {server.log_file}:\n" + _tail(server.log_file))
        if server.answers():
            return
        time.sleep(0.5)
    raise StackError(f"{server.name} did not answer on port {server.port} within {timeout:.0f}s; "
                     f"see {server.log_file}")


def _terminate(pid: int, grace: float = 20.0) -> None:
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def _port_taken(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _require(tool: str, why: str) -> None:
    if not shutil.which(tool):
        raise StackError(f"'{tool}' is not installed: {why}")


def _run(command: list[str], what: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """The command's output; a StackError naming `what` and showing the output's end if it fails."""
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd)
    if result.returncode != 0:
        raise StackError(f"{what} failed (exit {result.returncode}): {' '.join(command)}\n"
                         f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return result.stdout


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
