"""The read API against the real Redis of the test stack, seeded exactly as layout v1 documents."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import orjson
import pytest
import redis
from layout_seed import INFLATED, Seeder, World, long_term_of, rounded
from serving_harness import free_port, running_app

from clout.serving.app import STATIC
from clout.settings import Settings
from clout.store.layout import KeyLayout

pytestmark = pytest.mark.servers

IMMUTABLE = "public, max-age=31536000, immutable"
LIVE = "public, max-age=5"


def _ok(api: httpx.Client, path: str) -> dict:
    response = api.get(path)
    assert response.status_code == 200, response.text
    return response.json()


# --- users ----------------------------------------------------------------------------------------


def test_user_has_current_and_long_term_influence_with_parts_rank_clean_score_and_flags(
        api: httpx.Client, world: World) -> None:
    response = api.get("/v1/users/u7")
    assert response.status_code == 200
    assert response.headers["cache-control"] == LIVE
    body = response.json()
    assert body["user"] == "u7" and body["window"] == world.new and body["end"] == int(world.new.split("-")[1])
    influence = body["influence"]
    assert influence["score"] == rounded(world.scores["u7"]) and influence["clean_score"] == INFLATED["u7"]
    assert influence["rank"] == 7 and influence["platform"] == "higgs" and influence["final"] is None
    assert set(influence["parts"]) == {"reach", "amplification", "network"}
    assert body["long_term"] == long_term_of(world.scores["u7"])
    assert [(f["detector"], f["group"]) for f in body["flags"]] == [("lockstep", world.group["id"])]
    assert body["flags"][0]["reasons"] == ["reposted the same 9 posts as 2 other accounts within 5 s"]


def test_flags_come_highest_score_first(api: httpx.Client, world: World) -> None:
    flags = _ok(api, "/v1/users/u12")["flags"]
    assert [(f["detector"], f["score"]) for f in flags] == [("bot", 0.75), ("microcluster", 0.4)]


def test_history_is_oldest_first(api: httpx.Client, world: World) -> None:
    points = _ok(api, "/v1/users/u3/history")["points"]
    assert len(points) == 6 and points[-1]["window"] == world.new
    assert [p["end"] for p in points] == sorted(p["end"] for p in points)
    assert points[-1]["score"] == rounded(world.scores["u3"]) and points[-1]["clean_score"] == INFLATED["u3"]


def test_user_in_a_closed_window_is_immutable(api: httpx.Client, world: World) -> None:
    response = api.get(f"/v1/users/u2/windows/{world.old}")
    assert response.status_code == 200 and response.headers["cache-control"] == IMMUTABLE
    body = response.json()
    assert body["window"]["final"] is True and body["influence"]["final"] is True
    assert body["activity"]["in"] == body["activity"]["received"]["like"] + body["activity"]["received"]["repost"]
    latest = api.get("/v1/users/u2/windows/latest")
    assert latest.headers["cache-control"] == LIVE and latest.json()["window"]["id"] == world.new


def test_unknown_user_is_404(api: httpx.Client, world: World) -> None:
    for path in ("/v1/users/nobody", "/v1/users/nobody/history", f"/v1/users/nobody/windows/{world.new}"):
        response = api.get(path)
        assert response.status_code == 404 and response.json()["error"] == "not_found"
        assert response.headers["cache-control"] == "no-store"


# --- windows and leaderboards ---------------------------------------------------------------------


def test_windows_newest_first_and_latest(api: httpx.Client, world: World) -> None:
    listed = _ok(api, "/v1/windows")
    assert [w["id"] for w in listed["windows"]] == [world.new, world.old] and listed["page"]["total"] == 2
    assert [w["final"] for w in listed["windows"]] == [False, True]
    assert _ok(api, "/v1/windows?limit=1&offset=1")["windows"][0]["id"] == world.old
    latest = api.get("/v1/windows/latest")
    assert latest.json()["id"] == world.new and latest.json()["events"] == 240 and latest.json()["users"] == 40
    assert api.get(f"/v1/windows/{world.old}").headers["cache-control"] == IMMUTABLE
    assert api.get(f"/v1/windows/{world.new}").headers["cache-control"] == LIVE


def test_raw_leaderboard_shows_the_gap_to_clean(api: httpx.Client, world: World) -> None:
    board = _ok(api, "/v1/windows/latest/leaderboard?limit=10")
    assert board["window"]["id"] == world.new and board["page"] == {"offset": 0, "limit": 10, "total": 40}
    entries = {e["user"]: e for e in board["entries"]}
    assert [e["user"] for e in board["entries"]] == [f"u{i}" for i in range(1, 11)]
    assert [e["rank"] for e in board["entries"]] == list(range(1, 11))
    u3 = entries["u3"]
    assert u3["value"] == u3["score"] == world.scores["u3"] and u3["clean_score"] == INFLATED["u3"]
    assert u3["gap"] == pytest.approx(world.scores["u3"] - INFLATED["u3"]) and u3["flag_score"] == 0.93
    assert u3["score_rank"] == 3 and u3["clean_rank"] > 20
    assert entries["u1"]["gap"] == 0 and entries["u1"]["flag_score"] is None


def test_clean_leaderboard_drops_inflated_users(api: httpx.Client, world: World) -> None:
    board = _ok(api, "/v1/windows/latest/leaderboard?board=clean&limit=5")
    assert [e["user"] for e in board["entries"]] == ["u1", "u2", "u4", "u5", "u6"]
    assert all(e["value"] == e["clean_score"] for e in board["entries"])


def test_leaderboard_per_platform_and_paging(api: httpx.Client, world: World) -> None:
    board = _ok(api, f"/v1/windows/{world.old}/leaderboard?platform=higgs&limit=3&offset=2")
    assert board["platform"] == "higgs" and board["page"]["total"] == 20
    assert [e["user"] for e in board["entries"]] == ["u5", "u7", "u9"]  # odd ranks are on higgs
    assert [e["rank"] for e in board["entries"]] == [3, 4, 5]
    assert _ok(api, "/v1/windows/latest/leaderboard?platform=mastodon")["entries"] == []
    assert _ok(api, "/v1/windows/latest/leaderboard?offset=40")["entries"] == []


def test_activity_leaderboards(api: httpx.Client, world: World) -> None:
    received = _ok(api, "/v1/windows/latest/leaderboard?board=received&limit=2")["entries"]
    engagers = _ok(api, "/v1/windows/latest/leaderboard?board=engagers&limit=2")["entries"]
    assert [e["user"] for e in received] == [e["user"] for e in engagers] == ["u1", "u2"]
    assert received[0]["value"] == 400 and engagers[0]["value"] == 200


def test_unknown_window_is_404(api: httpx.Client, world: World) -> None:
    response = api.get("/v1/windows/100-200/leaderboard")
    assert response.status_code == 404 and "100-200" in response.json()["detail"]


def test_no_windows_yet_is_404(api: httpx.Client) -> None:
    response = api.get("/v1/windows/latest/leaderboard")
    assert response.status_code == 404 and "no windows yet" in response.json()["detail"]
    assert _ok(api, "/v1/windows") == {"page": {"offset": 0, "limit": 20, "total": 0}, "windows": []}


# --- flags and groups -----------------------------------------------------------------------------


def test_flagged_users_with_reasons(api: httpx.Client, world: World) -> None:
    flagged = _ok(api, "/v1/windows/latest/flagged")
    assert [(e["user"], e["score"]) for e in flagged["entries"]] == [("u3", 0.93), ("u7", 0.88), ("u8", 0.81),
                                                                      ("u12", 0.75)]
    u3 = flagged["entries"][0]["flags"][0]
    assert u3["detector"] == "burst" and u3["reasons"] == ["120 likes from 118 new accounts within 14 minutes"]
    assert u3["evidence"]["engagers"] == 118
    assert len(flagged["entries"][3]["flags"]) == 2  # u12: bot and microcluster


def test_flagged_by_detector(api: httpx.Client, world: World) -> None:
    lockstep = _ok(api, "/v1/windows/latest/flagged?detector=lockstep")
    assert lockstep["detector"] == "lockstep" and [e["user"] for e in lockstep["entries"]] == ["u7", "u8"]
    bot = _ok(api, f"/v1/windows/{world.new}/flagged?detector=bot")["entries"]
    assert [(e["user"], [f["detector"] for f in e["flags"]]) for e in bot] == [("u12", ["bot"])]
    assert _ok(api, f"/v1/windows/{world.old}/flagged")["entries"] == []


def test_groups_of_a_window_and_one_group(api: httpx.Client, world: World) -> None:
    groups = _ok(api, "/v1/windows/latest/groups")
    assert groups["groups"] == [{"id": world.group["id"], "size": 3, "group": world.group}]
    response = api.get(f"/v1/groups/{world.group['id']}")
    assert response.status_code == 200 and response.json() == world.group
    assert api.get("/v1/groups/g-missing").status_code == 404


def test_expired_group_record_is_listed_without_it(api: httpx.Client, world: World, redis_client: redis.Redis,
                                                   layout: KeyLayout) -> None:
    redis_client.delete(layout.group(world.group["id"]))
    assert _ok(api, "/v1/windows/latest/groups")["groups"] == [{"id": world.group["id"], "size": 3, "group": None}]


# --- health, readiness, failures ------------------------------------------------------------------


def test_healthz_and_readyz(api: httpx.Client, world: World) -> None:
    health = api.get("/healthz")
    assert health.json() == {"status": "ok"} and re.fullmatch(r"app;dur=\d+\.\d{3}", health.headers["server-timing"])
    ready = api.get("/readyz")
    assert ready.status_code == 200 and ready.headers["cache-control"] == "no-store"
    body = ready.json()
    assert body["ready"] and body["redis"] and body["reasons"] == []
    assert body["freshness"]["window"]["id"] == world.new and 0 <= body["freshness"]["age_seconds"] < 60


def test_readyz_without_windows_is_503(api: httpx.Client) -> None:
    response = api.get("/readyz")
    assert response.status_code == 503 and response.json()["reasons"] == ["no windows yet (is `clout run` running?)"]


def test_readyz_with_stale_results_is_503(settings: Settings, redis_client: redis.Redis, layout: KeyLayout) -> None:
    seeder = Seeder(redis_client, layout, ttl=settings.retention_seconds - 600)  # last written 600 s ago
    seeder.window("1000-4600", final=False, users=1, events=1)
    seeder.flush()
    with running_app(settings, max_staleness_s=60) as api:
        response = api.get("/readyz")
        assert response.status_code == 503 and "old (more than 60 s)" in response.json()["reasons"][0]
    with running_app(settings, max_staleness_s=None) as api:
        assert api.get("/readyz").status_code == 200


def test_freshness_is_the_time_since_the_last_write(api: httpx.Client, settings: Settings,
                                                     redis_client: redis.Redis, layout: KeyLayout) -> None:
    """Every write sets the windows index's TTL to the retention; what it has lost since is the age."""
    redis_client.zadd(layout.windows(), {"1000-4600": 4600})
    redis_client.expire(layout.windows(), settings.retention_seconds - 42)
    fresh = _ok(api, "/v1/freshness")
    assert fresh["window"] == {"id": "1000-4600", "start": 1000, "end": 4600, "final": False, "users": None,
                               "events": None}
    assert 42 <= fresh["age_seconds"] <= 45
    redis_client.persist(layout.windows())
    assert _ok(api, "/v1/freshness")["age_seconds"] is None


def test_redis_away_is_503_not_500(settings: Settings) -> None:
    away = settings.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with running_app(away) as api:
        assert api.get("/healthz").status_code == 200
        ready = api.get("/readyz")
        assert ready.status_code == 503 and ready.json()["redis"] is False
        response = api.get("/v1/users/u1")
        assert response.status_code == 503 and response.json()["error"] == "redis_unavailable"


@pytest.mark.parametrize("stored", [b"not json", b'{"score": "high"}', b'{"window": "1-2", "end": 2}',
                                    b'{"score": 5, "window": "1-2", "end": 2, "long_term": {"a": 1}}', b"\xff\xfe{"])
def test_a_malformed_stored_value_is_502(api: httpx.Client, redis_client: redis.Redis, layout: KeyLayout,
                                         stored: bytes) -> None:
    redis_client.set(layout.user_latest("u1"), stored)
    response = api.get("/v1/users/u1")
    assert response.status_code == 502 and response.json()["error"] == "bad_stored_data"


def test_a_key_of_the_wrong_type_is_502(api: httpx.Client, redis_client: redis.Redis, layout: KeyLayout) -> None:
    redis_client.hset(layout.user_latest("u1"), "score", 1)
    assert api.get("/v1/users/u1").status_code == 502


def test_stored_ids_that_cannot_form_a_key_are_listed_but_not_looked_up(
        api: httpx.Client, world: World, redis_client: redis.Redis, layout: KeyLayout) -> None:
    redis_client.zadd(layout.flagged(world.new), {"u{*}": 0.99})
    redis_client.zadd(layout.groups(world.new), {"g{*}": 9})
    assert _ok(api, "/v1/windows/latest/flagged")["entries"][0] == {"user": "u{*}", "score": 0.99, "flags": []}
    assert _ok(api, "/v1/windows/latest/groups")["groups"][0] == {"id": "g{*}", "size": 9, "group": None}


def test_a_history_entry_that_is_not_an_object_is_502(api: httpx.Client, redis_client: redis.Redis,
                                                      layout: KeyLayout) -> None:
    redis_client.hset(layout.user_history("u1"), "1-2", b"[1, 2]")
    assert api.get("/v1/users/u1/history").json()["error"] == "bad_stored_data"


def test_a_malformed_window_in_the_index_is_never_used_as_a_key(api: httpx.Client, redis_client: redis.Redis,
                                                                layout: KeyLayout) -> None:
    redis_client.zadd(layout.windows(), {"{evil}*": 99})
    assert api.get("/v1/windows/latest/leaderboard").status_code == 502
    assert api.get("/v1/windows").status_code == 502
    ready = api.get("/readyz")
    assert ready.status_code == 503 and "not a window id" in ready.json()["reasons"][0]


# --- documentation and dashboard ------------------------------------------------------------------


def test_openapi_documents_every_endpoint_with_typed_answers_and_errors(api: httpx.Client) -> None:
    spec = _ok(api, "/openapi.json")
    assert set(spec["paths"]) == {
        "/healthz", "/readyz", "/v1/users/{user}", "/v1/users/{user}/history", "/v1/users/{user}/windows/{window}",
        "/v1/windows", "/v1/freshness", "/v1/windows/{window}", "/v1/windows/{window}/leaderboard",
        "/v1/windows/{window}/flagged", "/v1/windows/{window}/groups", "/v1/groups/{group}"}
    user = spec["paths"]["/v1/users/{user}"]["get"]
    answer = user["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/UserView"}
    assert user["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert "pattern" in user["parameters"][0]["schema"]
    assert api.get("/docs").status_code == 200


def test_dashboard_is_served_and_needs_nothing_from_the_internet(api: httpx.Client) -> None:
    page = api.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text):
        assert api.get(asset).status_code == 200, asset
    external = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//"""
                          r"""|url\(\s*["']?(?:https?:)?//|fetch\(\s*["'`]https?:""")
    for path in Path(STATIC).iterdir():
        assert not external.search(path.read_text()), f"{path.name} loads something from outside"


def test_stored_json_round_trips_unchanged(api: httpx.Client, world: World, redis_client: redis.Redis,
                                           layout: KeyLayout) -> None:
    stored = orjson.loads(redis_client.get(layout.user_latest("u3")))
    view = _ok(api, "/v1/users/u3")
    assert view["influence"] == {**{k: v for k, v in stored.items() if k not in {"window", "end", "long_term"}},
                                 "final": None}
    assert (view["window"], view["end"], view["long_term"]) == (stored["window"], stored["end"], stored["long_term"])
