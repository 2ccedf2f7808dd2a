"""FlagSubscriber over the real Redis Stream: a consumer group that really acknowledges and resumes."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import orjson
import pytest
import redis
from layout_seed import Seeder, World

from clout.serving.models import Flag
from clout.serving.subscriber import FlagSubscriber
from clout.settings import Settings
from clout.store.layout import KeyLayout

pytestmark = pytest.mark.servers


def _flag(user: str, detector: str = "burst", score: float = 0.9) -> dict:
    return {"user": user, "window": "1000-4600", "detector": detector, "score": score, "reasons": [f"{user} burst"],
            "evidence": {"engagers": 10}, "group": None}


def _publish(client: redis.Redis, layout: KeyLayout, *flags: dict) -> None:
    seeder = Seeder(client, layout)
    for flag in flags:
        seeder.flag(flag)
    seeder.flush()


def _pending(client: redis.Redis, layout: KeyLayout, group: str) -> int:
    return client.xpending(layout.flag_stream(), group)["pending"]


@pytest.fixture
def subscribers(settings: Settings, redis_client: redis.Redis) -> Iterator[list[FlagSubscriber]]:
    """Subscribers a test makes; closed at its end."""
    made: list[FlagSubscriber] = []
    yield made
    for subscriber in made:
        subscriber.close()


def _subscriber(settings: Settings, made: list[FlagSubscriber], consumer: str, start: str = "$",
                group: str = "alerts") -> FlagSubscriber:
    subscriber = FlagSubscriber.from_settings(settings, group, consumer, start=start)
    made.append(subscriber)
    return subscriber


def test_group_is_created_once_and_new_flags_are_read_and_acknowledged(
        settings: Settings, redis_client: redis.Redis, layout: KeyLayout, subscribers: list) -> None:
    subscriber = _subscriber(settings, subscribers, "worker-1")
    assert subscriber.ensure_group() is True and subscriber.ensure_group() is False
    _publish(redis_client, layout, _flag("u1"), _flag("u2", "bot", 0.7))
    messages = subscriber.read(block_ms=1000)
    assert [(m.flag.user, m.flag.detector) for m in messages] == [("u1", "burst"), ("u2", "bot")]
    assert isinstance(messages[0].flag, Flag) and messages[0].flag.reasons == ["u1 burst"]
    assert _pending(redis_client, layout, "alerts") == 2
    assert subscriber.ack(*messages) == 2
    assert _pending(redis_client, layout, "alerts") == 0
    assert subscriber.read(block_ms=100) == []


def test_start_decides_what_a_new_group_sees(settings: Settings, redis_client: redis.Redis, world: World,
                                              subscribers: list) -> None:
    """The world's five flags are in the stream before either group exists."""
    everything = _subscriber(settings, subscribers, "a", start="0", group="replay")
    only_new = _subscriber(settings, subscribers, "b", start="$", group="live")
    assert len(everything.read(block_ms=100)) == len(world.flags)
    assert only_new.read(block_ms=100) == []


def test_a_restarted_consumer_resumes_with_what_it_had_not_acknowledged(
        settings: Settings, redis_client: redis.Redis, layout: KeyLayout, subscribers: list) -> None:
    first = _subscriber(settings, subscribers, "worker-1")
    first.ensure_group()
    _publish(redis_client, layout, _flag("u1"), _flag("u2"), _flag("u3"))
    delivered = first.read(block_ms=1000)
    first.ack(delivered[0])  # crashes after handling one of three
    first.close()
    _publish(redis_client, layout, _flag("u4"))
    again = _subscriber(settings, subscribers, "worker-1")
    backlog = again.read(block_ms=1000)
    assert [m.flag.user for m in backlog] == ["u2", "u3"]
    assert [m.id for m in backlog] == [m.id for m in delivered[1:]]
    again.ack(*backlog)
    assert [m.flag.user for m in again.read(block_ms=1000)] == ["u4"]


def test_consumers_of_one_group_share_the_flags(settings: Settings, redis_client: redis.Redis, layout: KeyLayout,
                                                subscribers: list) -> None:
    one, two = _subscriber(settings, subscribers, "one"), _subscriber(settings, subscribers, "two")
    one.ensure_group()
    _publish(redis_client, layout, *(_flag(f"u{i}") for i in range(10)))
    first = one.read(count=4, block_ms=1000)
    second = two.read(count=100, block_ms=1000)
    assert len(first) == 4 and len(second) == 6
    assert {m.flag.user for m in first + second} == {f"u{i}" for i in range(10)}


def test_a_live_consumer_takes_over_what_a_dead_one_left(settings: Settings, redis_client: redis.Redis,
                                                         layout: KeyLayout, subscribers: list) -> None:
    dead, alive = _subscriber(settings, subscribers, "dead"), _subscriber(settings, subscribers, "alive")
    dead.ensure_group()
    _publish(redis_client, layout, _flag("u1"), _flag("u2"))
    assert len(dead.read(block_ms=1000)) == 2
    claimed = alive.claim_stale(min_idle_ms=0)
    assert [m.flag.user for m in claimed] == ["u1", "u2"]
    alive.ack(*claimed)
    assert _pending(redis_client, layout, "alerts") == 0


def test_malformed_entries_are_acknowledged_and_counted(settings: Settings, redis_client: redis.Redis,
                                                        layout: KeyLayout, subscribers: list) -> None:
    subscriber = _subscriber(settings, subscribers, "worker-1")
    subscriber.ensure_group()
    redis_client.xadd(layout.flag_stream(), {"flag": b"not json"})
    redis_client.xadd(layout.flag_stream(), {"other": b"x"})
    redis_client.xadd(layout.flag_stream(), {"flag": orjson.dumps(_flag("u9"))})
    assert [m.flag.user for m in subscriber.read(block_ms=1000)] == ["u9"]
    assert subscriber.malformed == 2 and _pending(redis_client, layout, "alerts") == 1


def test_run_hands_flags_over_and_acknowledges_after_the_handler(
        settings: Settings, redis_client: redis.Redis, layout: KeyLayout, subscribers: list) -> None:
    subscriber = _subscriber(settings, subscribers, "worker-1")
    subscriber.ensure_group()
    seen: list[Flag] = []
    stop = threading.Event()

    def handle(flag: Flag) -> None:
        seen.append(flag)
        if len(seen) == 3:
            stop.set()

    runner = threading.Thread(target=subscriber.run, args=(handle, stop), kwargs={"block_ms": 200}, daemon=True)
    runner.start()
    _publish(redis_client, layout, _flag("u1"), _flag("u2"), _flag("u3"))
    runner.join(10)
    assert not runner.is_alive() and [f.user for f in seen] == ["u1", "u2", "u3"]
    assert _pending(redis_client, layout, "alerts") == 0


def test_a_deleted_stream_is_recreated_with_the_group(settings: Settings, redis_client: redis.Redis,
                                                      layout: KeyLayout, subscribers: list) -> None:
    subscriber = _subscriber(settings, subscribers, "worker-1")
    subscriber.ensure_group()
    subscriber.read(block_ms=10)
    redis_client.delete(layout.flag_stream())
    assert subscriber.read(block_ms=10) == []
    _publish(redis_client, layout, _flag("u5"))
    assert [m.flag.user for m in subscriber.read(block_ms=1000)] == ["u5"]
