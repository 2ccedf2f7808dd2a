"""Redis connections for pipeline workers: from a URL, with retry and exponential backoff on
connection errors and timeouts (redis-py's own Retry, so pipelines retry as a whole)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from clout.settings import Settings


@dataclass(frozen=True)
class RedisTarget:
    """Picklable connection settings (workers build their own client in `setup()`)."""

    url: str
    options: dict[str, Any] = field(default_factory=dict)
    retries: int = 8

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisTarget:
        return cls(settings.redis_url, settings.redis_client_config())

    def connect(self) -> redis.Redis:
        retry = Retry(ExponentialBackoff(cap=10.0, base=0.1), self.retries)
        return redis.Redis.from_url(self.url, retry=retry, retry_on_error=[RedisConnectionError, RedisTimeoutError],
                                    socket_timeout=30, socket_connect_timeout=10, **self.options)
