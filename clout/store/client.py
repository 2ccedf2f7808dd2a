"""Redis connections: the one place that turns a URL into a client, single server or Redis Cluster.

`redis://` and `rediss://` name one server; `redis+cluster://host:port` and `rediss+cluster://`
name a Redis Cluster by any one of its nodes (redis-py's `RedisCluster` finds the others and routes
each key to its slot). Everything that talks to Redis comes through here, so the pipeline,
`clout query`, the read API and the Python client all understand both. Pipeline workers connect
through `RedisTarget`: retry with exponential backoff on connection errors and timeouts (redis-py's
own Retry, so pipelines retry as a whole).

On a cluster every multi-key command must stay within one hash slot: the key layout
(`layout.py`) puts the keys that are written together under one hash tag, and `script()` runs Lua
in pipelines in a way that survives a node that never saw the script.

A single-server pipeline that uses scripts loads them once, before it is sent; a retry after a lost
connection sends it again as it was. If Redis restarted meanwhile its script cache is empty and
every EVALSHA fails with NoScriptError (found by tests/faults, Redis SIGKILL mid-write): such a
pipeline is sent once more, its scripts loaded again. Re-sending is safe for clout's writes, which
set absolute values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.backoff import ExponentialBackoff
from redis.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from clout.settings import Settings

# URL scheme of a Redis Cluster -> the scheme redis-py parses (TLS or not)
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

SyncClient = redis.Redis | redis.cluster.RedisCluster
AsyncClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster


def is_cluster_url(url: str) -> bool:
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


def _node_url(url: str) -> str:
    """The URL of the node a cluster client starts from, in a scheme redis-py knows."""
    scheme, sep, rest = url.partition("://")
    return f"{CLUSTER_SCHEMES[scheme.lower()]}{sep}{rest}"


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


def sync_client(url: str, **options: Any) -> SyncClient:
    """A redis-py client for the URL: `RedisCluster` for a cluster URL, else `Redis`."""
    if is_cluster_url(url):
        options.pop("retry_on_error", None)  # the cluster client retries connection errors and timeouts itself
        return redis.cluster.RedisCluster.from_url(_node_url(url), **options)
    return _Redis.from_url(url, **options)


def async_client(url: str, **options: Any) -> AsyncClient:
    """The same for redis.asyncio (the read API)."""
    if is_cluster_url(url):
        options.pop("retry_on_error", None)
        return redis.asyncio.cluster.RedisCluster.from_url(_node_url(url), **options)
    return redis.asyncio.Redis.from_url(url, **options)


def script(client: SyncClient, source: str) -> Script:
    """A Lua script callable like redis-py's registered scripts: `run(keys=..., args=..., client=pipe)`."""
    return Script(client.register_script(source), isinstance(client, redis.cluster.RedisCluster))


@dataclass
class Script:
    """redis-py's Script, made safe in a cluster pipeline.

    A plain pipeline loads its scripts before it runs (EVALSHA then always finds them); a cluster
    pipeline does not, and a node that has not seen the script (a new or failed-over primary: the
    script cache is neither persisted nor replicated) would fail the whole pipeline with NOSCRIPT.
    In a cluster pipeline the script is therefore sent whole (EVAL), which every node runs;
    elsewhere it is EVALSHA as usual. The KEYS of one call must share a hash slot."""

    registered: Any  # redis.commands.core.Script
    cluster: bool

    def __call__(self, keys: Sequence[Any], args: Sequence[Any], client: Any = None) -> Any:
        if self.cluster and isinstance(client, redis.cluster.ClusterPipeline):
            # ClusterPipeline leaves out its eval() method; the command itself is routed by its keys' slot.
            return client.execute_command("EVAL", self.registered.script, len(keys), *keys, *args)
        return self.registered(keys=keys, args=args, client=client)


@dataclass(frozen=True)
class RedisTarget:
    """Picklable connection settings (workers build their own client in `setup()`)."""

    url: str
    options: dict[str, Any] = field(default_factory=dict)
    retries: int = 8

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisTarget:
        return cls(settings.redis_url, settings.redis_client_config())

    @property
    def cluster(self) -> bool:
        return is_cluster_url(self.url)

    def connect(self) -> SyncClient:
        retry = Retry(ExponentialBackoff(cap=10.0, base=0.1), self.retries)
        return sync_client(self.url, retry=retry, retry_on_error=[RedisConnectionError, RedisTimeoutError],
                           socket_timeout=30, socket_connect_timeout=10, **self.options)
