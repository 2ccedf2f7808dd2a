"""`CloutClient`: the API's reads as a typed, synchronous Python client for downstream services.

A service in the same network as Redis should not pay an HTTP hop to read a score: the client runs
the very plans the API runs (`readers`), straight against Redis, and returns the same models. Bad
ids raise `InvalidInput` (a ValueError) before any key is formed; missing results raise `NotFound`.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, TypeVar

from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from clout.serving import plans, readers
from clout.serving.models import (
    FlaggedList,
    Freshness,
    Group,
    GroupList,
    Leaderboard,
    UserHistory,
    UserView,
    UserWindowView,
    WindowInfo,
    WindowList,
)
from clout.serving.plans import NotFound, StoredDataError
from clout.serving.validation import LATEST, InvalidInput
from clout.settings import Settings
from clout.store.client import sync_client
from clout.store.layout import KeyLayout

__all__ = ["CloutClient", "InvalidInput", "NotFound", "StoredDataError"]

T = TypeVar("T")


class CloutClient:
    """Reads clout's results from Redis (layout v1), one server or a cluster (`redis+cluster://host:port`).
    Thread-safe: redis-py pools its connections."""

    def __init__(self, redis_url: str = "redis://127.0.0.1:6379/0", key_prefix: str = "clout",
                 retention_seconds: int = Settings.retention_seconds, **redis_options: Any) -> None:
        options = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0,
                   "retry": Retry(ExponentialBackoff(cap=0.5, base=0.01), 3), **redis_options}
        self.redis = sync_client(redis_url, decode_responses=True, client_name="clout-client", **options)
        self.layout = KeyLayout(key_prefix)
        self.retention_seconds = retention_seconds

    @classmethod
    def from_settings(cls, settings: Settings, **redis_options: Any) -> CloutClient:
        """The same Redis, credentials and key prefix as every other clout command."""
        return cls(settings.redis_url, settings.key_prefix, settings.retention_seconds,
                   **settings.redis_client_config(), **redis_options)

    def __enter__(self) -> CloutClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.redis.close()

    def _run(self, plan: plans.Plan[T]) -> T:
        return plans.run_sync(self.redis, plan)

    # --- users --------------------------------------------------------------------------------------

    def user(self, user: str) -> UserView:
        """Current influence (newest window) with parts, rank, clean score, long-term, and live flags."""
        return self._run(readers.user(self.layout, user))

    def user_in_window(self, user: str, window: str = LATEST) -> UserWindowView:
        return self._run(readers.user_in_window(self.layout, user, window))

    def history(self, user: str) -> UserHistory:
        return self._run(readers.history(self.layout, user))

    # --- windows and leaderboards -------------------------------------------------------------------

    def windows(self, limit: int = 20, offset: int = 0) -> WindowList:
        return self._run(readers.windows(self.layout, offset, limit))

    def window(self, window: str = LATEST) -> WindowInfo:
        return self._run(readers.window(self.layout, window))

    def freshness(self) -> Freshness:
        return self._run(readers.freshness(self.layout, self.retention_seconds))

    def leaderboard(self, window: str = LATEST, board: str = "score", platform: str | None = None,
                    limit: int = 20, offset: int = 0) -> Leaderboard:
        """`board`: score (raw influence), clean, received or engagers; `platform` with score only."""
        return self._run(readers.leaderboard(self.layout, window, board, platform, offset, limit))

    # --- flags and groups ---------------------------------------------------------------------------

    def flagged(self, window: str = LATEST, detector: str | None = None, limit: int = 20,
                offset: int = 0) -> FlaggedList:
        return self._run(readers.flagged(self.layout, window, detector, offset, limit))

    def groups(self, window: str = LATEST, limit: int = 20, offset: int = 0) -> GroupList:
        return self._run(readers.groups(self.layout, window, offset, limit))

    def group(self, group_id: str) -> Group:
        return self._run(readers.group(self.layout, group_id))
