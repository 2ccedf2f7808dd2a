"""`clout stack up` leaves a ready stack: the default topics exist, so `clout ingest` can start at once."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from kafka.admin import KafkaAdminClient

from clout.settings import Settings

pytestmark = pytest.mark.servers


def test_stack_up_creates_the_topics(settings: Settings) -> None:
    names = ("topic", "dlq_topic", "flags_topic", "state_dir", "kafka_port", "kafka_controller_port", "redis_port",
             "kafka_bootstrap")
    env = {**os.environ, **{f"CLOUT_{n.upper()}": str(getattr(settings, n)) for n in names}}
    result = subprocess.run([sys.executable, "-m", "clout.cli", "stack", "up"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"topic {settings.topic}: created (6 partitions)" in result.stderr
    admin = KafkaAdminClient(**settings.kafka_client_config())
    try:
        assert {settings.topic, settings.dlq_topic, settings.flags_topic} <= set(admin.list_topics())
    finally:
        admin.close()
