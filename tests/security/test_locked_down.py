"""A locked-down deployment on real servers: Kafka SASL_SSL with SCRAM-SHA-512, Redis over TLS with
least-privilege ACL users, secrets from mounted files; and no secret in any output of a full run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest
import redis

from clout.serving.client import CloutClient
from clout.serving.subscriber import FlagSubscriber
from clout.settings import Secret
from clout.store.client import RedisTarget
from clout.store.layout import KeyLayout

pytestmark = pytest.mark.servers
LINES = b"".join(b"%d %d %d RT\n" % (i % 17, 100 + i % 5, 1_341_100_972 + i * 7) for i in range(600))


def clout(stack, *args: str, user: str = "clout-writer", timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, **stack.environment(user)}
    env = {k: v for k, v in env.items() if not (k.startswith("CLOUT_") and k not in stack.environment(user)
                                                  and k != "CLOUT_TEST_PORT_OFFSET")}
    return subprocess.run([sys.executable, "-m", "clout.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_wrong_kafka_password_fails_at_once_with_a_clear_message(secured_stack) -> None:
    started = time.monotonic()
    bad = {**os.environ, **secured_stack.environment(), "CLOUT_KAFKA_SASL_PASSWORD_FILE": "",
           "CLOUT_KAFKA_SASL_PASSWORD": "not-the-password"}
    done = subprocess.run([sys.executable, "-m", "clout.cli", "topics", "create"], env=bad, capture_output=True,
                          text=True, timeout=120)
    took = time.monotonic() - started
    assert done.returncode == 2, done.stdout + done.stderr[-2000:]
    assert "refused the connection" in done.stderr and "invalid credentials" in done.stderr, done.stderr[-2000:]
    assert "kafka_sasl_password" in done.stderr and "not-the-password" not in done.stdout + done.stderr
    assert took < 15, f"took {took:.1f} s"


def test_plain_connections_are_refused(secured_stack) -> None:
    settings = secured_stack.settings()
    with pytest.raises(redis.ConnectionError):
        redis.Redis(host="127.0.0.1", port=int(settings.redis_url.rsplit(":", 1)[1].split("/")[0]),
                    socket_timeout=3).ping()


def test_writer_and_reader_have_least_privilege(secured_stack) -> None:
    writer = RedisTarget.from_settings(secured_stack.settings()).connect()
    reader = RedisTarget.from_settings(secured_stack.settings("clout-reader")).connect()
    try:
        writer.set("clout:v1:acl-probe", "1")
        writer.hset("clout:v1:win:{1-2}:meta", "users", 1)
        assert reader.get("clout:v1:acl-probe") == b"1"
        assert writer.smismember("clout:v1:acl-set", ["a"]) == [0]  # commands the pipeline sends on occasion only
        assert writer.hexists("clout:v1:win:{1-2}:meta", "users")
        for denied in (lambda: reader.set("clout:v1:acl-probe", "2"), lambda: reader.delete("clout:v1:acl-probe"),
                       lambda: reader.hset("clout:v1:win:{1-2}:meta", "users", 2),
                       lambda: reader.get("other:key"), lambda: writer.set("other:key", "x"),
                       lambda: writer.get("other:key"), lambda: writer.flushall(), lambda: writer.config_get("*"),
                       lambda: reader.keys("*"), lambda: writer.keys("*"),
                       lambda: writer.execute_command("ACL", "LIST")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                denied()
        assert reader.get("clout:v1:acl-probe") == b"1"
    finally:
        writer.delete("clout:v1:acl-probe", "clout:v1:win:{1-2}:meta")
        writer.close()
        reader.close()


def test_flag_subscriber_user_reads_flags_and_writes_nothing_else(secured_stack) -> None:
    """`clout-flags` (secured.flag_subscriber_rules): a consumer group on the flag stream, read access
    to the rest of `clout:*`, and no other write: not the stream's entries, not another key."""
    layout = KeyLayout("clout")
    stream, group = layout.flag_stream(), f"acl-{uuid.uuid4().hex[:8]}"
    writer = RedisTarget.from_settings(secured_stack.settings()).connect()
    subscriber = FlagSubscriber.from_settings(secured_stack.settings("clout-flags"), group, "c1", start="$")
    flags = subscriber.redis
    try:
        writer.set("clout:v1:acl-probe", "1")
        assert subscriber.ensure_group() is True and subscriber.ensure_group() is False
        flag = {"user": "u1", "window": "1000-4600", "detector": "burst", "score": 0.9, "reasons": ["u1 burst"],
                "evidence": {"engagers": 10.0}, "group": None}
        writer.xadd(stream, {"flag": orjson.dumps(flag)}, maxlen=10_000, approximate=True)  # as the pipeline does
        messages = subscriber.read(block_ms=2000)
        assert [(m.flag.user, m.flag.detector) for m in messages] == [("u1", "burst")]
        assert subscriber.ack(*messages) == 1
        assert subscriber.claim_stale(min_idle_ms=0) == []
        assert flags.get("clout:v1:acl-probe") == "1"
        other_stream = layout.root + ":not-the-flag-stream"
        for denied in (lambda: flags.xadd(stream, {"flag": "{}"}), lambda: flags.xtrim(stream, maxlen=0),
                       lambda: flags.delete(stream), lambda: flags.xgroup_destroy(stream, group),
                       lambda: flags.xgroup_setid(stream, group, "0"),
                       lambda: flags.xgroup_create(other_stream, group, mkstream=True),
                       lambda: flags.xreadgroup(group, "c1", {other_stream: ">"}),
                       lambda: flags.set("clout:v1:acl-probe", "2"), lambda: flags.delete("clout:v1:acl-probe"),
                       lambda: flags.hset("clout:v1:win:{1-2}:meta", "users", 2),
                       lambda: flags.get("other:key"), lambda: flags.set("other:key", "x"),
                       lambda: flags.keys("*"), lambda: flags.flushall()):
            with pytest.raises(redis.exceptions.NoPermissionError):
                denied()
        assert flags.get("clout:v1:acl-probe") == "1" and not writer.exists(other_stream)
    finally:
        writer.delete("clout:v1:acl-probe")
        writer.close()
        subscriber.close()


def test_full_run_authenticates_everywhere_and_prints_no_secret(secured_stack, tmp_path: Path) -> None:
    path = tmp_path / "edges.txt"
    path.write_bytes(LINES)
    outputs = []

    def step(*args: str, user: str = "clout-writer") -> subprocess.CompletedProcess:
        done = clout(secured_stack, *args, user=user)
        outputs.append(done.stdout + done.stderr)
        errors = [line for line in done.stderr.splitlines() if "Error" in line or "error:" in line][:20]
        assert done.returncode == 0, f"clout {' '.join(args)}:\n{done.stdout}\n" + "\n".join(errors)
        return done

    step("--help")
    step("run", "--help")
    step("config")
    step("topics", "create")
    step("ingest", "file", str(path), "--format", "snap-higgs")
    step("run", "--from-beginning", "--stop-when-idle", "4", "--window", "900", "--period", "900")
    top = step("query", "top", "--metric", "received", "--limit", "3", user="clout-reader")
    assert '"top"' in top.stdout and '"received"' in top.stdout
    settings = secured_stack.settings("clout-reader")
    with CloutClient.from_settings(settings) as client:
        assert client.windows().windows, "the reader sees what the writer wrote"
    outputs.append(serve_as_reader(secured_stack))
    everything = "\n".join(outputs) + repr(settings) + str(settings.redacted())
    for name, password in secured_stack.passwords.items():
        assert password not in everything, f"the {name} password was printed"
    assert isinstance(settings.redis_password, Secret)


def test_beam_pipeline_options_carry_no_secret(secured_stack) -> None:
    """What a runner's UI shows of a job: its options. Connection settings travel inside the transforms."""
    from clout.pipelines.run import pipeline_options

    options = pipeline_options(secured_stack.settings(), ["--job_name=secured"])
    shown = str(options.get_all_options(retain_unknown_options=True)) + str(options.display_data())
    assert not [name for name, password in secured_stack.passwords.items() if password in shown]


def serve_as_reader(secured_stack) -> str:
    """`clout serve` over TLS as the read-only user: the API answers from the writer's results."""
    import httpx

    port = closed_port()
    env = {**os.environ, **secured_stack.environment("clout-reader")}
    server = subprocess.Popen([sys.executable, "-m", "clout.cli", "serve", "--port", str(port), "--max-staleness", "0"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/v1/windows", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and server.poll() is None, "clout serve did not start"
                time.sleep(0.3)
        assert answer.status_code == 200 and answer.json()["windows"], answer.text
        window = answer.json()["windows"][0]["id"]
        board = httpx.get(f"http://127.0.0.1:{port}/v1/windows/{window}/leaderboard?board=received", timeout=5)
        assert board.status_code == 200 and board.json()["entries"], board.text
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=20)
    return output


def closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
