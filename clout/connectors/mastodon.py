"""`clout ingest mastodon`: one instance's streaming API, over Server-Sent Events or WebSocket.

Streams: `public` (statuses: a reblog -> `repost` of the original's author; a reply -> `reply` to
`in_reply_to_account_id`; each other account in `mentions[]` -> `mention`: the parent's author,
whom Mastodon adds to every reply's mentions, counts once, as the reply) and `user:notification`
(`favourite` -> `like`, `reblog` -> `repost`, `follow` -> `follow`, `mention` -> `mention`; actor
the notifying account, target the token's own account). Accounts are named `user@domain` (a local
account's `acct` has no domain: the instance's is added), since ids are only unique per instance;
the platform is `mastodon:<instance host>`. Edits (`status.update`), `delete`, `conversation`,
`filters_changed`, announcements and other notification types are counted as skipped.

Mastodon keeps no history for a stream: what is posted while clout is disconnected is never sent
(a gap). Event ids are the status's or notification's own, so a status seen twice (two streams,
or `public` and a `mention` notification) is still one event to the pipeline.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson

from clout.connectors.live import TICK_SECONDS, LiveCounts, LiveOptions, SourceRefused, run_live
from clout.connectors.publisher import Publisher
from clout.schemas import InteractionEvent, InvalidEvent, Reason, event_from_dict
from clout.settings import Secret

NOTIFICATION_KINDS = {"favourite": "like", "reblog": "repost", "follow": "follow", "mention": "mention"}
# A stream sends a `:thump` comment about every 15 s; this long without a byte means a dead connection.
SILENCE_LIMIT_S = 60.0

# Frames that are no streaming event at all (they go to the DLQ), as event names no server sends.
NOT_JSON, NOT_EVENT = "(not json)", "(not an event)"
# (event name, payload text or None, the frame's original bytes)
StreamFrame = tuple[str, str | None, bytes]


@dataclass(frozen=True)
class MastodonOptions:
    instance: str
    streaming_url: str | None = None
    stream: str = "public"  # public | user:notification
    transport: str = "sse"  # sse | websocket
    live: LiveOptions = field(default_factory=LiveOptions)


class MastodonMapper:
    """Statuses and notifications of one instance as InteractionEvents."""

    def __init__(self, host: str, me: str | None = None) -> None:
        self.host = host
        self.platform = f"mastodon:{host}"
        self.me = me

    def account(self, account: Any) -> str:
        acct = account.get("acct") if isinstance(account, dict) else None
        if not isinstance(acct, str) or not acct:
            raise InvalidEvent(Reason.MISSING_FIELD, "account without acct")
        return acct if "@" in acct else f"{acct}@{self.host}"

    def status(self, status: dict[str, Any]) -> list[InteractionEvent]:
        actor = self.account(status.get("account"))
        base = self._base(status, actor, status.get("created_at"))
        reblog = status.get("reblog")
        if isinstance(reblog, dict):
            return [self._event(base, "repost", self.account(reblog.get("account")), f"{status.get('id')}#repost",
                                reblog.get("uri"))]
        events = []
        mentions = {m.get("id"): self.account(m) for m in status.get("mentions") or [] if isinstance(m, dict)}
        parent_account = status.get("in_reply_to_account_id")
        if parent_account is not None:
            account = status.get("account") or {}
            target = actor if parent_account == account.get("id") else mentions.get(parent_account)
            if target:
                events.append(self._event(base, "reply", target, f"{status.get('id')}#reply", None))
                mentions.pop(parent_account, None)
        for mentioned in dict.fromkeys(mentions.values()):
            events.append(self._event(base, "mention", mentioned, f"{status.get('id')}#mention:{mentioned}", None))
        return events

    def notification(self, notification: dict[str, Any]) -> tuple[list[InteractionEvent], str | None]:
        kind = NOTIFICATION_KINDS.get(notification.get("type"))  # type: ignore[arg-type]
        if kind is None:
            return [], f"notification:{notification.get('type')}"
        if self.me is None:  # only `user:notification` knows whose notifications they are
            return [], "notification_outside_user_stream"
        actor = self.account(notification.get("account"))
        base = self._base(notification, actor, notification.get("created_at"))
        status = notification.get("status") if isinstance(notification.get("status"), dict) else {}
        if kind == "mention" and status.get("id"):  # the same id as the status's mention on `public`
            native = f"{status['id']}#mention:{self.me}"
        else:
            native = f"n{notification.get('id')}"
        return [self._event(base, kind, self.me or "", native, status.get("uri"))], None

    def _base(self, record: dict[str, Any], actor: str, created_at: Any) -> dict[str, Any]:
        if not isinstance(created_at, str):
            raise InvalidEvent(Reason.MISSING_FIELD, "created_at is missing")
        try:
            ts = int(datetime.fromisoformat(created_at).timestamp() * 1000)
        except ValueError:
            raise InvalidEvent(Reason.WRONG_TYPE, f"created_at {created_at!r} is not an ISO time") from None
        if record.get("id") is None:
            raise InvalidEvent(Reason.MISSING_FIELD, "id is missing")
        base = {"v": 1, "ts": ts, "platform": self.platform, "actor": actor, "content_id": record.get("uri")}
        if isinstance(record.get("language"), str):
            base["lang"] = record["language"]
        return base

    def _event(self, base: dict[str, Any], kind: str, target: str, native: str,
               parent: Any) -> InteractionEvent:
        return event_from_dict({**base, "event_id": f"{self.platform}:{native}", "kind": kind, "target": target,
                                "parent_id": parent if isinstance(parent, str) else None})


class MastodonConnector:
    def __init__(self, publisher: Publisher, token: Secret | None, options: MastodonOptions) -> None:
        if token is None:
            raise RuntimeError("a Mastodon access token is needed (Mastodon >= 4.2 requires one for every "
                               "stream): set CLOUT_MASTODON_ACCESS_TOKEN or mastodon_access_token in --config")
        self.publisher = publisher
        self.token = token
        self.options = options
        self.host = urlsplit(options.instance).hostname or options.instance
        self.counts = LiveCounts()
        self.mapper = MastodonMapper(self.host)

    def run(self) -> dict[str, Any]:
        from websockets.exceptions import InvalidHandshake, WebSocketException

        if self.options.stream == "user:notification":
            self.mapper.me = self.mapper.account(self._get("/api/v1/accounts/verify_credentials"))
        run_live(f"ingest mastodon {self.host} {self.options.stream}", self._open, self.handle,
                 self.publisher.flush, self.counts, self.options.live,
                 retryable=(WebSocketException, InvalidHandshake, OSError, TimeoutError, ConnectionError))
        return {**self.counts.summary(), "published": self.publisher.counts.published, "platform": self.mapper.platform}

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token.reveal()}", "User-Agent": "clout"}

    def _get(self, path: str) -> Any:
        request = urllib.request.Request(self.options.instance.rstrip("/") + path, headers=self._headers())
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return orjson.loads(response.read())
        except urllib.error.HTTPError as error:
            raise _refused(error.code, self.host) from None

    @contextlib.contextmanager
    def _open(self) -> Iterator[Iterator[StreamFrame | None]]:
        base = (self.options.streaming_url or self.options.instance).rstrip("/")
        if self.options.transport == "websocket":
            with self._websocket(base) as frames:
                yield frames
        else:
            with self._sse(base) as frames:
                yield frames

    @contextlib.contextmanager
    def _websocket(self, base: str) -> Iterator[Iterator[StreamFrame | None]]:
        from websockets.exceptions import InvalidStatus
        from websockets.sync.client import connect

        url = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        url = f"{url}/api/v1/streaming?{urlencode({'stream': self.options.stream})}"
        try:
            socket = connect(url, additional_headers=self._headers(), open_timeout=10, ping_interval=20,
                             ping_timeout=20, close_timeout=2, compression=None)
        except InvalidStatus as error:
            if error.response.status_code in (401, 403):
                raise _refused(error.response.status_code, self.host) from None
            raise
        with socket:
            yield _websocket_frames(socket)

    @contextlib.contextmanager
    def _sse(self, base: str) -> Iterator[Iterator[StreamFrame | None]]:
        path = "public" if self.options.stream == "public" else "user/notification"
        request = urllib.request.Request(f"{base}/api/v1/streaming/{path}",
                                         headers={**self._headers(), "Accept": "text/event-stream"})
        try:
            response = urllib.request.urlopen(request, timeout=SILENCE_LIMIT_S)
        except urllib.error.HTTPError as error:
            if error.code in (401, 403):
                raise _refused(error.code, self.host) from None
            raise
        frames: queue.Queue[StreamFrame | BaseException] = queue.Queue(maxsize=10_000)
        reader = threading.Thread(target=_read_sse, args=(response, frames), daemon=True)
        reader.start()
        try:
            yield _queued(frames)
        finally:
            response.close()

    def handle(self, frame: StreamFrame) -> None:
        event, payload, raw = frame
        source = f"{self.mapper.platform}/{self.options.stream}#frame{self.counts.frames}"
        try:
            events, skipped = self._map(event, payload)
        except InvalidEvent as error:
            self.publisher.reject(raw, error, source)
            self.counts.rejected += 1
            return
        self.counts.publish(self.publisher, events, skipped)
        for interaction in events:
            self.counts.last_event_ms = max(self.counts.last_event_ms or 0, interaction.ts)

    def _map(self, event: str, payload: str | None) -> tuple[list[InteractionEvent], str | None]:
        if event == NOT_JSON:
            raise InvalidEvent(Reason.NOT_JSON, "the WebSocket frame is not JSON")
        if event == NOT_EVENT:
            raise InvalidEvent(Reason.BAD_SOURCE_LINE, "the WebSocket frame is not a streaming event")
        if event not in ("update", "notification"):
            return [], event
        try:
            record = orjson.loads(payload or "")
        except orjson.JSONDecodeError as error:
            raise InvalidEvent(Reason.NOT_JSON, f"{event} payload: {error}") from None
        if not isinstance(record, dict):
            raise InvalidEvent(Reason.NOT_OBJECT, f"{event} payload is {type(record).__name__}, expected an object")
        if event == "notification":
            return self.mapper.notification(record)
        events = self.mapper.status(record)
        return events, None if events else "status_without_interaction"


def _refused(status: int, host: str) -> SourceRefused:
    return SourceRefused(f"{host} refused the access token (HTTP {status}): check CLOUT_MASTODON_ACCESS_TOKEN "
                         "(the token needs the read:statuses / read:notifications scope)")


def _websocket_frames(socket: Any) -> Iterator[StreamFrame | None]:
    """WebSocket frames are `{"stream": [...], "event": ..., "payload": "<JSON text>"}`."""
    while True:
        try:
            message = socket.recv(timeout=TICK_SECONDS)
        except TimeoutError:
            yield None
            continue
        raw = message.encode() if isinstance(message, str) else message
        try:
            frame = orjson.loads(raw)
        except orjson.JSONDecodeError:
            yield NOT_JSON, None, raw
            continue
        if not isinstance(frame, dict) or not isinstance(frame.get("event"), str):
            yield NOT_EVENT, None, raw
            continue
        payload = frame.get("payload")
        yield frame["event"], payload if isinstance(payload, str) else None, raw


def _read_sse(response: Any, frames: queue.Queue[StreamFrame | BaseException]) -> None:
    """The reader thread: SSE blocks (`event:`/`data:` lines up to a blank line) into the queue;
    comments (`:thump` heartbeats) only keep the connection's silence timer from firing."""
    event, data = "message", []
    try:
        for line in response:
            text = line.decode("utf-8", errors="replace").rstrip("\r\n")
            if not text:
                if data:
                    payload = "\n".join(data)
                    frames.put((event, payload, f"event: {event}\ndata: {payload}".encode()))
                event, data = "message", []
            elif text.startswith(":"):
                continue
            elif text.startswith("event:"):
                event = text[6:].strip()
            elif text.startswith("data:"):
                data.append(text[5:].lstrip(" "))
        frames.put(ConnectionError("the server ended the stream"))
    except BaseException as error:
        frames.put(error)


def _queued(frames: queue.Queue[StreamFrame | BaseException]) -> Iterator[StreamFrame | None]:
    while True:
        try:
            item = frames.get(timeout=TICK_SECONDS)
        except queue.Empty:
            yield None
            continue
        if isinstance(item, BaseException):
            raise item
        yield item
