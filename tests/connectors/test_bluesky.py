"""`clout ingest bluesky` against a local Jetstream replaying the real recorded v1 events, into the real Kafka."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from live_servers import JetstreamReplay
from test_ingest import consume_all

from clout.connectors.bluesky import JetstreamConnector, JetstreamOptions, cursor_store, map_jetstream
from clout.connectors.live import LiveOptions
from clout.connectors.publisher import Publisher
from clout.connectors.topics import create_topics
from clout.settings import Settings

pytestmark = pytest.mark.servers
DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "bluesky-jetstream"
EXPECTED, GOLDEN, DICTIONARY = DATA / "expected_v1.jsonl", DATA / "golden_v1.jsonl", DATA / "legacy_subscribe.zdict"
FAST = LiveOptions(stop_when_idle_s=1.5, backoff_base_s=0.05, backoff_cap_s=0.2, progress_interval_s=30)


def independent_reading(*paths: Path) -> Counter:
    """The mapping applied with plain Python: (kind, actor, target) of every interaction in the files."""
    out: Counter = Counter()
    for path in paths:
        for line in path.read_text().splitlines():
            event = json.loads(line)
            commit = event.get("commit") or {}
            if event["kind"] != "commit" or commit["operation"] != "create":
                continue
            record, collection, did = commit["record"], commit["collection"], event["did"]
            if collection in ("app.bsky.feed.like", "app.bsky.feed.repost"):
                out[collection.rsplit(".", 1)[1], did, record["subject"]["uri"].split("/")[2]] += 1
            elif collection == "app.bsky.graph.follow":
                out["follow", did, record["subject"]] += 1
            elif collection == "app.bsky.feed.post":
                if "reply" in record:
                    out["reply", did, record["reply"]["parent"]["uri"].split("/")[2]] += 1
                for facet in record.get("facets", []):
                    for feature in facet["features"]:
                        if feature["$type"] == "app.bsky.richtext.facet#mention":
                            out["mention", did, feature["did"]] += 1
                if record.get("embed", {}).get("$type") == "app.bsky.embed.record":
                    out["quote", did, record["embed"]["record"]["uri"].split("/")[2]] += 1
    return out


def kinds(reading: Counter) -> Counter:
    by_kind: Counter = Counter()
    for (kind, _, _), n in reading.items():
        by_kind[kind] += n
    return by_kind


def ingest(settings: Settings, url: str, **options: object) -> dict:
    create_topics(settings)
    with Publisher(settings) as publisher:
        connector = JetstreamConnector(publisher, cursor_store(settings.state_dir, url),
                                       JetstreamOptions(url=url, live=FAST, **options))
        return connector.run()


def interactions(settings: Settings) -> list[dict]:
    return [orjson.loads(r.value) for r in consume_all(settings, settings.topic)]


@pytest.fixture
def mine(settings: Settings, tmp_path: Path) -> Settings:
    return settings.replace(state_dir=tmp_path)


def test_recorded_files_map_to_the_independent_reading(mine: Settings) -> None:
    expected = independent_reading(EXPECTED, GOLDEN)
    assert kinds(independent_reading(EXPECTED)) == {"like": 105, "repost": 15, "reply": 8, "follow": 6}
    assert kinds(expected) == {"like": 106, "repost": 16, "reply": 9, "follow": 7}
    server = JetstreamReplay(EXPECTED, GOLDEN)
    with server.running() as url:
        summary = ingest(mine, url)
    events = interactions(mine)
    assert Counter((e["kind"], e["actor"], e["target"]) for e in events) == expected
    assert len({e["event_id"] for e in events}) == len(events) == summary["events"] == 138
    assert all(e["platform"] == "bluesky" and e["extra"]["createdAt"] for e in events)
    assert summary["skipped"] == {"account": 2, "delete": 5, "identity": 2, "other_collection": 2,
                                  "post_without_interaction": 9, "update": 4}
    assert summary["frames"] == 162 and summary["rejected"] == 0 and summary["reconnects"] == 0
    assert consume_all(mine, mine.dlq_topic) == []
    print("bluesky counts by kind:", dict(kinds(expected)), "skipped:", summary["skipped"])


def test_drops_and_a_503_lose_nothing_and_resume_from_the_rewound_cursor(mine: Settings) -> None:
    server = JetstreamReplay(EXPECTED)
    server.refuse_next = 1
    server.drop_after = [40, 90]
    with server.running() as url:
        summary = ingest(mine, url)
    events = interactions(mine)
    ids = Counter(e["event_id"] for e in events)
    assert len(ids) == 134, "an event is missing after the reconnects"
    assert Counter((e["kind"], e["actor"], e["target"]) for e in {e["event_id"]: e for e in events}.values()) \
        == independent_reading(EXPECTED)
    # At-least-once: the rewind repeats some records, byte for byte, so the pipeline's de-duplication drops them.
    copies = {i: {orjson.dumps(e) for e in events if e["event_id"] == i} for i, n in ids.items() if n > 1}
    assert all(len(values) == 1 for values in copies.values())
    assert summary["reconnects"] == 3 and server.handshakes == 4
    assert "cursor" not in server.connections[0] and all("cursor" in q for q in server.connections[1:])
    print(f"reconnect test: {summary['reconnects']} reconnects, {len(events)} records for {len(ids)} events, "
          f"{len(events) - len(ids)} repeated by the rewind, cursor {summary['cursor']}")
    assert cursor_store(mine.state_dir, url).load() == summary["cursor"] == server.events[-1][0]


def test_restart_resumes_from_the_stored_cursor(mine: Settings) -> None:
    server = JetstreamReplay(EXPECTED)
    with server.running() as url:
        ingest(mine, url)
        again = ingest(mine, url)
    rewound = int(server.connections[1]["cursor"][0])
    assert rewound == server.events[-1][0] - 3_000_000
    assert again["events"] == sum(len(map_jetstream(orjson.loads(line))[0]) for t, line in server.events
                                  if t >= rewound) > 0


def test_malformed_frames_go_to_the_dlq_and_the_stream_goes_on(mine: Settings) -> None:
    server = JetstreamReplay(EXPECTED)
    bad = {3: '{"did": "did:plc:x", "time_us": 17', 10: b"\x00\xff\xfe garbage", 20: "[1, 2, 3]",
           30: '{"kind": "commit"}'}
    server.malformed = dict(bad)
    with server.running() as url:
        summary = ingest(mine, url)
    assert summary["events"] == 134 and summary["rejected"] == 4
    letters = consume_all(mine, mine.dlq_topic)
    got = sorted((r.value, dict(r.headers)["reason"].decode()) for r in letters)
    assert got == sorted([(b'{"did": "did:plc:x", "time_us": 17', "not_json"), (b"\x00\xff\xfe garbage", "not_json"),
                          (b"[1, 2, 3]", "not_object"), (b'{"kind": "commit"}', "bad_source_line")])


def test_wanted_collections_and_zstd_with_the_dictionary(mine: Settings) -> None:
    server = JetstreamReplay(EXPECTED, dictionary=DICTIONARY)
    with server.running() as url:
        summary = ingest(mine, url, collections=("app.bsky.feed.like", "app.bsky.graph.*"),
                         zstd_dictionary=DICTIONARY)
    assert server.connections[0]["compress"] == ["true"]
    assert summary["by_kind"] == {"follow": 6, "like": 105}
    assert summary["skipped"] == {"account": 1, "delete": 3, "identity": 1, "other_collection": 1}


def test_mentions_and_quotes_of_a_post() -> None:
    """The recorded files hold no mention facet and no quote: a post shaped as the lexicon says."""
    post = {"did": "did:plc:me", "time_us": 1_780_000_000_000_000, "kind": "commit",
            "commit": {"operation": "create", "collection": "app.bsky.feed.post", "rkey": "3abc", "record": {
                "createdAt": "2026-05-25T14:23:28.757Z", "langs": ["en"], "text": "@a @b @a",
                "facets": [{"features": [{"$type": "app.bsky.richtext.facet#mention", "did": d}]}
                           for d in ("did:plc:a", "did:plc:b", "did:plc:a")] +
                          [{"features": [{"$type": "app.bsky.richtext.facet#link", "uri": "https://x"}]}],
                "embed": {"$type": "app.bsky.embed.recordWithMedia",
                          "record": {"record": {"uri": "at://did:plc:q/app.bsky.feed.post/3q", "cid": "c"}}}}}}
    events, skipped = map_jetstream(post)
    assert skipped is None
    assert [(e.kind, e.target, e.event_id) for e in events] == [
        ("mention", "did:plc:a", "bluesky:did:plc:me/app.bsky.feed.post/3abc#mention:did:plc:a"),
        ("mention", "did:plc:b", "bluesky:did:plc:me/app.bsky.feed.post/3abc#mention:did:plc:b"),
        ("quote", "did:plc:q", "bluesky:did:plc:me/app.bsky.feed.post/3abc#quote")]
    assert {e.ts for e in events} == {1_780_000_000_000} and events[2].parent_id.endswith("/3q")
    assert map_jetstream(post) == (events, None), "ids and fields are deterministic"


def test_an_ingest_into_a_missing_topic_fails_at_once_naming_it(mine: Settings) -> None:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "clout.cli", "ingest", "bluesky", "--url", "ws://127.0.0.1:9/x",
                             "--bootstrap", mine.kafka_bootstrap, "--topic", mine.topic, "--dlq-topic",
                             mine.dlq_topic], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"topic '{mine.topic}' and '{mine.dlq_topic}' does not exist" in result.stderr
    assert "clout topics create" in result.stderr and time.monotonic() - started < 15
