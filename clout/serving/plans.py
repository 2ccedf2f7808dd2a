"""How a read runs: as a *plan*, written once and driven over either redis client.

A plan is a generator that yields a batch of Redis commands and is sent their replies; it returns
its answer. Drivers run each batch as one pipelined round trip, over redis.asyncio for the API
(`run_async`) or redis for the client (`run_sync`), so the API and the client cannot disagree
about keys or formats.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis

from clout.store.client import AsyncClient, SyncClient

T = TypeVar("T")


@dataclass(frozen=True)
class Command:
    """One redis-py pipeline call: method name, arguments, keyword options (e.g. withscores)."""

    name: str
    args: tuple[Any, ...]
    options: dict[str, Any] = field(default_factory=dict)


def cmd(name: str, *args: Any, **options: Any) -> Command:
    return Command(name, args, options)


Batch = list[Command]
Plan = Generator[Batch, list[Any], T]


class NotFound(LookupError):
    """The layout has no such window, user or group (never written, or expired)."""


class StoredDataError(RuntimeError):
    """A stored value does not match layout v1 (a writer bug, or a key of the wrong type)."""


# --- drivers --------------------------------------------------------------------------------------


def run_sync(client: SyncClient, plan: Plan[T]) -> T:
    """Run a plan over a redis-py client created with `decode_responses=True`."""
    replies: list[Any] | None = None
    try:
        while True:
            batch = plan.send(replies) if replies is not None else next(plan)
            pipe = client.pipeline(transaction=False)
            _queue(pipe, batch)
            replies = pipe.execute()
    except StopIteration as done:
        return done.value
    except (redis.ResponseError, UnicodeDecodeError) as error:  # a wrong type, or bytes that are not text
        raise StoredDataError(str(error)) from error


async def run_async(client: AsyncClient, plan: Plan[T]) -> T:
    """Run a plan over a redis.asyncio client created with `decode_responses=True`."""
    replies: list[Any] | None = None
    try:
        while True:
            batch = plan.send(replies) if replies is not None else next(plan)
            pipe = client.pipeline(transaction=False)
            _queue(pipe, batch)
            replies = await pipe.execute()
    except StopIteration as done:
        return done.value
    except (redis.ResponseError, UnicodeDecodeError) as error:  # a wrong type, or bytes that are not text
        raise StoredDataError(str(error)) from error


def _queue(pipe: Any, batch: Batch) -> None:
    for command in batch:
        getattr(pipe, command.name)(*command.args, **command.options)
