"""The store on a real 3-master Redis Cluster beside the single test Redis: the same code writes
both (no CROSSSLOT), the flag path announces each final flag once, readers see what was written,
the flag subscriber's consumer group reads the stream, and the users' documents written through a
cluster pipeline (Lua sent whole) equal the single server's byte for byte."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import orjson
import pytest
import test_window_results as users_case
from redis.cluster import RedisCluster
from redis.crc import key_slot

from clout.anomalies.detect import Findings
from clout.anomalies.flag import Flag, Group, group_id
from clout.serving.client import CloutClient
from clout.serving.subscriber import FlagSubscriber
from clout.settings import Settings
from clout.store.client import SyncClient, is_cluster_url, sync_client
from clout.store.flags import DETECTORS, FlagWriter
from clout.store.layout import KeyLayout
from clout.store.window_results import WindowResults

WINDOWS = ["1341100800-1341104400", "1341101700-1341105300"]
USERS_FLAGGED = [f"acct{i}" for i in range(40)]  # enough users to land on every master


def slot(key: str) -> int:
    return key_slot(key.encode())


def test_keys_written_together_share_a_hash_slot() -> None:
    layout = KeyLayout("clout")
    window = WINDOWS[0]
    window_keys = [layout.activity(window), layout.leaderboard(window, "received"), layout.influence(window),
                   layout.score_board(window), layout.score_board(window, "bsky"), layout.clean_board(window),
                   layout.window_meta(window), layout.flagged(window), layout.groups(window),
                   *(layout.flagged(window, d) for d in DETECTORS)]
    assert {slot(k) for k in window_keys} == {slot(layout.activity(window))}
    user = "did:plc:abc"
    assert slot(layout.user_history(user)) == slot(layout.user_latest(user)) == slot(layout.user_flags(user))
    assert slot(layout.announced(window)) == slot(layout.flag_stream())
    assert slot(layout.announced(WINDOWS[1])) == slot(layout.flag_stream())


def test_the_url_says_which_client() -> None:
    assert is_cluster_url("redis+cluster://10.0.0.5:7000") and is_cluster_url("REDISS+CLUSTER://h:7000/0")
    assert not is_cluster_url("redis://127.0.0.1:6379/0") and not is_cluster_url("rediss://h:6380")
    masked = Settings(redis_url="rediss+cluster://clout:s3cret@h:7000/0").redacted()["redis_url"]
    assert masked == "rediss+cluster://clout:**********@h:7000/0"


@pytest.mark.parametrize("prefix", ["", "a{b}", "a*", "a b"])
def test_a_prefix_that_would_move_the_hash_tags_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="key prefix"):
        KeyLayout(prefix)


@pytest.fixture(params=["single", "cluster"])
def store(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Settings]:
    """This test's settings on the single test Redis, then on the test Redis Cluster."""
    url = settings.redis_url if request.param == "single" else request.getfixturevalue("redis_cluster_url")
    mine = settings.replace(redis_url=url)
    yield mine
    client = sync_client(url)
    for key in list(client.scan_iter(match=f"{mine.key_prefix}:*", count=10_000)):  # every master, on a cluster
        client.unlink(key)
    client.close()


def findings(window: str, scale: float) -> Findings:
    ring = USERS_FLAGGED[:6]
    group = Group(group_id(window, ring), window, tuple(ring), ("target1", "target2"), 0.9, 0.8 * scale)
    flags = [Flag(user, window, "lockstep", 0.8 * scale, ("acted in lockstep",), {"synchrony": 0.9}, group.id)
             for user in ring]
    flags += [Flag(user, window, "bot", min(1.0, 0.5 + i / 100) * scale, ("posts around the clock",), {"entropy": 4.1})
              for i, user in enumerate(USERS_FLAGGED[6:])]
    return Findings(flags, [group])


def writer(client: SyncClient, settings: Settings) -> FlagWriter:
    return FlagWriter(client, KeyLayout(settings.key_prefix), 3600, None, settings.flags_topic)


def masters_holding(client: SyncClient, prefix: str) -> int:
    """How many masters hold the prefix's keys (1 on a single server)."""
    keys = list(client.scan_iter(match=f"{prefix}:*", count=10_000))
    if not isinstance(client, RedisCluster):
        return 1
    return len({client.get_node_from_key(key).name for key in keys})


@pytest.mark.servers
def test_flags_are_written_announced_once_and_read_back(store: Settings) -> None:
    layout = KeyLayout(store.key_prefix)
    client = sync_client(store.redis_url)
    try:
        for window in WINDOWS:  # the index the window totals write, which readers resolve windows by
            client.zadd(layout.windows(), {window: int(window.split("-")[1])})
        flags = writer(client, store)
        assert flags.write(WINDOWS[0], findings(WINDOWS[0], 0.5), final=False) == []  # on-time: nothing announced
        assert flags.write(WINDOWS[0], findings(WINDOWS[0], 1.0), final=True) == findings(WINDOWS[0], 1.0).flags
        assert flags.write(WINDOWS[0], findings(WINDOWS[0], 1.0), final=True) == []  # a replay's final pane
        assert len(flags.write(WINDOWS[1], findings(WINDOWS[1], 1.0), final=True)) == len(USERS_FLAGGED)
        on_stream = [orjson.loads(fields[b"flag"]) for _, fields in client.xrange(layout.flag_stream())]
        assert sorted((f["window"], f["user"]) for f in on_stream) == sorted(
            (w, u) for w in WINDOWS for u in USERS_FLAGGED)
        assert sorted(g.window for g in flags.earlier_groups(WINDOWS)) == WINDOWS  # the lockstep memory
        assert masters_holding(client, store.key_prefix) == (3 if is_cluster_url(store.redis_url) else 1)
    finally:
        client.close()
    with CloutClient(store.redis_url, store.key_prefix) as reader:  # the Python client, on the same URL
        assert sorted(e.user for e in reader.flagged(WINDOWS[0], limit=100).entries) == sorted(USERS_FLAGGED)
        flagged = reader.flagged(WINDOWS[1], limit=100)  # the users' newest flags are this window's: with reasons
        assert sorted(e.user for e in flagged.entries) == sorted(USERS_FLAGGED)
        assert all(e.flags and e.flags[0].window == WINDOWS[1] for e in flagged.entries)
        assert reader.flagged(WINDOWS[1], "bot").entries[0].user == USERS_FLAGGED[-1]  # the highest bot score
        group = findings(WINDOWS[1], 1.0).groups[0]
        assert [g.id for g in reader.groups(WINDOWS[1]).groups] == [group.id]
        assert reader.group(group.id).members == list(group.members)
    subscriber = FlagSubscriber.from_settings(store, group="downstream", consumer="c1", start="0")
    try:  # the flag stream's consumer group, on the same URL
        messages = subscriber.read(count=200, block_ms=100)
        assert sorted((m.flag.window, m.flag.user) for m in messages) == sorted(
            (w, u) for w in WINDOWS for u in USERS_FLAGGED)
        assert subscriber.ack(*messages) == len(messages)
    finally:
        subscriber.close()


@pytest.mark.servers
def test_a_group_the_final_pane_no_longer_finds_leaves_no_record(store: Settings) -> None:
    """Regression (the SIGKILL restart comparison): an on-time pane's group that the final pane did not
    find kept its record, so the keys a run left depended on which panes it happened to write."""
    layout = KeyLayout(store.key_prefix)
    client = sync_client(store.redis_url)
    try:
        window = WINDOWS[0]
        flags = writer(client, store)
        on_time = findings(window, 1.0)
        other = Group(group_id(window, USERS_FLAGGED[6:9]), window, tuple(USERS_FLAGGED[6:9]), ("t",), 0.8, 0.7)
        flags.write(window, Findings([], [on_time.groups[0], other]), final=False)
        assert client.exists(layout.group(on_time.groups[0].id), layout.group(other.id)) == 2
        flags.write(window, Findings([], [other]), final=True)
        assert not client.exists(layout.group(on_time.groups[0].id))
        assert [g.id for g in flags.earlier_groups([window])] == [other.id]
        flags.write(window, Findings(), final=True)  # a recomputed window that finds no group at all
        assert not client.exists(layout.group(other.id)) and flags.earlier_groups([window]) == []
    finally:
        client.close()


@pytest.mark.servers
def test_users_documents_on_the_cluster_equal_the_single_servers(settings: Settings,
                                                                redis_cluster_url: str) -> None:
    """The Lua user script through a cluster pipeline (EVAL) and through a plain one (EVALSHA)."""
    prefix = f"test{uuid.uuid4().hex[:8]}"
    docs = {}
    for url in (settings.redis_url, redis_cluster_url):
        config = users_case.results(settings.replace(redis_url=url), prefix)
        writer_ = WindowResults(config)
        try:
            for p in [*users_case.WINDOWS, users_case.RECOMPUTED]:
                writer_.write(p)
        finally:
            writer_.close()
        client = sync_client(url)
        docs[is_cluster_url(url)] = users_case.user_docs(client, prefix)
        for key in list(client.scan_iter(match=f"{prefix}:*", count=10_000)):
            client.unlink(key)
        client.close()
    assert any(latest for latest, _ in docs[True].values())
    assert docs[True] == docs[False]
