"""The locked-down servers of the security tests, once per session: Kafka with only a SASL_SSL
listener (SCRAM-SHA-512 users) and Redis with only TLS and ACL users, certificates from a throwaway
CA. Ports derive from CLOUT_TEST_PORT_OFFSET (base + 10..12), so checkouts side by side do not meet."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from clout.local import secured
from clout.local.secured import Certificates
from clout.settings import Secret, Settings, load_settings

_OFFSET = int(os.environ.get("CLOUT_TEST_PORT_OFFSET", "0"))
KAFKA_PORT, CONTROLLER_PORT, REDIS_PORT = 29102 + _OFFSET, 29103 + _OFFSET, 26389 + _OFFSET


@dataclass(frozen=True)
class SecuredStack:
    certs: Certificates
    passwords: dict[str, str]  # every secret the servers know: no output may contain any of them
    folder: Path

    def settings(self, redis_user: str = "clout-writer", **changes: object) -> Settings:
        """Settings as a deployment would have them: secrets from files, the rest plain."""
        values = {
            "kafka_bootstrap": f"127.0.0.1:{KAFKA_PORT}", "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": "SCRAM-SHA-512", "kafka_sasl_username": "clout",
            "kafka_sasl_password": Secret(self.passwords["clout"]), "kafka_ssl_cafile": str(self.certs.ca),
            "redis_url": f"rediss://127.0.0.1:{REDIS_PORT}/0", "redis_username": redis_user,
            "redis_password": Secret(self.passwords[redis_user]), "redis_ssl_cafile": str(self.certs.ca),
        }
        return load_settings(overrides={**values, **changes})

    def environment(self, redis_user: str = "clout-writer") -> dict[str, str]:
        """CLOUT_* variables for a `clout` process: passwords only as mounted secret files."""
        folder = self.folder / "secrets"
        folder.mkdir(exist_ok=True)
        for name in ("clout", redis_user):
            secret = folder / name
            secret.write_text(self.passwords[name] + "\n")
            secret.chmod(0o600)
        return {"CLOUT_KAFKA_BOOTSTRAP": f"127.0.0.1:{KAFKA_PORT}", "CLOUT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "CLOUT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "CLOUT_KAFKA_SASL_USERNAME": "clout",
                "CLOUT_KAFKA_SASL_PASSWORD_FILE": str(folder / "clout"), "CLOUT_KAFKA_SSL_CAFILE": str(self.certs.ca),
                "CLOUT_REDIS_URL": f"rediss://127.0.0.1:{REDIS_PORT}/0", "CLOUT_REDIS_USERNAME": redis_user,
                "CLOUT_REDIS_PASSWORD_FILE": str(folder / redis_user), "CLOUT_REDIS_SSL_CAFILE": str(self.certs.ca)}


@pytest.fixture(scope="session")
def secured_stack(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredStack]:
    folder = tmp_path_factory.mktemp("secured")
    certs = secured.make_certificates(folder / "tls")
    passwords = {name: secrets.token_urlsafe(18) for name in ("admin", "clout", "clout-writer", "clout-reader",
                                                                  "clout-flags")}
    kafka = secured.start_kafka(stack_settings, folder / "kafka", KAFKA_PORT, CONTROLLER_PORT, certs,
                                {"admin": passwords["admin"], "clout": passwords["clout"]})
    store = secured.start_redis(folder / "redis", REDIS_PORT, certs, {
        "clout-writer": (passwords["clout-writer"], secured.writer_rules("clout")),
        "clout-reader": (passwords["clout-reader"], secured.reader_rules("clout")),
        "clout-flags": (passwords["clout-flags"], secured.flag_subscriber_rules("clout")),
    })
    try:
        secured.wait_for_port(store, REDIS_PORT)
        secured.wait_for_port(kafka, KAFKA_PORT)
        stack = SecuredStack(certs, passwords, folder)
        _wait_until_kafka_authenticates(stack)
        yield stack
    finally:
        kafka.stop()
        store.stop()


def _wait_until_kafka_authenticates(stack: SecuredStack, timeout: float = 90) -> None:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout
    while True:
        try:
            admin = KafkaAdminClient(**stack.settings().kafka_client_config(), request_timeout_ms=5000)
            admin.list_topics()
            admin.close()
            return
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


@pytest.fixture
def writer(secured_stack: SecuredStack) -> Iterator[redis.Redis]:
    from clout.store.client import RedisTarget

    client = RedisTarget.from_settings(secured_stack.settings()).connect()
    yield client
    client.close()
