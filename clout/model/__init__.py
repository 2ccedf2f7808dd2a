"""The domain core: events and their kinds, windows, ids and sharding. No Beam, Kafka or Redis, so
the detectors, the influence maths and the readers can all import it."""
