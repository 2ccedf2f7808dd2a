"""Where a run starts when Redis no longer holds the group's progress (a Redis restarted without
persistence): rebuilt from the beginning with --from-beginning, else a clear error. Real Kafka and Redis."""

from __future__ import annotations

import pytest
import redis
from kafka import KafkaConsumer

from clout.connectors.topics import create_topics
from clout.model.windows import WindowPolicy
from clout.pipelines.recovery import REWRITES_END_AFTER_FINAL_MS, RedisLost, plan_start, progress_intact, replay_horizon
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


def test_the_replay_horizon_leaves_out_only_windows_that_can_no_longer_change() -> None:
    """A sealed window is final, but input that reached its scoring late may still rewrite it until it
    closes: a restart recomputes it, so a kill before the rewrite cannot leave the first version."""
    policy = WindowPolicy()
    sealed = 1_341_259_200_000  # 2012-07-02 20:00 UTC, on a period boundary
    horizon = replay_horizon(sealed, policy)
    assert horizon % policy.slice_ms == 0

    def closes_at(start: int) -> int:
        return policy.final_ms(start) + REWRITES_END_AFTER_FINAL_MS

    assert closes_at(horizon - policy.slice_ms) <= sealed < closes_at(horizon)
