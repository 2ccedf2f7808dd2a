"""Topic administration (the interactions topic, its dead-letter topic, the flags topic), and the
pipeline's producers."""

from __future__ import annotations

import logging
import time
from typing import Any

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from clout.settings import Settings

log = logging.getLogger(__name__)
# How long a pipeline step waits for the broker to come back before its producer gives up (the job
# fails, and a restart resumes from its last checkpoint).
PRODUCER_WAIT_S = 600.0


def create_topics(settings: Settings, partitions: int | None = None) -> dict[str, str]:
    """Create `topic` with the configured partition count, its DLQ and the `flags` topic the pipeline
    publishes new anomaly flags to; existing topics are left alone."""
    wanted = {settings.topic: partitions or settings.partitions, settings.dlq_topic: 1, settings.flags_topic: 1}
    admin = KafkaAdminClient(**settings.kafka_client_config())
    try:
        existing = set(admin.list_topics())
        outcome = {name: "exists" for name in wanted if name in existing}
        # Record timestamps are event times, and Kafka's time retention counts from them: a replay of
        # old data would be deleted at once. The topics keep everything unless told otherwise.
        configs = {"retention.ms": str(settings.retention_ms)}
        new = [NewTopic(name, count, settings.replication_factor, topic_configs=configs)
               for name, count in wanted.items() if name not in existing]
        for topic in new:
            try:
                admin.create_topics([topic])
                outcome[topic.name] = f"created ({topic.num_partitions} partitions)"
            except TopicAlreadyExistsError:
                outcome[topic.name] = "exists"
        return outcome
    finally:
        admin.close()


class MissingTopic(RuntimeError):
    """An ingest would wait a minute on a topic that is not there; say so at once, and how to fix it."""


def require_topics(settings: Settings) -> None:
    """Fail at once, naming the topic and the command that creates it, if the interactions topic or
    its DLQ does not exist (the broker does not create topics on first use; kafka-python would
    otherwise wait 60 s for metadata and report a KafkaTimeoutError)."""
    try:
        admin = KafkaAdminClient(**settings.kafka_client_config(), bootstrap_timeout_ms=10_000)
    except KafkaError:
        raise MissingTopic(f"no Kafka broker answers at {settings.kafka_bootstrap} "
                           "(for the local stack: `clout stack up`)") from None
    try:
        existing = set(admin.list_topics())
    finally:
        admin.close()
    missing = [name for name in (settings.topic, settings.dlq_topic) if name not in existing]
    if missing:
        raise MissingTopic(f"topic {' and '.join(repr(m) for m in missing)} does not exist on "
                           f"{settings.kafka_bootstrap}; create it with `clout topics create` "
                           "(`clout stack up` does so for the local stack)")


def connect_producer(client: dict[str, Any], wait_s: float = PRODUCER_WAIT_S, **config: Any) -> KafkaProducer:
    """A producer for a pipeline step, retried while the broker cannot be reached.

    A runner sets a step up whenever it needs another instance, which can be while the broker is
    away (tests/faults: broker SIGKILL); a bootstrap that failed then failed the job, though the
    source holds its place and waits. So the step waits too, up to `wait_s`."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return KafkaProducer(**client, **config)
        except KafkaError as error:
            if time.monotonic() >= deadline:
                raise KafkaError(f"no Kafka broker answered at {client.get('bootstrap_servers')} for "
                                 f"{wait_s:.0f} s: {error!r}") from error
            log.warning("Kafka unreachable for a producer, retrying: %r", error)
            time.sleep(1.0)
