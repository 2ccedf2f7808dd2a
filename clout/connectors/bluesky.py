"""`clout ingest bluesky`: Bluesky's firehose through Jetstream v1 (`/subscribe`, JSON over WebSocket).

Mapping (actor = the event's `did`): a like or repost create -> `like` / `repost` of the author of
`record.subject.uri`; a follow create -> `follow` of `record.subject`; a post create -> `reply` to
the parent post's author, `mention` of each DID in its mention facets, `quote` of the author of an
embedded record (one post may give several events). Everything else (deletes, updates, other
collections, identity and account events, posts that touch nobody) is counted as skipped by reason.

Event time is `time_us`, the time Jetstream saw the commit: it is monotonic on the server, it is
the resume cursor, and it cannot be set by a client, while `createdAt` is whatever the posting app
wrote (backdated imports, clocks hours off); `createdAt` is kept in `extra`. Event ids come from
the record (DID, collection, rkey and which derived event), so a replay or a reconnect that
repeats a record repeats its ids and the pipeline drops the copies.

Resume: after each acknowledged flush the cursor (`time_us` of the newest event handled) goes to
a small file under the state dir; a reconnect or a restart asks for the stream from a few seconds
before it (at-least-once).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson

from clout.connectors.live import CursorStore, LiveCounts, LiveOptions, run_live
from clout.connectors.publisher import Publisher
from clout.schemas import InteractionEvent, InvalidEvent, Reason, event_from_dict

PLATFORM = "bluesky"
DEFAULT_URL = "wss://jetstream2.us-east.bsky.network/subscribe"
REWIND_US = 3_000_000  # a reconnect resumes this much before the acknowledged cursor
LIKE, REPOST, POST, FOLLOW = "app.bsky.feed.like", "app.bsky.feed.repost", "app.bsky.feed.post", "app.bsky.graph.follow"
MENTION_FEATURE = "app.bsky.richtext.facet#mention"
EMBED_RECORD, EMBED_WITH_MEDIA = "app.bsky.embed.record", "app.bsky.embed.recordWithMedia"


@dataclass(frozen=True)
class JetstreamOptions:
    url: str = DEFAULT_URL
    cursor: int | None = None  # time_us; None: the stored cursor, else live
    collections: tuple[str, ...] = ()
    zstd_dictionary: Path | None = None  # ask for compression, decode with this dictionary
    live: LiveOptions = field(default_factory=LiveOptions)


def subscribe_url(base: str, collections: tuple[str, ...], cursor: int | None, compress: bool) -> str:
    query: list[tuple[str, str]] = [("wantedCollections", c) for c in collections]
    if cursor is not None:
        query.append(("cursor", str(cursor)))
    if compress:
        query.append(("compress", "true"))
    if not query:
        return base
    return f"{base}{'&' if urlsplit(base).query else '?'}{urlencode(query)}"


# --- mapping --------------------------------------------------------------------------------------


def map_jetstream(event: Any) -> tuple[list[InteractionEvent], str | None]:
    """The InteractionEvents of one Jetstream event, or none and the reason it was skipped.

    Raises InvalidEvent when the frame is not a Jetstream event at all (the DLQ's business)."""
    if not isinstance(event, dict):
        raise InvalidEvent(Reason.NOT_OBJECT, f"top level is {type(event).__name__}, expected a Jetstream event")
    did, time_us, kind = event.get("did"), event.get("time_us"), event.get("kind")
    if not isinstance(did, str) or type(time_us) is not int or not isinstance(kind, str):
        raise InvalidEvent(Reason.BAD_SOURCE_LINE, "not a Jetstream event (needs did, time_us and kind)")
    if kind != "commit":
        return [], kind
    commit = event.get("commit")
    if not isinstance(commit, dict) or not all(isinstance(commit.get(k), str)
                                               for k in ("operation", "collection", "rkey")):
        raise InvalidEvent(Reason.BAD_SOURCE_LINE, "commit event without operation, collection and rkey")
    if commit["operation"] != "create":
        return [], commit["operation"]
    record = commit.get("record")
    if not isinstance(record, dict):
        raise InvalidEvent(Reason.BAD_SOURCE_LINE, "create commit without a record")
    collection = commit["collection"]
    derived = _derived(collection, record)
    if derived is None:
        return [], "other_collection"
    if not derived:
        return [], "post_without_interaction" if collection == POST else "no_target"
    uri = f"at://{did}/{collection}/{commit['rkey']}"
    base = {"v": 1, "ts": time_us // 1000, "platform": PLATFORM, "actor": did, "content_id": uri,
            "extra": {"createdAt": record.get("createdAt"), "time_us": time_us}}
    langs = record.get("langs")
    if isinstance(langs, list) and langs and isinstance(langs[0], str):
        base["lang"] = langs[0]
    events = [event_from_dict({**base, "event_id": f"{PLATFORM}:{did}/{collection}/{commit['rkey']}#{suffix}",
                               "kind": kind_, "target": target, "parent_id": parent})
              for kind_, suffix, target, parent in derived]
    return events, None


def _derived(collection: str, record: dict[str, Any]) -> list[tuple[str, str, str, str | None]] | None:
    """(kind, id suffix, target DID, parent URI) of each event a record gives; None: not ours."""
    if collection in (LIKE, REPOST):
        uri = _subject_uri(record.get("subject"))
        author = author_of(uri)
        kind = "like" if collection == LIKE else "repost"
        return [(kind, kind, author, uri)] if author else []
    if collection == FOLLOW:
        subject = record.get("subject")
        return [("follow", "follow", subject, None)] if isinstance(subject, str) and subject.startswith("did:") else []
    if collection != POST:
        return None
    out: list[tuple[str, str, str, str | None]] = []
    reply = record.get("reply")
    parent = _subject_uri(reply.get("parent")) if isinstance(reply, dict) else None
    if author_of(parent):
        out.append(("reply", "reply", author_of(parent), parent))
    for mentioned in _mentions(record.get("facets")):
        out.append(("mention", f"mention:{mentioned}", mentioned, None))
    quoted = _quoted_uri(record.get("embed"))
    if author_of(quoted):
        out.append(("quote", "quote", author_of(quoted), quoted))
    return out


def author_of(uri: str | None) -> str | None:
    """The repository DID of an `at://<did>/<collection>/<rkey>` URI."""
    if not isinstance(uri, str) or not uri.startswith("at://did:"):
        return None
    return uri[5:].split("/", 1)[0]


def _subject_uri(subject: Any) -> str | None:
    return subject.get("uri") if isinstance(subject, dict) else None


def _mentions(facets: Any) -> list[str]:
    """Distinct mentioned DIDs, in order (a post naming someone twice mentions them once)."""
    seen: dict[str, None] = {}
    for facet in facets if isinstance(facets, list) else []:
        features = facet.get("features") if isinstance(facet, dict) else None
        for feature in features if isinstance(features, list) else []:
            if isinstance(feature, dict) and feature.get("$type") == MENTION_FEATURE:
                did = feature.get("did")
                if isinstance(did, str) and did.startswith("did:"):
                    seen.setdefault(did)
    return list(seen)


def _quoted_uri(embed: Any) -> str | None:
    if not isinstance(embed, dict):
        return None
    if embed.get("$type") == EMBED_RECORD:
        return _subject_uri(embed.get("record"))
    if embed.get("$type") == EMBED_WITH_MEDIA:
        inner = embed.get("record")
        return _subject_uri(inner.get("record")) if isinstance(inner, dict) else None
    return None


# --- the connection -------------------------------------------------------------------------------


class JetstreamConnector:
    """Frames in, events and dead letters out, cursor kept; run() drives it over reconnects."""

    def __init__(self, publisher: Publisher, store: CursorStore, options: JetstreamOptions) -> None:
        self.publisher = publisher
        self.store = store
        self.options = options
        self.counts = LiveCounts()
        stored = store.load()
        self.acked_cursor = options.cursor if options.cursor is not None else stored
        # --cursor is taken as given; a stored cursor (a restart) is rewound like a reconnect.
        self._resume_from = options.cursor if options.cursor is not None else _rewound(stored)
        self._opened = False
        self._newest: int | None = None  # time_us of the newest event handled, not yet acknowledged
        self._decompress = _zstd_decoder(options.zstd_dictionary) if options.zstd_dictionary else None

    def run(self) -> dict[str, Any]:
        from websockets.exceptions import InvalidHandshake, WebSocketException

        run_live(f"ingest bluesky {self.options.url}", self._open, self.handle, self.flush, self.counts,
                 self.options.live, retryable=(WebSocketException, InvalidHandshake, OSError, TimeoutError))
        return {**self.counts.summary(), "published": self.publisher.counts.published, "cursor": self.acked_cursor}

    @contextlib.contextmanager
    def _open(self) -> Iterator[Iterator[bytes | None]]:
        from websockets.sync.client import connect

        if self._opened and self.acked_cursor is not None:  # every later connection rewinds a little
            self._resume_from = _rewound(self.acked_cursor)
        self._opened = True
        url = subscribe_url(self.options.url, self.options.collections, self._resume_from,
                            self._decompress is not None)
        with connect(url, open_timeout=10, ping_interval=20, ping_timeout=20, close_timeout=2,
                     max_size=2**21, compression=None, user_agent_header="clout") as socket:
            yield _frames(socket)

    def handle(self, frame: bytes) -> None:
        source = f"{self.options.url}#frame{self.counts.frames}"
        try:
            raw = self._decompress(frame) if self._decompress and isinstance(frame, bytes) else frame
            try:
                event = orjson.loads(raw)
            except orjson.JSONDecodeError as error:
                raise InvalidEvent(Reason.NOT_JSON, str(error)) from None
            events, skipped = map_jetstream(event)
        except InvalidEvent as error:
            self.publisher.reject(frame if isinstance(frame, bytes) else frame.encode(), error, source)
            self.counts.rejected += 1
            return
        self.counts.publish(self.publisher, events, skipped)
        self._newest = max(self._newest or 0, event["time_us"])
        self.counts.last_event_ms = self._newest // 1000

    def flush(self) -> None:
        """Wait for Kafka's acknowledgement; only then does the cursor move (and get stored)."""
        newest = self._newest
        self.publisher.flush()
        if newest is not None and newest != self.acked_cursor:
            self.acked_cursor = newest
            self.store.save(newest)


def _rewound(cursor: int | None) -> int | None:
    return None if cursor is None else max(0, cursor - REWIND_US)


def _frames(socket: Any) -> Iterator[bytes | None]:
    while True:
        try:
            message = socket.recv(timeout=0.5)
        except TimeoutError:
            yield None
            continue
        yield message.encode() if isinstance(message, str) else message


def _zstd_decoder(dictionary: Path) -> Any:
    try:
        import zstandard
    except ImportError:  # pragma: no cover - the message is the point
        raise RuntimeError("--zstd-dictionary needs the zstandard package: pip install 'clout[zstd]'") from None
    decompressor = zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(Path(dictionary).read_bytes()))

    def decode(frame: bytes) -> bytes:
        try:
            return decompressor.decompressobj().decompress(frame)
        except zstandard.ZstdError as error:
            raise InvalidEvent(Reason.NOT_JSON, f"zstd frame does not decompress: {error}") from None

    return decode


def cursor_store(settings_state_dir: Path, url: str) -> CursorStore:
    return CursorStore(settings_state_dir, f"bluesky-{urlsplit(url).netloc or url}")
