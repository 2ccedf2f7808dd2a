"""Local stand-ins for the live platforms, replaying recorded payloads on 127.0.0.1 (a free port).

JetstreamReplay serves Jetstream v1 `/subscribe` as the real service does: events in `time_us`
order from `cursor` on, commits filtered by `wantedCollections` (prefixes with `.*` too; identity
and account events always pass), zstd with the dictionary when `compress=true`. Faults on demand:
a 503 before the handshake, a dropped socket after N frames, malformed frames at given positions.

MastodonReplay serves the streaming API over SSE (`/api/v1/streaming/public`, `.../user/notification`)
or WebSocket (`/api/v1/streaming?stream=`), with `:thump` heartbeats, the token checked (401 otherwise),
and `/api/v1/accounts/verify_credentials`.
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Request, Response, ServerConnection, serve


class JetstreamReplay:
    def __init__(self, *files: Path, dictionary: Path | None = None) -> None:
        lines = [line for path in files for line in path.read_bytes().splitlines() if line.strip()]
        self.events = sorted(((orjson.loads(line)["time_us"], line) for line in lines), key=lambda e: e[0])
        self.dictionary = dictionary
        self.refuse_next = 0  # answer 503 to this many handshakes
        self.drop_after: list[int] = []  # per connection: drop the socket after this many frames
        self.malformed: dict[int, bytes | str] = {}  # frame position (first connection) -> bad frame
        self.connections: list[dict[str, list[str]]] = []  # the query of each accepted connection
        self.handshakes = 0

    def _request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.handshakes += 1
        if self.refuse_next:
            self.refuse_next -= 1
            return connection.respond(503, "overloaded, try later\n")
        return None

    def _handler(self, connection: ServerConnection) -> None:
        query = parse_qs(urlsplit(connection.request.path).query)
        self.connections.append(query)
        first = len(self.connections) == 1
        cursor = int(query["cursor"][0]) if "cursor" in query else None
        wanted = query.get("wantedCollections", [])
        compress = query.get("compress") == ["true"]
        encoder = None
        if compress:
            import zstandard

            encoder = zstandard.ZstdCompressor(dict_data=zstandard.ZstdCompressionDict(self.dictionary.read_bytes()))
        drop = self.drop_after.pop(0) if self.drop_after else None
        sent = 0
        for time_us, line in self.events:
            if cursor is not None and time_us < cursor:
                continue
            if not _wanted(orjson.loads(line), wanted):
                continue
            if first and sent in self.malformed:
                connection.send(self.malformed.pop(sent))
            if drop is not None and sent >= drop:
                connection.socket.shutdown(socket.SHUT_RDWR)  # abrupt: no close frame
                return
            connection.send(encoder.compress(line) if encoder else line.decode())
            sent += 1
        with contextlib.suppress(ConnectionClosed):
            while True:  # stay open and quiet, as a live stream between events
                connection.recv()

    @contextlib.contextmanager
    def running(self) -> Iterator[str]:
        with serve(self._handler, "127.0.0.1", 0, process_request=self._request, compression=None) as server:
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}/subscribe"
            server.shutdown()


def _wanted(event: dict, wanted: list[str]) -> bool:
    if not wanted or event["kind"] != "commit":
        return True
    collection = event["commit"]["collection"]
    return any(collection == w or (w.endswith(".*") and collection.startswith(w[:-1])) for w in wanted)


# --- Mastodon -------------------------------------------------------------------------------------


def sse_events(path: Path) -> list[tuple[str, str | None]]:
    """(event, data) of each block of an SSE file."""
    out, event = [], None
    for line in path.read_text().splitlines():
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            out.append((event, line[5:].strip()))
    return out


class MastodonReplay:
    ME = {"id": "1", "username": "alice", "acct": "alice"}

    def __init__(self, sse_file: Path, ws_file: Path, token: str) -> None:
        self.sse = sse_events(sse_file)
        self.ws = [line for line in ws_file.read_text().splitlines() if line.strip()]
        self.token = token
        self.extra_ws: list[str] = []  # frames sent before the file's (malformed ones)
        self.drop_after: list[int] = []
        self.accepted = 0

    def authorised(self, headers: object) -> bool:
        return headers.get("Authorization") == f"Bearer {self.token}"  # type: ignore[attr-defined]

    # SSE over plain HTTP (chunked, as the streaming server answers)
    @contextlib.contextmanager
    def running_sse(self) -> Iterator[str]:
        replay = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if not replay.authorised(self.headers):
                    body = b'{"error":"The access token is invalid"}'
                    self.send_response(401)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                path = urlsplit(self.path).path
                if path == "/api/v1/accounts/verify_credentials":
                    body = orjson.dumps(replay.ME)
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                drop = replay.drop_after.pop(0) if replay.drop_after else None
                replay.accepted += 1
                notifications = path.endswith("/user/notification")  # that stream has only those
                stream = [e for e in replay.sse if (e[0] == "notification") == notifications]
                try:
                    self._chunk(b":)\n")
                    for n, (event, data) in enumerate(stream):
                        if drop is not None and n >= drop:
                            self.connection.shutdown(socket.SHUT_RDWR)
                            return
                        if n % 3 == 0:
                            self._chunk(b":thump\n\n")
                        self._chunk(f"event: {event}\ndata: {data}\n\n".encode())
                    while True:
                        time.sleep(0.5)
                        self._chunk(b":thump\n\n")
                except OSError:
                    return

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(b"%x\r\n%b\r\n" % (len(data), data))
                self.wfile.flush()

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_address[1]}"
        server.shutdown()
        server.server_close()

    # WebSocket, with the REST lookup on the same port
    def _ws_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if not self.authorised(request.headers):
            return connection.respond(401, '{"error":"The access token is invalid"}')
        if urlsplit(request.path).path == "/api/v1/accounts/verify_credentials":
            response = connection.respond(200, orjson.dumps(self.ME).decode())
            return response
        return None

    def _ws_handler(self, connection: ServerConnection) -> None:
        drop = self.drop_after.pop(0) if self.drop_after else None
        self.accepted += 1
        frames = [*self.extra_ws, *self.ws] if self.accepted == 1 else self.ws
        for n, frame in enumerate(frames):
            if drop is not None and n >= drop:
                connection.socket.shutdown(socket.SHUT_RDWR)
                return
            connection.send(frame)
        with contextlib.suppress(ConnectionClosed):
            while True:
                connection.recv()

    @contextlib.contextmanager
    def running_ws(self) -> Iterator[str]:
        with serve(self._ws_handler, "127.0.0.1", 0, process_request=self._ws_request, compression=None) as server:
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            yield f"http://127.0.0.1:{server.socket.getsockname()[1]}"
            server.shutdown()
