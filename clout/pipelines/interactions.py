"""ReadInteractions: Kafka -> batches of valid events, with bad records dead-lettered, not dropped."""

from __future__ import annotations

from typing import Any

import apache_beam as beam
from apache_beam.io.unbounded_source import ReadFromUnboundedSource
from apache_beam.metrics import Metrics

from clout.connectors.topics import connect_producer
from clout.pipelines.decode import DEAD_LETTERS, DeadLetter, DecodeBatch
from clout.pipelines.dedup import DropRepeats
from clout.pipelines.source import KafkaSource, SourceConfig


class WriteDeadLetters(beam.DoFn):
    """Publishes rejected records to the DLQ topic: original bytes, reason and source in headers."""

    def __init__(self, client: dict[str, Any], topic: str) -> None:
        self.client = client
        self.topic = topic
        self.written = Metrics.counter("clout.dlq", "dead_letters")

    def setup(self) -> None:
        self.producer = connect_producer(self.client, acks="all", linger_ms=50)

    def process(self, letter: DeadLetter) -> None:
        headers = [("reason", letter.reason.encode()), ("detail", letter.detail.encode()[:1024]),
                   ("source", letter.source.encode())]
        self.producer.send(self.topic, value=letter.raw, headers=headers)
        self.written.inc()

    def finish_bundle(self) -> None:
        self.producer.flush()  # the bundle is not done until its dead letters are durable

    def teardown(self) -> None:
        producer = getattr(self, "producer", None)
        if producer is not None:
            producer.close()


class ReadInteractions(beam.PTransform):
    """Reads every partition, decodes and validates, drops repeated event ids; emits one `EventBatch`
    (events as columns) per Kafka batch."""

    def __init__(self, config: SourceConfig, dlq_topic: str, freshness_s: float = 1.0,
                 single_worker: bool = False) -> None:
        super().__init__()
        self.single_worker = single_worker
        self.config = config
        self.dlq_topic = dlq_topic
        self.freshness_s = freshness_s

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        decoded = (
            pbegin
            | "ReadKafka" >> ReadFromUnboundedSource(KafkaSource(self.config), poll_interval=0.2,
                                                      max_records_per_bundle=100,
                                                      max_read_time_seconds=self.freshness_s)
            | "Decode" >> beam.ParDo(DecodeBatch()).with_outputs(DEAD_LETTERS, main="events")
        )
        first_seen = (
            decoded.events
            | "ByPartition" >> beam.Map(lambda batch: (f"{batch.batch_id[0]}/{batch.batch_id[1]}", batch))
            # Typed so Beam picks a deterministic key coder for the state key.
            | "DropRepeats" >> beam.ParDo(DropRepeats(self.config.dedup_horizon_ms, self.single_worker))
            .with_input_types(tuple[str, Any]).with_outputs(DEAD_LETTERS, main="events")
        )
        _ = ((decoded[DEAD_LETTERS], first_seen[DEAD_LETTERS]) | "AllDeadLetters" >> beam.Flatten()
             | "DeadLetter" >> beam.ParDo(WriteDeadLetters(self.config.client, self.dlq_topic)))
        return first_seen.events
