"""`create_app`: the read API and dashboard over the Redis layout, as one FastAPI application.

The app owns one redis.asyncio client for its lifetime (opened and closed by the lifespan), fails
fast when Redis is away (a short retry, then 503) and answers every error with the same small JSON
body, so a caller never sees a 500 for bad input nor a stack trace.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clout.serving.command import DEFAULT_MAX_STALENESS_S
from clout.serving.limits import RequestLimits
from clout.serving.models import ErrorBody, Problem
from clout.serving.plans import NotFound, StoredDataError
from clout.serving.routes import NO_STORE, ServingState, api, probes
from clout.serving.validation import RULES, InvalidInput
from clout.settings import Settings
from clout.store.client import async_client
from clout.store.layout import KeyLayout

STATIC = Path(__file__).resolve().parent / "static"
REDIS_TIMEOUT_S = 2.0
log = logging.getLogger("clout.serve")

DESCRIPTION = """Influence scores, leaderboards, flags and coordination groups computed by `clout run`,
read from Redis (key layout v1, `schemas/redis_layout.py`). Window ids are `<start>-<end>` in epoch
seconds; `latest` names the newest window. Answers about closed windows are immutable and cached
for a year; everything else for a few seconds. Errors are `{"error", "detail", "problems"}`."""


def create_app(settings: Settings, max_staleness_s: float | None = DEFAULT_MAX_STALENESS_S) -> FastAPI:
    """The app for these settings; `max_staleness_s` (None: no limit) is how old the newest results
    may be before /readyz answers 503."""
    app = FastAPI(title="clout", version="1", summary="Read API over clout's streaming results",
                  description=DESCRIPTION, lifespan=_lifespan(settings, max_staleness_s))
    app.include_router(probes)
    app.include_router(api)
    _add_error_handlers(app)
    _add_dashboard(app)
    _add_cors(app, settings)
    app.add_middleware(RequestLimits, rate=settings.serve_rate_limit, burst=settings.serve_rate_burst)
    app.add_middleware(ServerTiming)
    return app


def _add_cors(app: FastAPI, settings: Settings) -> None:
    """Off unless origins are configured: a browser page elsewhere may then only GET."""
    origins = [origin.strip() for origin in settings.serve_cors_origins.split(",") if origin.strip()]
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET"], allow_credentials=False)


class ServerTiming:
    """Adds `Server-Timing: app;dur=<ms>`: the app's own time for a request, from arrival to its answer.

    Beside a caller's end-to-end latency it separates the app's work from the network and the
    scheduling of the machine (bench/serve.py reports both). Pure ASGI, so it costs microseconds.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                took = f"app;dur={(time.perf_counter() - started) * 1000:.3f}".encode()
                message = {**message, "headers": [*message.get("headers", []), (b"server-timing", took)]}
            await send(message)

        await self.app(scope, receive, timed_send)


def _lifespan(settings: Settings,
              max_staleness_s: float | None) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = async_client(
            settings.redis_url, decode_responses=True, client_name="clout-serve",
            socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.01), 2), **settings.redis_client_config())
        app.state.serving = ServingState(client, KeyLayout(settings.key_prefix), settings.retention_seconds,
                                         max_staleness_s)
        try:
            yield
        finally:
            await client.aclose()

    return lifespan


# --- errors ---------------------------------------------------------------------------------------


def error_response(status: int, error: str, detail: str, problems: list[Problem] | None = None) -> JSONResponse:
    body = ErrorBody(error=error, detail=detail, problems=problems or [])
    return JSONResponse(body.model_dump(), status_code=status, headers={"Cache-Control": NO_STORE})


def _add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(InvalidInput, _invalid_input)
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(StoredDataError, _bad_stored_data)
    app.add_exception_handler(redis.RedisError, _redis_unavailable)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _internal)


async def _invalid_request(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = [_problem(item) for item in error.errors()]
    detail = "; ".join(f"{p.where}: {p.problem}" for p in problems) or "invalid request"
    return error_response(422, "invalid_input", detail, problems)


def _problem(item: dict[str, Any]) -> Problem:
    """One parameter's problem in words; a pattern mismatch says the rule, not the regex."""
    where = ".".join(str(part) for part in item.get("loc", ()))
    name = str(item.get("loc", ("",))[-1])
    if item.get("type") in {"string_pattern_mismatch", "string_too_long"} and name in RULES:
        return Problem(where=where, problem=RULES[name])
    return Problem(where=where, problem=str(item.get("msg")))


async def _invalid_input(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, InvalidInput)
    return error_response(422, "invalid_input", str(error), [Problem(where=error.where, problem=error.problem)])


async def _not_found(_request: Request, error: Exception) -> JSONResponse:
    return error_response(404, "not_found", str(error))


async def _bad_stored_data(request: Request, error: Exception) -> JSONResponse:
    log.error("%s %s: %s", request.method, request.url.path, error)
    return error_response(502, "bad_stored_data", str(error))


async def _redis_unavailable(request: Request, error: Exception) -> JSONResponse:
    log.warning("%s %s: redis: %r", request.method, request.url.path, error)
    return error_response(503, "redis_unavailable", f"Redis did not answer ({type(error).__name__})")


async def _http_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    names = {404: "not_found", 405: "method_not_allowed"}
    response = error_response(error.status_code, names.get(error.status_code, "http_error"), str(error.detail))
    response.headers.update(error.headers or {})
    return response


async def _internal(request: Request, error: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=error)
    return error_response(500, "internal", "internal error (logged)")


# --- dashboard ------------------------------------------------------------------------------------


def _add_dashboard(app: FastAPI) -> None:
    """The dashboard is plain files (no CDN): index.html at `/`, its script and styles under /static."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})
