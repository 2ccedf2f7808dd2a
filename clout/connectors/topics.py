"""Topic administration: the interactions topic and its dead-letter topic."""

from __future__ import annotations

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

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
