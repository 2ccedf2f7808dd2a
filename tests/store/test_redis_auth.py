"""Redis with a password: the settings' secret reaches the connection, never the output."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis

from clout.settings import Secret, Settings
from clout.store.client import RedisTarget

PORT = 26499
PASSWORD = "s3cret-for-tests"


@pytest.fixture
def protected_redis(tmp_path) -> Iterator[int]:
    """A real redis-server that requires a password (its own port and folder)."""
    command = [shutil.which("redis-server") or "redis-server", "--port", str(PORT), "--bind", "127.0.0.1",
               "--requirepass", PASSWORD, "--save", "", "--dir", str(tmp_path)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while not _answers(PORT):
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    yield PORT
    server.terminate()
    server.wait(10)


def _answers(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_password_from_settings_authenticates(protected_redis: int) -> None:
    settings = Settings(redis_url=f"redis://127.0.0.1:{protected_redis}/0", redis_password=Secret(PASSWORD))
    client = RedisTarget.from_settings(settings).connect()
    assert client.ping()
    client.close()
    with pytest.raises(redis.AuthenticationError):
        RedisTarget(settings.redis_url, retries=0).connect().ping()


def test_secrets_never_print(protected_redis: int) -> None:
    settings = Settings(redis_url=f"redis://user:{PASSWORD}@127.0.0.1:{protected_redis}/0",
                        redis_password=Secret(PASSWORD), kafka_sasl_password=Secret(PASSWORD))
    shown = repr(settings) + str(settings.redacted())
    assert PASSWORD not in shown
    assert settings.redacted()["redis_url"] == f"redis://user:**********@127.0.0.1:{protected_redis}/0"
