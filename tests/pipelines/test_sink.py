"""WriteWindowTotals on the real Redis under TestStream: running totals, replayed deltas merged once,
deltas after the window's end counted (lateness is decided at the source), absolute values throughout."""

from __future__ import annotations

import orjson
import pytest
import redis
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that
from apache_beam.transforms.window import TimestampedValue

from clout.model.windows import WindowPolicy
from clout.pipelines.aggregates import new_activity
from clout.pipelines.sink import WriteWindowTotals
from clout.settings import Settings
from clout.store.client import RedisTarget
from clout.store.layout import KeyLayout

pytestmark = pytest.mark.servers
POLICY = WindowPolicy(size_s=3600, period_s=900, lateness_s=600)
START = 1_341_100_800_000
END = START + 3_600_000
WINDOW = f"{START // 1000}-{END // 1000}"


def reposts(target: str, *actors: str) -> dict:
    """A delta: `target` reposted once by each actor (kind index 3 is repost)."""
    by_user: dict = {}
    for actor in actors:
        mine = by_user.setdefault(target, new_activity())
        mine[3] += 1
        mine[-1].add(actor)
        by_user.setdefault(actor, new_activity())[7 + 3] += 1
    return by_user


def element(delta_id: str, by_user: dict, at_ms: int) -> TimestampedValue:
    return TimestampedValue(((START, 0), (delta_id, by_user)), at_ms / 1000)


def run(settings: Settings, stream: TestStream) -> None:
    with TestPipeline(options=PipelineOptions(["--streaming"])) as p:
        ends = p | stream | WriteWindowTotals(RedisTarget(settings.redis_url), KeyLayout(settings.key_prefix),
                                              POLICY, 3600, horizon_ms=None)
        assert_that(ends, only_window_end)


def only_window_end(ends: list) -> None:
    """Each worker reports a written window's end once (there may be several workers)."""
    assert ends and set(ends) == {END}, ends


def stored(client: redis.Redis, settings: Settings, user: str) -> dict:
    return orjson.loads(client.hget(f"{settings.key_prefix}:v1:win:{{{WINDOW}}}:activity", user))


def test_totals_lateness_and_replays(settings: Settings, redis_client: redis.Redis) -> None:
    stream = (TestStream()
              .advance_watermark_to(START / 1000)
              .add_elements([element("d1", reposts("star", "a", "b"), START + 1_000)])
              .add_elements([element("d1", reposts("star", "a", "b"), START + 1_000)])  # the same delta again
              .advance_watermark_to((END + 300_000) / 1000)  # past the end, within the lateness
              .add_elements([element("d2", reposts("star", "c"), START + 2_000)])
              .advance_watermark_to((END + 601_000) / 1000)  # past end + lateness: state collected
              .add_elements([element("d3", reposts("star", "d"), START + 3_000)])  # held back by processing lag
              .advance_watermark_to_infinity())
    run(settings, stream)
    assert stored(redis_client, settings, "star") == {"received": {"repost": 4}, "sent": {}, "engagers": 4,
                                                       "in": 4, "out": 0}
    assert stored(redis_client, settings, "c") == {"received": {}, "sent": {"repost": 1}, "engagers": 0,
                                                    "in": 0, "out": 1}
    board = redis_client.zrevrange(f"{settings.key_prefix}:v1:win:{{{WINDOW}}}:lb:received", 0, 0, withscores=True)
    assert board == [(b"star", 4.0)]
    assert redis_client.ttl(f"{settings.key_prefix}:v1:win:{{{WINDOW}}}:activity") > 3000


def test_rewriting_the_same_input_leaves_the_same_values(settings: Settings, redis_client: redis.Redis) -> None:
    def once() -> dict:
        run(settings, TestStream().add_elements([element("d1", reposts("star", "a", "b"), START + 1_000)])
            .advance_watermark_to_infinity())
        return redis_client.hgetall(f"{settings.key_prefix}:v1:win:{{{WINDOW}}}:activity")

    assert once() == once()
