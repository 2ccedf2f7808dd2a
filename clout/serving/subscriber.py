"""`FlagSubscriber`: new flags from the Redis Stream `flags:stream`, as one consumer of a consumer group.

A consumer group lets several workers share the flags (each entry goes to one of them) and
remembers, per consumer, what was delivered but not yet acknowledged. A subscriber therefore first
re-reads its own pending entries (a restart after a crash resumes where it stopped, at least once),
then new ones; `claim_stale` takes over entries a dead consumer left pending. An entry whose `flag`
is not a valid Flag can never be handled: it is acknowledged, counted and logged, not retried forever.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from pydantic import ValidationError

from clout.serving.models import Flag
from clout.settings import Settings
from clout.store.client import SyncClient, sync_client
from clout.store.layout import KeyLayout

log = logging.getLogger("clout.subscriber")
NEW = ">"
OWN_PENDING = "0"


@dataclass(frozen=True)
class FlagMessage:
    id: str
    flag: Flag


class FlagSubscriber:
    """One consumer (`consumer`) of a consumer group (`group`) on the layout's flag stream."""

    def __init__(self, client: SyncClient, layout: KeyLayout, group: str, consumer: str,
                 start: str = "$") -> None:
        """`start` is where a group created here begins: `$` new flags only, `0` all still in the stream."""
        if not group or not consumer:
            raise ValueError("a subscriber needs a group and a consumer name")
        self.redis = client
        self.stream = layout.flag_stream()
        self.group, self.consumer, self.start = group, consumer, start
        self.malformed = 0
        self._backlog_done = False
        self._group_ready = False

    @classmethod
    def from_settings(cls, settings: Settings, group: str, consumer: str, start: str = "$") -> FlagSubscriber:
        client = sync_client(settings.redis_url, decode_responses=True, client_name=f"clout-flags-{consumer}",
                                      **settings.redis_client_config())
        return cls(client, KeyLayout(settings.key_prefix), group, consumer, start)

    def ensure_group(self) -> bool:
        """Create the group (and the stream) unless it exists; True if it was created now."""
        try:
            self.redis.xgroup_create(self.stream, self.group, id=self.start, mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
            created = False
        else:
            created = True
        self._group_ready = True
        return created

    def read(self, count: int = 100, block_ms: int | None = 1000) -> list[FlagMessage]:
        """This consumer's unacknowledged entries first (after a restart), then new ones."""
        if not self._group_ready:
            self.ensure_group()
        if not self._backlog_done:
            pending = self._read(OWN_PENDING, count, None)
            if pending:
                return pending
            self._backlog_done = True
        return self._read(NEW, count, block_ms)

    def _read(self, position: str, count: int, block_ms: int | None) -> list[FlagMessage]:
        try:
            reply = self.redis.xreadgroup(self.group, self.consumer, {self.stream: position}, count=count,
                                          block=block_ms)
        except redis.ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            self.ensure_group()  # the stream was deleted (or expired) under us: start again
            return []
        entries = reply[0][1] if reply else []
        return self._messages(entries)

    def _messages(self, entries: list[tuple[Any, dict[Any, Any] | None]]) -> list[FlagMessage]:
        messages, broken = [], []
        for raw_id, fields in entries:
            entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            flag = _flag(fields)
            if flag is None:
                broken.append(entry_id)
            else:
                messages.append(FlagMessage(entry_id, flag))
        if broken:
            self.malformed += len(broken)
            log.warning("acknowledged %d malformed or trimmed flag entries: %s", len(broken), broken[:5])
            self.ack(*broken)
        return messages

    def ack(self, *messages: FlagMessage | str) -> int:
        ids = [m.id if isinstance(m, FlagMessage) else m for m in messages]
        return int(self.redis.xack(self.stream, self.group, *ids)) if ids else 0

    def claim_stale(self, min_idle_ms: int = 60_000, count: int = 100) -> list[FlagMessage]:
        """Take over entries other consumers were given but have not acknowledged for `min_idle_ms`."""
        if not self._group_ready:
            self.ensure_group()
        reply = self.redis.xautoclaim(self.stream, self.group, self.consumer, min_idle_ms, "0-0", count=count)
        return self._messages(reply[1])

    def run(self, handle: Callable[[Flag], Any], stop: threading.Event | None = None, count: int = 100,
            block_ms: int = 1000) -> None:
        """Hand each flag to `handle`, acknowledging it only once `handle` returned (at least once)."""
        stop = stop or threading.Event()
        while not stop.is_set():
            for message in self.read(count, block_ms):
                handle(message.flag)
                self.ack(message)

    def close(self) -> None:
        self.redis.close()


def _flag(fields: dict[Any, Any] | None) -> Flag | None:
    """The entry's flag; None when it is not one (or the entry was trimmed while pending)."""
    fields = fields or {}
    raw = fields.get("flag", fields.get(b"flag"))
    if raw is None:
        return None
    try:
        return Flag.model_validate_json(raw)
    except ValidationError:
        return None
