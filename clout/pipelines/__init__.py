"""Apache Beam streaming pipelines: Kafka -> windows -> aggregates -> Redis."""
