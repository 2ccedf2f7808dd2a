"""CloutClient: the same answers as the API, straight from Redis, typed."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from layout_seed import INFLATED, World, rounded

from clout.serving.client import CloutClient, InvalidInput, NotFound
from clout.serving.models import Leaderboard, UserView
from clout.settings import Settings

pytestmark = pytest.mark.servers


@pytest.fixture
def client(settings: Settings, redis_client) -> Iterator[CloutClient]:
    with CloutClient.from_settings(settings) as reader:
        yield reader


def test_typed_reads(client: CloutClient, world: World) -> None:
    view = client.user("u3")
    assert isinstance(view, UserView) and view.window == world.new
    assert view.influence.score == rounded(world.scores["u3"]) and view.influence.clean_score == INFLATED["u3"]
    assert view.flags[0].detector == "burst" and view.flags[0].reasons
    board = client.leaderboard(board="clean", limit=3)
    assert isinstance(board, Leaderboard) and [e.user for e in board.entries] == ["u1", "u2", "u4"]
    assert client.window().id == world.new and client.window(world.old).final
    assert client.group(world.group["id"]).members == ["u7", "u8", "u9"]
    assert [p.window for p in client.history("u3").points][-1] == world.new
    assert client.freshness().age_seconds < 60


def test_answers_equal_the_apis(client: CloutClient, api: httpx.Client, world: World) -> None:
    pairs = [
        ("/v1/users/u7", client.user("u7")),
        ("/v1/users/u7/history", client.history("u7")),
        (f"/v1/users/u7/windows/{world.old}", client.user_in_window("u7", world.old)),
        ("/v1/windows?limit=5", client.windows(limit=5)),
        ("/v1/windows/latest/leaderboard?limit=10&offset=2", client.leaderboard(limit=10, offset=2)),
        (f"/v1/windows/{world.old}/leaderboard?platform=higgs", client.leaderboard(world.old, platform="higgs")),
        ("/v1/windows/latest/leaderboard?board=engagers", client.leaderboard(board="engagers")),
        ("/v1/windows/latest/flagged?detector=lockstep", client.flagged(detector="lockstep")),
        ("/v1/windows/latest/groups", client.groups()),
        (f"/v1/groups/{world.group['id']}", client.group(world.group["id"])),
    ]
    for path, answer in pairs:
        assert api.get(path).json() == answer.model_dump(mode="json", by_alias=True), path


def test_bad_ids_never_reach_redis_and_missing_results_raise(client: CloutClient, world: World) -> None:
    for call in (lambda: client.user("u*"), lambda: client.user("{u1}"), lambda: client.leaderboard("1-x"),
                 lambda: client.leaderboard(limit=0), lambda: client.flagged(detector="spam"),
                 lambda: client.group("g\n")):
        with pytest.raises(InvalidInput):
            call()
    with pytest.raises(ValueError):  # InvalidInput is a ValueError, for callers that catch those
        client.user("")
    for call in (lambda: client.user("nobody"), lambda: client.leaderboard("1-2"), lambda: client.group("none")):
        with pytest.raises(NotFound):
            call()
