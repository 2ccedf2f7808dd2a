"""Sources that turn files, generators and live platforms into InteractionEvents on Kafka."""
