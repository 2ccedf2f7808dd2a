"""What one caller may ask of `clout serve`: a request rate per client and a bounded request size.

The API only reads, so a request carries no body: anything with one (or a chunked one) is refused
with 413 before the app reads it, and a target longer than any valid one with 414. A client (its
address as the server sees it) that exceeds its rate gets 429 with Retry-After. Both are pure ASGI
and answer with the API's error body, so schemathesis and callers see one error shape.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

MAX_BODY_BYTES = 0  # GET-only API
MAX_TARGET_BYTES = 2048  # path + query: the longest valid one is a few hundred bytes
MAX_TRACKED_CLIENTS = 100_000  # buckets kept before the oldest are forgotten


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    """A token bucket per client: `rate` requests/s sustained, `burst` at once; rate 0 turns it off."""

    rate: float
    burst: float
    buckets: dict[str, _Bucket] = field(default_factory=dict)

    def wait_s(self, client: str, now: float) -> float:
        """0 if the request may go now (and is counted), else seconds until it could."""
        bucket = self.buckets.get(client)
        if bucket is None:
            if len(self.buckets) >= MAX_TRACKED_CLIENTS:
                self._forget_full(now)
            bucket = self.buckets[client] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        """Clients whose bucket has refilled are indistinguishable from new ones: drop them."""
        refill = self.burst / self.rate
        self.buckets = {c: b for c, b in self.buckets.items() if now - b.updated < refill}


class RequestLimits:
    """ASGI middleware: 413 for a body, 414 for an over-long target, 429 past the client's rate."""

    def __init__(self, app: ASGIApp, rate: float, burst: float) -> None:
        self.app = app
        self.limiter = RateLimiter(rate, max(burst, 1.0)) if rate > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, error, detail, headers = refusal
        body = orjson.dumps({"error": error, "detail": detail, "problems": []})
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"cache-control", b"no-store"),
                                (b"content-length", str(len(body)).encode()), *headers]})
        await send({"type": "http.response.body", "body": body})

    def _refusal(self, scope: Scope) -> tuple[int, str, str, list[tuple[bytes, bytes]]] | None:
        headers = dict(scope.get("headers", []))
        length = headers.get(b"content-length", b"0")
        if b"chunked" in headers.get(b"transfer-encoding", b"") or not length.isdigit() or \
                int(length) > MAX_BODY_BYTES:
            return 413, "body_too_large", "the read API takes no request body", []
        target = len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string", b""))
        if target > MAX_TARGET_BYTES:
            return 414, "uri_too_long", f"path and query are {target} bytes, at most {MAX_TARGET_BYTES}", []
        if self.limiter is not None:
            client = (scope.get("client") or ("?", 0))[0]
            wait = self.limiter.wait_s(client, time.monotonic())
            if wait:
                return (429, "rate_limited", f"more than {self.limiter.rate:g} requests/s from {client}",
                        [(b"retry-after", str(math.ceil(wait)).encode())])
        return None
