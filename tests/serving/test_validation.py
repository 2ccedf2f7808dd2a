"""Bad input gets a clear 4xx, never a 500, and never reaches Redis as a key outside layout v1.

The fuzz tests send arbitrary text as ids, window names and parameters to the running app while
Redis MONITOR records every command of the app's own connections (named `clout-serve`); each key
named must then match one of the layout's key shapes, built from `KeyLayout` itself.
"""

from __future__ import annotations

import codecs
import re
import threading
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
import redis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from layout_seed import World

from clout.serving.validation import (
    InvalidInput,
    check_choice,
    check_id,
    check_page,
    check_platform,
    check_window,
)
from clout.store.layout import KeyLayout

pytestmark = pytest.mark.servers

FUZZ = hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ARABIC_DIGITS = "\u0661\u0662-\u0663\u0664"  # a \\d pattern would take them for a window id
NASTY = st.sampled_from(["u*", "u?", "u[1]", "{u1}", "u}1", "u{", "u 1", "u\n", "u1\n", "u\t", "\x00", "u\x7f",
                         "\u0085", "u\\1", "*", "", " ", "a" * 129, ARABIC_DIGITS, "1-2\n", "latest\n", "2-1", "1-1",
                         "-1-2", "1--2", "0x1-0x2", "1.5-2", "999999999999-9999999999999"])
ANY_TEXT = st.one_of(NASTY, st.text(max_size=140), st.text(alphabet="{}*?[]\\ \n\x00-:u1", max_size=12))


def _answer_is_clean(response: httpx.Response) -> None:
    """200, a JSON 404/422, or Starlette's redirect of a trailing slash (a decoded %2F) to the path without it."""
    if response.status_code == 307:
        assert not response.headers["location"].endswith("/")
        return
    assert response.status_code in {200, 404, 422}, (response.status_code, response.text)
    if response.status_code != 200:
        body = response.json()
        assert body["error"] in {"invalid_input", "not_found"} and body["detail"]
        assert response.headers["cache-control"] == "no-store"


# --- the HTTP surface -----------------------------------------------------------------------------


@FUZZ
@given(user=ANY_TEXT)
def test_any_user_id_gets_a_clean_answer(api: httpx.Client, world: World, user: str) -> None:
    for suffix in ("", "/history", "/windows/latest"):
        _answer_is_clean(api.get(f"/v1/users/{quote(user, safe='')}{suffix}"))


@FUZZ
@given(window=ANY_TEXT)
def test_any_window_name_gets_a_clean_answer(api: httpx.Client, world: World, window: str) -> None:
    for suffix in ("", "/leaderboard", "/flagged", "/groups"):
        _answer_is_clean(api.get(f"/v1/windows/{quote(window, safe='')}{suffix}"))


@FUZZ
@given(limit=st.one_of(st.integers(), ANY_TEXT), offset=st.one_of(st.integers(), ANY_TEXT),
       board=st.one_of(st.sampled_from(["score", "clean", "received", "engagers"]), ANY_TEXT),
       platform=st.one_of(st.none(), st.sampled_from(["higgs", "synthetic"]), ANY_TEXT),
       detector=st.one_of(st.sampled_from(["burst", "bot", "lockstep", "microcluster"]), ANY_TEXT))
def test_any_query_parameters_get_a_clean_answer(api: httpx.Client, world: World, limit: object, offset: object,
                                                 board: str, platform: str | None, detector: str) -> None:
    params = {"limit": str(limit), "offset": str(offset), "board": board}
    if platform is not None:
        params["platform"] = platform
    _answer_is_clean(api.get("/v1/windows/latest/leaderboard", params=params))
    _answer_is_clean(api.get("/v1/windows/latest/flagged", params={"detector": detector, "limit": str(limit)}))
    _answer_is_clean(api.get("/v1/windows", params={"limit": str(limit), "offset": str(offset)}))


@pytest.mark.parametrize("path", [
    "/v1/users/u%7B1%7D", "/v1/users/u*", "/v1/users/u%0A", "/v1/users/" + "a" * 129,
    "/v1/windows/12/leaderboard", "/v1/windows/latest/leaderboard?limit=0", "/v1/windows/latest/leaderboard?limit=501",
    "/v1/windows/latest/leaderboard?offset=-1", "/v1/windows/latest/leaderboard?limit=ten",
    "/v1/windows/latest/leaderboard?board=followers", "/v1/windows/latest/leaderboard?board=clean&platform=higgs",
    "/v1/windows/latest/leaderboard?platform=a/b", "/v1/windows/latest/flagged?detector=spam", "/v1/groups/g*"])
def test_invalid_input_is_a_422_saying_what_is_wrong(api: httpx.Client, world: World, path: str) -> None:
    response = api.get(path)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_input" and body["problems"] and "pattern" not in body["detail"]


def test_a_window_ending_before_it_starts_names_nothing(api: httpx.Client, world: World) -> None:
    """Well-formed by the OpenAPI pattern, so not a 422 the document does not predict: a 404."""
    assert api.get("/v1/windows/2-1").status_code == 404


def test_unknown_routes_and_methods_are_json_4xx(api: httpx.Client) -> None:
    assert api.get("/v2/users/u1").json()["error"] == "not_found"
    response = api.post("/v1/users/u1")
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"


# --- what reaches Redis ---------------------------------------------------------------------------


class Monitor(threading.Thread):
    """Every command Redis executes while it runs, with the client address that sent it."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True, name="redis-monitor")
        self.client = redis.Redis.from_url(url)
        self.waker = redis.Redis.from_url(url)
        self.commands: list[tuple[str, str]] = []
        self.stop = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        with self.client.monitor() as monitor:
            self.ready.set()
            while not self.stop.is_set():
                seen = monitor.next_command()
                self.commands.append((f"{seen['client_address']}:{seen['client_port']}", seen["command"]))

    def finish(self) -> None:
        """Stop after the next command Redis sees (a PING of our own, so there is one)."""
        self.stop.set()
        if self.is_alive():
            self.waker.ping()
            self.join(5)
        self.client.close()
        self.waker.close()


@pytest.fixture
def monitor(settings) -> Iterator[Monitor]:
    recorder = Monitor(settings.redis_url)
    recorder.start()
    assert recorder.ready.wait(5)
    yield recorder
    recorder.finish()


def layout_key_shapes(layout: KeyLayout) -> re.Pattern[str]:
    """Every key shape of layout v1, from KeyLayout's own methods with placeholders filled by patterns."""
    window, name = r"[0-9]{1,12}-[0-9]{1,12}", r"[^\s{}*?\[\]\\\x00-\x1f\x7f-\x9f]{1,128}"
    detector, platform = "(?:burst|bot|lockstep|microcluster|account)", r"[A-Za-z0-9_.:\-]{1,64}"
    metric = "(?:received|engagers|score|clean)"
    marks = {"\x01": window, "\x02": name, "\x03": detector, "\x04": platform, "\x05": metric}
    shapes = [layout.windows(), layout.scored_windows(), layout.activity("\x01"), layout.leaderboard("\x01", "\x05"),
              layout.influence("\x01"),
              layout.score_board("\x01", "\x04"), layout.window_meta("\x01"), layout.flagged("\x01"),
              layout.flagged("\x01", "\x03"), layout.groups("\x01"), layout.user_latest("\x02"),
              layout.user_history("\x02"), layout.user_flags("\x02"), layout.group("\x02"), layout.flag_stream()]
    escaped = [re.escape(shape) for shape in shapes]
    for mark, pattern in marks.items():
        escaped = [shape.replace(mark, pattern) for shape in escaped]
    return re.compile("|".join(f"(?:{shape})" for shape in escaped))


def monitored_key(argument: str) -> str:
    """A key as MONITOR prints it (non-printable bytes as \\xHH, \\n, \\\\ ...) back to the key itself."""
    return codecs.escape_decode(argument.encode())[0].decode("utf-8", errors="replace")


def app_connections(client: redis.Redis) -> set[str]:
    return {entry["addr"] for entry in client.client_list() if entry.get("name") == "clout-serve"}


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=ANY_TEXT)
def _fuzz_all_routes(api: httpx.Client, text: str) -> None:
    quoted = quote(text, safe="")
    for path in (f"/v1/users/{quoted}", f"/v1/users/{quoted}/history", f"/v1/users/u1/windows/{quoted}",
                 f"/v1/windows/{quoted}/leaderboard", f"/v1/windows/latest/leaderboard?platform={quoted}",
                 f"/v1/windows/{quoted}/flagged", f"/v1/windows/{quoted}/groups", f"/v1/groups/{quoted}"):
        _answer_is_clean(api.get(path))


def test_every_key_the_app_touches_is_a_layout_key(api: httpx.Client, world: World, monitor: Monitor,
                                                   redis_client: redis.Redis, layout: KeyLayout) -> None:
    for path in ("/readyz", "/v1/users/u3", "/v1/users/u3/history", f"/v1/users/u3/windows/{world.old}",
                 "/v1/windows", "/v1/windows/latest/leaderboard?platform=higgs", "/v1/windows/latest/leaderboard",
                 "/v1/windows/latest/flagged?detector=burst", "/v1/windows/latest/groups",
                 f"/v1/groups/{world.group['id']}", "/v1/freshness"):
        assert api.get(path).status_code == 200, path
    _fuzz_all_routes(api)
    ours = app_connections(redis_client)
    monitor.finish()
    sent = [command.split(" ") for address, command in monitor.commands if address in ours]
    keyed = [parts for parts in sent if parts[0].upper() not in {"CLIENT", "PING", "HELLO", "SELECT", "MULTI", "EXEC"}]
    assert len(keyed) > 150, "the audit saw too few commands to mean anything"
    shapes = layout_key_shapes(layout)
    outside = {parts[1] for parts in keyed if not shapes.fullmatch(monitored_key(parts[1]))}
    assert not outside, f"keys outside layout v1: {sorted(outside)[:10]}"


# --- the checks themselves (the client relies on them without FastAPI) ----------------------------


@given(st.text(max_size=140))
def test_check_id_accepts_exactly_the_safe_ids(value: str) -> None:
    bad = (not 1 <= len(value) <= 128 or any(c in "{}*?[]\\" or c.isspace() or ord(c) < 32 or 127 <= ord(c) <= 159
                                             for c in value))
    if bad:
        with pytest.raises(InvalidInput):
            check_id(value)
    else:
        assert check_id(value) == value


def test_window_checks() -> None:
    assert check_window("latest") == "latest" and check_window("1-2") == "1-2"
    assert check_window("2-1") == "2-1"  # well-formed: names no window, so a 404 at the read
    for bad in ("1-2\n", ARABIC_DIGITS, "a-b", "latest"):
        with pytest.raises(InvalidInput):
            check_window(bad, allow_latest=False)


def test_other_checks() -> None:
    assert check_platform(None) is None and check_platform("higgs") == "higgs"
    assert check_platform("mastodon:mastodon.social") == "mastodon:mastodon.social"  # one instance's platform
    assert check_choice(None, ("a",), "x") is None
    for call in (lambda: check_platform("a/b"), lambda: check_choice("c", ("a",), "x"), lambda: check_page(0, 0),
                 lambda: check_page(-1, 10), lambda: check_page(0, 501)):
        with pytest.raises(InvalidInput):
            call()
