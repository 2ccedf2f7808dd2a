"""Where a run starts when Redis no longer holds the group's progress (a Redis restarted without
persistence): rebuilt from the beginning with --from-beginning, else a clear error. Real Kafka and Redis."""

from __future__ import annotations

import pytest
import redis
from kafka import KafkaConsumer

from clout.connectors.topics import create_topics
from clout.model.windows import WindowPolicy
from clout.pipelines.recovery import RedisLost, plan_start, progress_intact
from clout.settings import Settings
from clout.store.client import RedisTarget
from clout.store.layout import KeyLayout

pytestmark = pytest.mark.servers


def plan(settings: Settings, from_beginning: bool, group_committed: bool = False, reset: bool = False):
    consumer = KafkaConsumer(**settings.kafka_client_config(), group_id=None, enable_auto_commit=False)
    try:
        return plan_start(consumer, RedisTarget.from_settings(settings), KeyLayout(settings.key_prefix),
                          settings.topic, settings.group, WindowPolicy(), from_beginning, reset,
                          group_committed=group_committed)
    finally:
        consumer.close()


def test_lost_progress_is_rebuilt_from_the_beginning_or_named(settings: Settings, redis_client: redis.Redis) -> None:
    create_topics(settings)
    layout = KeyLayout(settings.key_prefix)
    first = plan(settings, from_beginning=True)
    assert not first.resumed and not first.rebuilt
    assert progress_intact(redis_client, layout, settings.group)
    redis_client.delete(layout.progress(settings.group))  # what a Redis restart without persistence does
    redis_client.hset(layout.progress(settings.group), "sealed_ms", 1)  # a remnant, sealed after the loss
    assert progress_intact(redis_client, layout, settings.group) is False
    with pytest.raises(RedisLost, match="--from-beginning"):
        plan(settings, from_beginning=False)
    rebuilt = plan(settings, from_beginning=True)
    assert rebuilt.rebuilt and "rebuilding every window" in rebuilt.describe()
    assert rebuilt.start_offsets == first.start_offsets and rebuilt.horizon_ms is None
    assert progress_intact(redis_client, layout, settings.group)
    redis_client.delete(layout.progress(settings.group))  # nothing left at all, but Kafka knows the group
    with pytest.raises(RedisLost):
        plan(settings, from_beginning=False, group_committed=True)
    assert not plan(settings, from_beginning=False, group_committed=True, reset=True).rebuilt
