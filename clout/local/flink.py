"""Flink in the local stack: a real session cluster (one JobManager, one TaskManager with two slots),
Beam's portable job server for it, and a Beam Python worker pool, all on loopback.

Maven Central serves neither `flink-dist` nor a Beam Flink job-server jar, so the cluster runs from
the published Flink jars with `java -cp` (the entry points the dist scripts call), and the job server
is a manifest-only jar whose `Class-Path` lists the runner's jars (`--flink_job_server_jar` and
`java -jar` both accept it). The runner is Beam 2.62 (the newest Maven Central serves with all its
dependencies) while the Python SDK is 2.77: the portable protocol between them is what the tests
exercise. On their own cluster users run the job server that matches their SDK.

Python runs in the worker pool (`--environment_type=EXTERNAL`): it starts each SDK worker as its own
process, so two slots give two Python processes and both cores.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import threading
import time
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

from clout.settings import Settings

FLINK_VERSION = "1.19.0"
BEAM_RUNNER_VERSION = "2.62.0"
SLOTS = 2
TASKMANAGER_ID_FILE = "taskmanager.id"  # the resource id of the TaskManager started last, to know it registered
Say = Callable[[str], None]
FLINK_DIR = Path(__file__).resolve().parent / "flink"  # the pom and log4j config, as package data
JOB_SERVER_MAIN = "org.apache.beam.runners.flink.FlinkJobServerDriver"


def flink_libs(settings: Settings) -> Path:
    return settings.cache_dir / f"flink-{FLINK_VERSION}-beam-{BEAM_RUNNER_VERSION}" / "libs"


def job_server_jar(settings: Settings) -> Path:
    return flink_libs(settings) / f"beam-flink-job-server-{BEAM_RUNNER_VERSION}.jar"


def install_flink(settings: Settings) -> Path:
    """Fetch Flink and Beam's Flink runner with mvn (once), then write the job server's manifest jar."""
    from clout.local.stack import _require, _run

    libs = flink_libs(settings)
    if job_server_jar(settings).exists():
        return libs
    _require("mvn", "Maven fetches Flink and Beam's Flink runner from Maven Central (apt-get install maven)")
    _require("java", "Flink runs on Java 11 or 17 (apt-get install openjdk-17-jre-headless)")
    partial = libs.with_name("libs.partial")
    shutil.rmtree(partial, ignore_errors=True)
    _run(["mvn", "-q", "-B", "-f", str(FLINK_DIR / "pom.xml"), "dependency:copy-dependencies",
          f"-DoutputDirectory={partial}"], "fetching Flink and Beam runner jars with mvn")
    _write_manifest_jar(partial / job_server_jar(settings).name, sorted(p.name for p in partial.glob("*.jar")))
    shutil.rmtree(libs, ignore_errors=True)
    partial.rename(libs)
    return libs


def _write_manifest_jar(target: Path, class_path: list[str]) -> None:
    """A jar holding only a manifest: `java -jar` then runs the job server from its sibling jars."""
    lines = ["Manifest-Version: 1.0", f"Main-Class: {JOB_SERVER_MAIN}", "Class-Path: " + " ".join(class_path)]
    with zipfile.ZipFile(target, "w") as jar:
        jar.writestr("META-INF/MANIFEST.MF", "".join(_manifest_line(line) for line in lines) + "\r\n")


def _manifest_line(line: str) -> str:
    """Manifest lines are at most 72 bytes; longer ones continue on lines that start with a space."""
    data = line.encode()
    chunks = [data[:72]] + [data[i:i + 71] for i in range(72, len(data), 71)]
    return "\r\n ".join(c.decode() for c in chunks) + "\r\n"


# --- the servers ----------------------------------------------------------------------------------


def flink_servers(settings: Settings) -> list:
    """JobManager, TaskManager, job server and worker pool, in start order."""
    from clout.local.stack import Server

    state = settings.state_dir.resolve()
    home = state / "flink"
    conf = home / "conf"

    def prepare() -> None:
        install_flink(settings)
        conf.mkdir(parents=True, exist_ok=True)
        (home / "artifacts").mkdir(exist_ok=True)
        (conf / "flink-conf.yaml").write_text(_flink_conf(settings, home))
        shutil.copy(FLINK_DIR / "log4j2.properties", conf / "log4j2.properties")

    def java(name: str, main: str, *args: str, jvm: tuple[str, ...] = ("-Xmx512m",)) -> list[str]:
        return ["java", *jvm, "-Djava.awt.headless=true", f"-Dlog4j.configurationFile={conf / 'log4j2.properties'}",
                f"-Dclout.flink.log={home / (name + '.log')}", "-cp", f"{flink_libs(settings)}/*", main, *args]

    def taskmanager() -> list[str]:
        jvm, dynamic = _taskmanager_resources(settings, conf)
        resource_id = f"clout-taskmanager-{time.time_ns()}"
        (home / TASKMANAGER_ID_FILE).write_text(resource_id)
        return java("taskmanager", "org.apache.flink.runtime.taskexecutor.TaskManagerRunner",
                    "--configDir", str(conf), *dynamic, "-D", f"taskmanager.resource-id={resource_id}",
                    jvm=tuple(jvm))

    job_port = settings.flink_job_server_port
    return [
        Server("flink-jobmanager", settings.flink_rest_port, state,
               lambda: java("jobmanager", "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint",
                            "--configDir", str(conf), "--executionMode", "cluster", jvm=("-Xmx768m",)),
               prepare, lambda: _rest(settings, "/overview") is not None),
        Server("flink-taskmanager", settings.flink_rest_port, state, taskmanager, prepare,
               lambda: _only_our_taskmanager_registered(settings, home / TASKMANAGER_ID_FILE)),
        Server("flink-job-server", job_port, state,
               lambda: ["java", "-Xmx512m", f"-Dlog4j.configurationFile={conf / 'log4j2.properties'}",
                        f"-Dclout.flink.log={home / 'job-server.log'}", "-jar", str(job_server_jar(settings)),
                        f"--flink-master=127.0.0.1:{settings.flink_rest_port}", "--job-host=127.0.0.1",
                        f"--job-port={job_port}", f"--artifact-port={job_port + 1}",
                        f"--expansion-port={job_port + 2}", f"--artifacts-dir={home / 'artifacts'}",
                        f"--flink-conf-dir={conf}"],
               prepare, lambda: _listening(job_port)),
        Server("flink-worker-pool", settings.flink_worker_pool_port, state,
               # The pool starts each SDK worker as `python ...` from PATH: this interpreter's folder first.
               lambda: ["env", f"PATH={Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
                        sys.executable, "-m", "clout.local.flink", "worker-pool", str(settings.flink_worker_pool_port)],
               lambda: None, lambda: _listening(settings.flink_worker_pool_port)),
    ]


def _flink_conf(settings: Settings, home: Path) -> str:
    """A session cluster on loopback. Parent-first class loading: the cluster's classpath already holds
    the runner's jars, and the job server ships the same ones with each job."""
    values = {
        "jobmanager.rpc.address": "127.0.0.1",
        "jobmanager.bind-host": "127.0.0.1",
        "jobmanager.rpc.port": settings.flink_rpc_port,
        "rest.address": "127.0.0.1",
        "rest.bind-address": "127.0.0.1",
        "rest.port": settings.flink_rest_port,
        "taskmanager.host": "127.0.0.1",
        "taskmanager.bind-host": "127.0.0.1",
        "taskmanager.numberOfTaskSlots": SLOTS,
        "taskmanager.memory.process.size": "1600m",
        "taskmanager.memory.managed.fraction": 0.1,
        "jobmanager.memory.process.size": "1024m",
        "parallelism.default": 1,
        "classloader.resolve-order": "parent-first",
        "classloader.check-leaked-classloader": "false",
        "io.tmp.dirs": str(home / "tmp"),
        "web.tmpdir": str(home / "web"),
        "state.checkpoints.dir": f"file://{home / 'checkpoints'}",
        "state.savepoints.dir": f"file://{home / 'savepoints'}",
        "restart-strategy.type": "none",  # a failed job fails `clout run`; restarts resume from Redis progress
        "heartbeat.interval": 2000,  # a killed TaskManager is noticed in seconds, not the default 50
        "heartbeat.timeout": 10000,
    }
    return "".join(f"{key}: {value}\n" for key, value in values.items())


def _taskmanager_resources(settings: Settings, conf: Path) -> tuple[list[str], list[str]]:
    """The TaskManager's JVM memory flags and resource options, computed by Flink itself (what the dist
    scripts do with BashJavaUtils), so they always agree with the configured process size."""
    import subprocess

    from clout.local.stack import StackError

    result = subprocess.run(["java", "-cp", f"{flink_libs(settings)}/*",
                             "org.apache.flink.runtime.util.bash.BashJavaUtils", "GET_TM_RESOURCE_PARAMS",
                             "--configDir", str(conf)], capture_output=True, text=True)
    marker = "BASH_JAVA_UTILS_EXEC_RESULT:"
    found = [line[len(marker):] for line in result.stdout.splitlines() if line.startswith(marker)]
    if result.returncode != 0 or len(found) < 2:
        raise StackError(f"Flink could not compute the TaskManager's memory (exit {result.returncode}):\n"
                         f"{result.stdout[-1500:]}{result.stderr[-1500:]}")
    return found[0].split(), found[1].split()


def _only_our_taskmanager_registered(settings: Settings, id_file: Path) -> bool:
    """The TaskManager we started last has registered its slots, and no other is listed.

    After a TaskManager is killed the JobManager lists it, slots and all, until its heartbeat times
    out; counting slots would call the stack ready before the new one joins, and a job submitted then
    could be scheduled on the dead one.
    """
    try:
        ours = id_file.read_text().strip()
    except OSError:
        return False
    listed = (_rest(settings, "/taskmanagers") or {}).get("taskmanagers", [])
    return [(tm.get("id"), tm.get("slotsNumber", 0) >= SLOTS) for tm in listed] == [(ours, True)]


def _rest(settings: Settings, path: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{settings.flink_rest_port}{path}", timeout=2) as answer:
            return json.loads(answer.read())
    except (OSError, ValueError):
        return None


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def running_jobs(settings: Settings) -> list[dict]:
    """Jobs the cluster is running (id, name, state), for status and for tests that cancel them."""
    jobs = (_rest(settings, "/jobs/overview") or {}).get("jobs", [])
    return [{"id": j["jid"], "name": j["name"], "state": j["state"]} for j in jobs if j["state"] == "RUNNING"]


def running_job_named(settings: Settings, job_name: str) -> str | None:
    """The id of the running job whose name holds `job_name` (Beam appends a suffix of its own)."""
    return next((j["id"] for j in running_jobs(settings) if job_name in j["name"]), None)


def job_vertices(settings: Settings, job_id: str) -> list[dict]:
    """Each vertex of a job with its status and records read and written: where a stuck job stands."""
    vertices = (_rest(settings, f"/jobs/{job_id}") or {}).get("vertices", [])
    return [{"name": v["name"], "status": v["status"], "read": v["metrics"].get("read-records"),
             "written": v["metrics"].get("write-records")} for v in vertices]


def cancel_job(settings: Settings, job_id: str) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{settings.flink_rest_port}/jobs/{job_id}?mode=cancel",
                                     method="PATCH")
    urllib.request.urlopen(request, timeout=5).close()


def stop_flink(settings: Settings, say: Say = print) -> None:
    """Stop the Flink pieces only (worker pool first), leaving Kafka and Redis up; ours only, by pid file."""
    from clout.local.stack import _terminate, running_pid

    for server in reversed(flink_servers(settings)):
        pid = running_pid(server)
        if pid:
            _terminate(pid)
            say(f"{server.name}: stopped (pid {pid})")
        server.pid_file.unlink(missing_ok=True)


def require_running(settings: Settings) -> None:
    """Fail with what to do when the local cluster is not there (before Beam gives a gRPC timeout)."""
    from clout.local.stack import StackError, running_pid

    missing = [s.name for s in flink_servers(settings) if not (running_pid(s) and s.answers())]
    if missing:
        raise StackError(f"the local Flink stack is not running ({', '.join(missing)}); "
                         "start it with `clout stack up --flink` (same settings and --state-dir)")


# --- options for `clout run --flink` --------------------------------------------------------------


def flink_beam_args(settings: Settings, job_name: str, parallelism: int = SLOTS,
                    checkpointing_ms: int = 10_000) -> list[str]:
    """Beam options that submit to the local stack's cluster: its job server, the worker pool (one
    Python process per slot), and checkpoints. Checkpoints are not optional here: Flink finalizes the
    source's checkpoints (offset commits) only when it takes its own, and without them Beam's runner
    shuts the Impulse source down at once, which drops the Kafka reader's pending resumptions, so
    nothing is read (what issue 11 saw). With them the Impulse never finishes, so a job does not end
    by itself either: `DrainWhenRead` ends a --stop-when-idle run."""
    return ["--runner=PortableRunner", f"--job_endpoint=127.0.0.1:{settings.flink_job_server_port}",
            "--environment_type=EXTERNAL", f"--environment_config=127.0.0.1:{settings.flink_worker_pool_port}",
            f"--parallelism={parallelism}", f"--sdk_worker_parallelism={parallelism}",
            f"--checkpointing_interval={checkpointing_ms}", f"--job_name={job_name}"]


class DrainWhenRead(threading.Thread):
    """Ends a --stop-when-idle job on Flink: stop it with a drain (Flink's stop-with-savepoint --drain)
    once it has read everything. The drain sends the final watermark through every operator, so each
    window's last pane is written before the job is FINISHED and Beam reports DONE.

    "Read everything" is the group's committed offsets at the topic's end, seen for `idle_s` after this
    job has completed two checkpoints: offsets are committed when Flink finalizes a checkpoint, so
    before that the group still shows what an earlier (perhaps killed) run committed."""

    def __init__(self, settings: Settings, job_name: str, idle_s: float, poll_s: float = 2.0) -> None:
        super().__init__(daemon=True, name="clout-flink-drain")
        self.settings, self.job_name, self.idle_s, self.poll_s = settings, job_name, idle_s, poll_s
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(**self.settings.kafka_client_config(), group_id=self.settings.group,
                                 enable_auto_commit=False)
        try:
            read_since: float | None = None
            while not self._stop_event.wait(self.poll_s):
                job = running_job_named(self.settings, self.job_name)
                done = job is not None and self._checkpoints(job) >= 2 and self._all_committed(consumer)
                read_since = (read_since or time.monotonic()) if done else None
                if job is not None and read_since is not None and time.monotonic() - read_since >= self.idle_s:
                    self._drain(job)
                    return
        finally:
            consumer.close()

    def _checkpoints(self, job: str) -> int:
        counts = (_rest(self.settings, f"/jobs/{job}/checkpoints") or {}).get("counts", {})
        return int(counts.get("completed", 0))

    def _all_committed(self, consumer: object) -> bool:
        from kafka import TopicPartition

        topic = self.settings.topic
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        ends = consumer.end_offsets(partitions)
        return bool(partitions) and all((consumer.committed(tp) or 0) >= ends[tp] for tp in partitions)

    def _drain(self, job: str) -> None:
        print(f"clout run: every partition read and committed; draining Flink job {job}", file=sys.stderr, flush=True)
        body = json.dumps({"drain": True}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.settings.flink_rest_port}/jobs/{job}/stop",
                                         data=body, method="POST", headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=10).close()


START_WATCH_S = 60.0
START_ATTEMPTS = 3


def started_stuck(vertices: list[dict], backlog: int, running_for_s: float, after_s: float) -> bool:
    """Whether a job is stuck at its start: RUNNING for `after_s` with records waiting in Kafka, and no
    vertex has read or written one. A healthy job's source stage hands its first batch on within seconds."""
    return bool(vertices) and not records_moved(vertices) and backlog > 0 and running_for_s >= after_s


def records_moved(vertices: list[dict]) -> bool:
    return any((v.get("read") or 0) or (v.get("written") or 0) for v in vertices)


class StartWatch(threading.Thread):
    """Cancels a job that starts stuck, so `clout run --flink` submits it again.

    About one start in ten here (Flink 1.19, Beam's 2.62 runner, the 2.77 SDK), a job comes up
    RUNNING and checkpoints, but its Kafka source never resumes after its first bundle: every task
    waits in its mailbox and both SDK workers are idle, so it reads nothing, for ever. The cause is
    in the runner, not found; a resubmitted job reads normally. Nothing was read, so nothing was
    written and a new start is exact. The watch ends once the job has moved a record."""

    def __init__(self, settings: Settings, job_name: str, after_s: float = START_WATCH_S,
                 poll_s: float = 2.0) -> None:
        super().__init__(daemon=True, name="clout-flink-start-watch")
        self.settings, self.job_name, self.after_s, self.poll_s = settings, job_name, after_s, poll_s
        self.cancelled = threading.Event()
        self._planned: dict[int, int] | None = None
        self._stop_event = threading.Event()

    def begin(self, start_offsets: dict[int, int]) -> None:
        """Called with the run's planned start offsets (partition -> offset), just before submission."""
        self._planned = dict(start_offsets)
        self.start()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(**self.settings.kafka_client_config(), group_id=None, enable_auto_commit=False)
        try:
            running_since: float | None = None
            while not self._stop_event.wait(self.poll_s):
                job = running_job_named(self.settings, self.job_name)
                if job is None:
                    continue
                running_since = running_since or time.monotonic()
                vertices = job_vertices(self.settings, job)
                running_for_s = time.monotonic() - running_since
                if records_moved(vertices):
                    return
                if running_for_s < self.after_s:
                    continue  # Kafka is asked for the backlog only once a stuck start is possible
                if started_stuck(vertices, self._backlog(consumer), running_for_s, self.after_s):
                    print(f"clout run: Flink job {job} has read nothing in {self.after_s:g} s with records "
                          "waiting (a stuck start); cancelling it to submit it again", file=sys.stderr, flush=True)
                    self.cancelled.set()
                    cancel_job(self.settings, job)
                    return
        finally:
            consumer.close()

    def _backlog(self, consumer: object) -> int:
        from kafka import TopicPartition

        planned = self._planned or {}
        ends = consumer.end_offsets([TopicPartition(self.settings.topic, p) for p in planned])
        return sum(max(end - planned[tp.partition], 0) for tp, end in ends.items())


WORKER_STATE_CACHE_BYTES = 256 << 20


def serve_worker_pool(port: int) -> None:
    """Beam's worker pool, with a state cache in each SDK worker.

    `python -m apache_beam.runners.worker.worker_pool_main` starts workers with the state cache off,
    so every read of Beam state (the pipeline keeps its window totals and graph context there) is a
    gRPC round trip to the TaskManager. Each worker is its own process (`use_process`).
    """
    import time

    from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer

    address, server = BeamFnExternalWorkerPoolServicer.start(
        use_process=True, port=port, state_cache_size=WORKER_STATE_CACHE_BYTES, data_buffer_time_limit_ms=-1)
    print(f"clout worker pool on {address}, state cache {WORKER_STATE_CACHE_BYTES >> 20} MiB per worker", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        server.stop(0)


if __name__ == "__main__":
    if sys.argv[1:2] != ["worker-pool"] or len(sys.argv) != 3:
        sys.exit("usage: python -m clout.local.flink worker-pool PORT")
    serve_worker_pool(int(sys.argv[2]))
