"""Redis connections for pipeline workers: from a URL, with retry and exponential backoff on
connection errors and timeouts (redis-py's own Retry, so pipelines retry as a whole).

A pipeline that uses scripts loads them once, before it is sent; a retry after a lost connection
sends it again as it was. If Redis restarted meanwhile its script cache is empty and every EVALSHA
fails with NoScriptError (found by tests/faults, Redis SIGKILL mid-write): such a pipeline is sent
once more, its scripts loaded again. Re-sending is safe for clout's writes, which set absolute values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
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
        return _Redis.from_url(self.url, retry=retry, retry_on_error=[RedisConnectionError, RedisTimeoutError],
                                    socket_timeout=30, socket_connect_timeout=10, **self.options)


class _ScriptReloadingPipeline(Pipeline):
    def execute(self, raise_on_error: bool = True) -> list[Any]:
        stack, scripts = list(self.command_stack), set(self.scripts)
        try:
            return super().execute(raise_on_error)
        except NoScriptError:  # Redis lost its script cache (a restart) between loading and sending
            self.command_stack, self.scripts = stack, scripts  # execute() reset them
            return super().execute(raise_on_error)


class _Redis(redis.Redis):
    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> _ScriptReloadingPipeline:
        return _ScriptReloadingPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
