"""The read API's routes: thin wrappers that validate parameters, run a reader plan and set caching.

Parameters are declared with the validation module's patterns and bounds, so bad input is refused
(422) before any key is formed and the OpenAPI document states the rules. A window's answers are
immutable once the window is closed (meta `final` = 1) and asked for by id; anything that moves
(open windows, the `latest` alias, users' current figures) is cached for a few seconds only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import redis
from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel

from clout.serving import plans, readers
from clout.serving.models import (
    ErrorBody,
    FlaggedList,
    Freshness,
    Group,
    GroupList,
    Health,
    Leaderboard,
    Readiness,
    UserHistory,
    UserView,
    UserWindowView,
    WindowInfo,
    WindowList,
)
from clout.serving.validation import (
    ID_PATTERN,
    LATEST,
    MAX_ID_LENGTH,
    PLATFORM_PATTERN,
    WINDOW_REF_PATTERN,
    Board,
    Detector,
)
from clout.store.client import AsyncClient
from clout.store.layout import KeyLayout

T = TypeVar("T")
IMMUTABLE = "public, max-age=31536000, immutable"
LIVE = "public, max-age=5"
NO_STORE = "no-store"


@dataclass(frozen=True)
class ServingState:
    """What every request needs, built once by the app's lifespan."""

    redis: AsyncClient
    layout: KeyLayout
    retention_seconds: int
    max_staleness_s: float | None


UserId = Annotated[str, Path(pattern=ID_PATTERN, max_length=MAX_ID_LENGTH, examples=["u123"],
                             description="user id: no whitespace, control characters, braces, backslash or * ? [ ]")]
GroupId = Annotated[str, Path(pattern=ID_PATTERN, max_length=MAX_ID_LENGTH, description="coordination group id")]
WindowRef = Annotated[str, Path(pattern=WINDOW_REF_PATTERN, max_length=25, examples=["1700000000-1700003600", LATEST],
                                description="window id `<start>-<end>` (epoch seconds) or `latest`")]
Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
Offset = Annotated[int, Query(ge=0, le=1_000_000, description="entries to skip")]
Platform = Annotated[str | None, Query(pattern=PLATFORM_PATTERN, max_length=64,
                                       description="only users of this platform (score board only)")]

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "no such window, user or group (never written, or expired)"},
    422: {"model": ErrorBody, "description": "an id, window name, limit or offset outside what the layout allows"},
    502: {"model": ErrorBody, "description": "a stored value does not match layout v1"},
    503: {"model": ErrorBody, "description": "Redis is unreachable"},
    413: {"model": ErrorBody, "description": "a request body (the API takes none)"},
    414: {"model": ErrorBody, "description": "path and query longer than 2048 bytes"},
    429: {"model": ErrorBody, "description": "more requests/s from this client than `serve_rate_limit` allows "
                                             "(header Retry-After)"},
}

probes = APIRouter(tags=["health"], responses={status: ERRORS[status] for status in (413, 414, 429)})
api = APIRouter(prefix="/v1", responses=ERRORS)


def _state(request: Request) -> ServingState:
    return request.app.state.serving


async def _read(request: Request, plan: plans.Plan[T]) -> T:
    return await plans.run_async(_state(request).redis, plan)


def _cache_control(window: WindowInfo | None = None, ref: str = LATEST) -> str:
    final = window is not None and window.final and ref != LATEST
    return IMMUTABLE if final else LIVE


def _answer(model: BaseModel, cache_control: str, status: int = 200) -> Response:
    """The model as JSON, serialised once: it was validated when built, so FastAPI's second pass is skipped."""
    return Response(model.model_dump_json(by_alias=True), status_code=status, media_type="application/json",
                    headers={"Cache-Control": cache_control})


# --- probes ---------------------------------------------------------------------------------------


@probes.get("/healthz", response_model=Health, summary="Liveness: the process answers (Redis is not consulted)")
async def healthz() -> Response:
    return _answer(Health(status="ok"), NO_STORE)


@probes.get("/readyz", response_model=Readiness,
            summary="Readiness: Redis answers and the newest window is fresh enough",
            responses={503: {"model": Readiness, "description": "not ready; `reasons` says why"}})
async def readyz(request: Request) -> Response:
    state = _state(request)
    try:
        fresh = await _read(request, readers.freshness(state.layout, state.retention_seconds))
    except (redis.RedisError, OSError) as error:
        readiness = Readiness(ready=False, redis=False, reasons=[f"redis: {type(error).__name__}"],
                              max_staleness_seconds=state.max_staleness_s, freshness=None)
        return _answer(readiness, NO_STORE, 503)
    except plans.StoredDataError as error:
        readiness = Readiness(ready=False, redis=True, reasons=[str(error)],
                              max_staleness_seconds=state.max_staleness_s, freshness=None)
        return _answer(readiness, NO_STORE, 503)
    reasons = _unready_reasons(fresh, state.max_staleness_s)
    readiness = Readiness(ready=not reasons, redis=True, reasons=reasons,
                          max_staleness_seconds=state.max_staleness_s, freshness=fresh)
    return _answer(readiness, NO_STORE, 503 if reasons else 200)


def _unready_reasons(fresh: Freshness, max_staleness_s: float | None) -> list[str]:
    if fresh.window is None:
        return ["no windows yet (is `clout run` running?)"]
    if max_staleness_s is not None and fresh.age_seconds is not None and fresh.age_seconds > max_staleness_s:
        return [f"newest results are {fresh.age_seconds:.0f} s old (more than {max_staleness_s:.0f} s)"]
    return []


# --- users ----------------------------------------------------------------------------------------


@api.get("/users/{user}", response_model=UserView, tags=["users"],
         summary="A user's current influence (newest window) with parts, rank, clean score, long-term and flags")
async def get_user(user: UserId, request: Request) -> Response:
    return _answer(await _read(request, readers.user(_state(request).layout, user)), LIVE)


@api.get("/users/{user}/history", response_model=UserHistory, tags=["users"],
         summary="A user's score and clean score per window, oldest first")
async def get_history(user: UserId, request: Request) -> Response:
    return _answer(await _read(request, readers.history(_state(request).layout, user)), LIVE)


@api.get("/users/{user}/windows/{window}", response_model=UserWindowView, tags=["users"],
         summary="A user's influence and activity in one window")
async def get_user_in_window(user: UserId, window: WindowRef, request: Request) -> Response:
    view = await _read(request, readers.user_in_window(_state(request).layout, user, window))
    return _answer(view, _cache_control(view.window, window))


# --- windows and leaderboards ---------------------------------------------------------------------


@api.get("/windows", response_model=WindowList, tags=["windows"],
         summary="Windows, newest first, with their graph computation")
async def list_windows(request: Request, limit: Limit = 20, offset: Offset = 0) -> Response:
    return _answer(await _read(request, readers.windows(_state(request).layout, offset, limit)), LIVE)


@api.get("/freshness", response_model=Freshness, tags=["windows"],
         summary="The newest window and how old its results are")
async def get_freshness(request: Request) -> Response:
    state = _state(request)
    return _answer(await _read(request, readers.freshness(state.layout, state.retention_seconds)), NO_STORE)


@api.get("/windows/{window}", response_model=WindowInfo, tags=["windows"], summary="One window (or `latest`)")
async def get_window(window: WindowRef, request: Request) -> Response:
    info = await _read(request, readers.window(_state(request).layout, window))
    return _answer(info, _cache_control(info, window))


@api.get("/windows/{window}/leaderboard", response_model=Leaderboard, tags=["leaderboards"],
         summary="A leaderboard: raw influence (`score`, optionally per platform), `clean`, `received` or `engagers`")
async def get_leaderboard(window: WindowRef, request: Request, board: Board = "score", platform: Platform = None,
                          limit: Limit = 20, offset: Offset = 0) -> Response:
    result = await _read(request, readers.leaderboard(_state(request).layout, window, board, platform, offset, limit))
    return _answer(result, _cache_control(result.window, window))


# --- flags and groups -----------------------------------------------------------------------------


@api.get("/windows/{window}/flagged", response_model=FlaggedList, tags=["flags"],
         summary="Flagged users of a window, highest flag score first, with reasons; optionally one detector")
async def get_flagged(window: WindowRef, request: Request, detector: Detector | None = None, limit: Limit = 20,
                      offset: Offset = 0) -> Response:
    result = await _read(request, readers.flagged(_state(request).layout, window, detector, offset, limit))
    return _answer(result, _cache_control(result.window, window))


@api.get("/windows/{window}/groups", response_model=GroupList, tags=["groups"],
         summary="Coordination groups of a window, largest first")
async def get_groups(window: WindowRef, request: Request, limit: Limit = 20, offset: Offset = 0) -> Response:
    result = await _read(request, readers.groups(_state(request).layout, window, offset, limit))
    return _answer(result, _cache_control(result.window, window))


@api.get("/groups/{group}", response_model=Group, tags=["groups"],
         summary="One coordination group: members, targets, synchrony")
async def get_group(group: GroupId, request: Request) -> Response:
    return _answer(await _read(request, readers.group(_state(request).layout, group)), LIVE)
