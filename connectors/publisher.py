"""One Kafka publisher for every connector: events to the interactions topic, bad records to the DLQ.

Events are keyed by ``actor``: one account's actions then stay in one partition, in order, which
the pipeline relies on for per-partition de-duplication (a duplicate lands beside its original)
and which keeps an actor's event-time order intact for the watermark.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from kafka import KafkaProducer

from clout.schemas import InteractionEvent, InvalidEvent
from clout.settings import Settings

# Throughput tuning for kafka-python: large batches and a short linger amortise the per-request
# cost; lz4 is the cheapest codec for CPU on a small machine (see bench/publish.py for the figures).
PRODUCER_TUNING: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "max_in_flight_requests_per_connection": 5,
    "linger_ms": 20,
    "batch_size": 512 * 1024,
    "compression_type": "lz4",
    "retries": 2**31 - 1,
    "delivery_timeout_ms": 120_000,
}

EVENT_ID_HEADER = "event_id"
REASON_HEADER = "reason"
DETAIL_HEADER = "detail"
SOURCE_HEADER = "source"


@dataclass
class PublishCounts:
    published: int = 0
    rejected: int = 0
    failed: int = 0


class DeliveryFailed(RuntimeError):
    """Kafka refused or timed out some records; raised by flush() so no loss goes unnoticed."""


class Publisher:
    """Sends valid events and dead letters through one idempotent producer."""

    def __init__(self, settings: Settings, **tuning: Any) -> None:
        self.topic = settings.topic
        self.dlq_topic = settings.dlq_topic
        self.counts = PublishCounts()
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._producer = KafkaProducer(**settings.kafka_client_config(), **{**PRODUCER_TUNING, **tuning})

    def publish(self, event: InteractionEvent) -> None:
        self.publish_encoded(event.actor.encode(), event.to_json(), event.ts, event.event_id)

    def publish_encoded(self, key: bytes, value: bytes, ts_ms: int, event_id: str) -> None:
        """Publish an already-serialised event; the Kafka record timestamp is the event time."""
        future = self._producer.send(self.topic, key=key, value=value, timestamp_ms=ts_ms,
                                     headers=[(EVENT_ID_HEADER, event_id.encode())])
        future.add_errback(self._failed)
        self.counts.published += 1

    def reject(self, raw: bytes, error: InvalidEvent, source: str) -> None:
        """Dead-letter the original bytes with the reason; nothing invalid is dropped silently."""
        headers = [
            (REASON_HEADER, error.reason.value.encode()),
            (DETAIL_HEADER, error.detail.encode()[:1024]),
            (SOURCE_HEADER, source.encode()[:1024]),
        ]
        future = self._producer.send(self.dlq_topic, value=raw, headers=headers)
        future.add_errback(self._failed)
        self.counts.rejected += 1

    def flush(self) -> None:
        self._producer.flush()
        with self._lock:
            errors, self._errors = self._errors, []
        if errors:
            raise DeliveryFailed(f"{len(errors)} record(s) were not delivered; first error: {errors[0]!r}")

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._producer.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _failed(self, error: BaseException) -> None:
        with self._lock:
            self._errors.append(error)
            self.counts.failed += 1
