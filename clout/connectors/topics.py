"""Topic administration: the interactions topic and its dead-letter topic."""

from __future__ import annotations

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from clout.settings import Settings


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
