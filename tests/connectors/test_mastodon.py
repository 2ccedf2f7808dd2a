"""`clout ingest mastodon` against a local streaming server replaying the documentation's real examples
(SSE and WebSocket framings), into the real Kafka."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest
from live_servers import MastodonReplay, sse_events
from test_ingest import consume_all

from clout.connectors.live import LiveOptions
from clout.connectors.mastodon import MastodonConnector, MastodonOptions
from clout.connectors.publisher import Publisher
from clout.connectors.topics import create_topics
from clout.settings import Secret, Settings

pytestmark = pytest.mark.servers
DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mastodon-streaming"
SSE, WS = DATA / "examples.sse", DATA / "examples.ws.jsonl"
TOKEN = "s3cret-token"
FAST = LiveOptions(stop_when_idle_s=1.5, backoff_base_s=0.05, backoff_cap_s=0.2, progress_interval_s=30)


def acct(account: dict) -> str:
    return account["acct"] if "@" in account["acct"] else account["acct"] + "@127.0.0.1"


def independent_reading(events: list[tuple[str, str | None]], me: str | None = None) -> Counter:
    """(kind, actor, target) of the updates and notifications, read with plain Python."""
    out: Counter = Counter()
    for event, data in events:
        if event == "update":
            status = json.loads(data)
            if status["reblog"]:
                out["repost", acct(status["account"]), acct(status["reblog"]["account"])] += 1
                continue
            mentions = {m["id"]: acct(m) for m in status["mentions"]}
            parent = status["in_reply_to_account_id"]
            if parent:
                target = acct(status["account"]) if parent == status["account"]["id"] else mentions.pop(parent)
                out["reply", acct(status["account"]), target] += 1
            for mentioned in set(mentions.values()):
                out["mention", acct(status["account"]), mentioned] += 1
        elif event == "notification" and me:
            notification = json.loads(data)
            kind = {"favourite": "like", "reblog": "repost", "follow": "follow", "mention": "mention"}
            out[kind[notification["type"]], acct(notification["account"]), me] += 1
    return out


def ws_events() -> list[tuple[str, str | None]]:
    return [(f["event"], f.get("payload")) for f in map(json.loads, WS.read_text().splitlines())]


def ingest(settings: Settings, instance: str, **options: object) -> dict:
    create_topics(settings)
    with Publisher(settings) as publisher:
        return MastodonConnector(publisher, Secret(TOKEN), MastodonOptions(instance=instance, live=FAST,
                                                                           **options)).run()


def triples(settings: Settings) -> tuple[Counter, list[dict]]:
    events = [orjson.loads(r.value) for r in consume_all(settings, settings.topic)]
    unique = {e["event_id"]: e for e in events}.values()
    return Counter((e["kind"], e["actor"], e["target"]) for e in unique), events


def test_public_stream_over_sse_with_heartbeats_and_a_drop(settings: Settings) -> None:
    server = MastodonReplay(SSE, WS, TOKEN)
    server.drop_after = [1]  # after the reply: it comes again, with its id
    with server.running_sse() as instance:
        summary = ingest(settings, instance, transport="sse")
    expected = independent_reading(sse_events(SSE))
    assert expected == {("reply", "freon@letsalllovela.in", "disarray@pl.nulled.red"): 1}
    got, events = triples(settings)
    assert got == expected and len(events) == 2 and all(e["platform"] == "mastodon:127.0.0.1" for e in events)
    assert summary["reconnects"] == 1 and server.accepted == 2
    assert summary["frames"] == 1 + 17, "heartbeats (:thump) are not frames"
    assert summary["skipped"] == {"announcement": 1, "announcement.delete": 1, "announcement.reaction": 1,
                                  "conversation": 1, "delete": 3, "filters_changed": 1, "status.update": 5,
                                  "status_without_interaction": 3}
    print("mastodon sse public:", summary["by_kind"], summary["skipped"])


def test_notifications_name_the_tokens_account(settings: Settings) -> None:
    server = MastodonReplay(SSE, WS, TOKEN)
    with server.running_sse() as instance:
        summary = ingest(settings, instance, transport="sse", stream="user:notification")
    got, events = triples(settings)
    notifications = [(event, data) for event, data in sse_events(SSE) if event == "notification"]
    assert got == independent_reading(notifications, me="alice@127.0.0.1") == {
        ("mention", "a@pl.nulled.red", "alice@127.0.0.1"): 1}
    assert events[0]["event_id"] == "mastodon:127.0.0.1:108914343542683797#mention:alice@127.0.0.1"
    assert summary["by_kind"] == {"mention": 1}


def test_public_stream_over_websocket_with_malformed_frames(settings: Settings) -> None:
    server = MastodonReplay(SSE, WS, TOKEN)
    bad = ['{"stream": ["public"], "event": "update", "payload": "{\\"id\\": \\"1\\", \\"acc', "[1, 2]", "not json",
           '{"stream": ["public"], "event": "update", "payload": "[]"}']
    server.extra_ws = bad
    with server.running_ws() as instance:
        summary = ingest(settings, instance, transport="websocket")
    expected = independent_reading(ws_events())
    assert expected == {("reply", "tobtobxx@fosstodon.org", "tobtobxx@fosstodon.org"): 1}  # a self-reply
    assert triples(settings)[0] == expected
    assert summary["skipped"] == {"delete": 1, "filters_changed": 1} and summary["rejected"] == 4
    letters = consume_all(settings, settings.dlq_topic)
    assert sorted((r.value.decode(), dict(r.headers)["reason"].decode()) for r in letters) == sorted(
        zip(bad, ["not_json", "bad_source_line", "not_json", "not_object"], strict=True))


@pytest.mark.parametrize("transport", ["sse", "websocket"])
def test_a_wrong_token_is_a_clear_error_and_a_non_zero_exit(settings: Settings, transport: str) -> None:
    create_topics(settings)
    server = MastodonReplay(SSE, WS, TOKEN)
    with (server.running_sse() if transport == "sse" else server.running_ws()) as instance:
        env = {**os.environ, "CLOUT_MASTODON_ACCESS_TOKEN": "wrong", "CLOUT_TOPIC": settings.topic,
               "CLOUT_DLQ_TOPIC": settings.dlq_topic}
        result = subprocess.run([sys.executable, "-m", "clout.cli", "ingest", "mastodon", "--instance", instance,
                                 "--transport", transport, "--stop-when-idle", "5"], env=env, capture_output=True,
                                text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "127.0.0.1 refused the access token (HTTP 401)" in result.stderr
    assert "wrong" not in result.stderr and "Traceback" not in result.stderr
