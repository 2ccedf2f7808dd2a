"""Shared fixtures: the real local stack (Kafka KRaft + Redis) started once per test session.

The test stack uses its own ports and state folder, so it never collides with a `make demo` stack.
Servers the session started are stopped at the end; a stack already running on those ports (a
developer's warm one) is reused and left running.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("CLOUT_DATA_DIR", ROOT.parent / "shared" / "data"))
HIGGS = DATA / "higgs-twitter" / "higgs-activity_time.txt.gz"

# CLOUT_TEST_PORT_OFFSET moves the whole test stack, so two checkouts can run their tests side by side.
_OFFSET = int(os.environ.get("CLOUT_TEST_PORT_OFFSET", "0"))
TEST_PORTS = {"kafka_port": 29092 + _OFFSET, "kafka_controller_port": 29093 + _OFFSET, "redis_port": 26379 + _OFFSET}
# The test Redis Cluster's three masters (their cluster bus ports are these - 10000: tests/redis_cluster.py).
REDIS_CLUSTER_PORT = 27379 + _OFFSET
# The test Flink stack's ports, away from the defaults (8081, 6123, 8099 to 8101, 50000).
FLINK_TEST_PORTS = {"flink_rest_port": 28081 + _OFFSET, "flink_rpc_port": 26123 + _OFFSET,
                    "flink_job_server_port": 28099 + _OFFSET, "flink_worker_pool_port": 30000 + _OFFSET}
os.environ.setdefault("CLOUT_KAFKA_BOOTSTRAP", f"127.0.0.1:{TEST_PORTS['kafka_port']}")
os.environ.setdefault("CLOUT_REDIS_URL", f"redis://127.0.0.1:{TEST_PORTS['redis_port']}/0")

from clout.local import stack  # noqa: E402
from clout.settings import Settings, load_settings  # noqa: E402


@pytest.fixture(scope="session")
def stack_settings() -> Iterator[Settings]:
    """The running test stack; started here if it is not up yet, and stopped again if so."""
    settings = load_settings(overrides={**TEST_PORTS, "state_dir": ROOT / ".state" / "test"})
    already_up = all(stack.running_pid(s) for s in stack.servers(settings))
    stack.up(settings, say=lambda _line: None)
    yield settings
    if not already_up:
        stack.down(settings, say=lambda _line: None)


@pytest.fixture(scope="session")
def flink_settings(stack_settings: Settings) -> Iterator[Settings]:
    """The test stack with Flink (session cluster, job server, worker pool); stopped again if started
    here, and any job a test left running is cancelled, so no JVM or worker outlives the session."""
    from clout.local import flink

    settings = stack_settings.replace(**FLINK_TEST_PORTS)
    already_up = all(stack.running_pid(s) for s in flink.flink_servers(settings))
    stack.up(settings, say=lambda _line: None, flink=True)
    yield settings
    for job in flink.running_jobs(settings):
        flink.cancel_job(settings, job["id"])
    if not already_up:
        flink.stop_flink(settings, say=lambda _line: None)


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """A real 3-master Redis Cluster for the session (`redis+cluster://...`), stopped at the end."""
    from redis_cluster import running_cluster

    with running_cluster(REDIS_CLUSTER_PORT, ROOT / ".state" / "test" / f"redis-cluster-{REDIS_CLUSTER_PORT}") as url:
        yield url


@pytest.fixture
def settings(stack_settings: Settings) -> Settings:
    """Settings with topics, group and key prefix of this test's own, so tests never see each other."""
    tag = uuid.uuid4().hex[:8]
    return stack_settings.replace(topic=f"t{tag}.interactions", dlq_topic=f"t{tag}.interactions.dlq",
                                  flags_topic=f"t{tag}.flags",
                                  group=f"g{tag}", key_prefix=f"test{tag}")


@pytest.fixture
def redis_client(settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.redis_url)
    yield client
    for key in client.scan_iter(match=f"{settings.key_prefix}:*", count=10_000):
        client.delete(key)
    client.close()


@pytest.fixture(scope="session")
def higgs_path() -> Path:
    if not HIGGS.exists():
        pytest.fail(f"the real Higgs dataset is missing at {HIGGS}; see README 'Real data'")
    return HIGGS
