"""Serving fixtures: the seeded world in the test's own key prefix, and the app over it on a real server."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import redis
from layout_seed import World, seed_world
from serving_harness import running_app

from clout.settings import Settings
from clout.store.layout import KeyLayout

SERVING_DB = 11


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The test's own prefix, on a Redis database of the serving tests' own: the clean-up after each test
    scans its whole database, and db 0 of the shared test Redis may hold millions of other keys.

    The request-rate limit is off here (the fuzz tests send hundreds of requests a second from one
    client); tests/serving/test_limits.py turns it on where it is the subject."""
    return settings.replace(redis_url=urlunsplit(urlsplit(settings.redis_url)._replace(path=f"/{SERVING_DB}")),
                            serve_rate_limit=0)


@pytest.fixture
def layout(settings: Settings) -> KeyLayout:
    return KeyLayout(settings.key_prefix)


@pytest.fixture
def world(redis_client: redis.Redis, layout: KeyLayout) -> World:
    return seed_world(redis_client, layout)


@pytest.fixture
def api(settings: Settings, redis_client: redis.Redis) -> Iterator[httpx.Client]:
    """The app over this test's key prefix (keys are removed by `redis_client` afterwards)."""
    with running_app(settings) as client:
        yield client
