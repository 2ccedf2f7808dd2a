"""The read API's limits over a real server: a rate per client, no request bodies, bounded targets, CORS off."""

from __future__ import annotations

from layout_seed import World
from serving_harness import running_app

from clout.settings import Settings


def test_a_client_past_its_rate_gets_429_with_retry_after(settings: Settings, world: World) -> None:
    with running_app(settings.replace(serve_rate_limit=5.0, serve_rate_burst=10.0)) as api:
        answers = [api.get("/healthz") for _ in range(30)]
    statuses = [answer.status_code for answer in answers]
    assert statuses[:10] == [200] * 10 and 429 in statuses
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert refused.json()["error"] == "rate_limited" and int(refused.headers["retry-after"]) >= 1


def test_bodies_and_long_targets_are_refused_before_the_app(settings: Settings, world: World) -> None:
    with running_app(settings) as api:
        body = api.request("GET", f"/v1/users/{world.users[0]}", content=b"x" * 10)
        assert body.status_code == 413 and body.json()["error"] == "body_too_large"
        chunked = api.request("GET", "/healthz", content=iter([b"x"]))
        assert chunked.status_code == 413
        long = api.get("/v1/windows", params={"pad": "x" * 3000})
        assert long.status_code == 414 and long.json()["error"] == "uri_too_long"
        assert api.get(f"/v1/users/{world.users[0]}").status_code == 200


def test_cors_is_off_unless_configured(settings: Settings, world: World) -> None:
    origin = {"Origin": "https://elsewhere.example"}
    with running_app(settings) as api:
        answer = api.get("/v1/windows", headers=origin)
        preflight = api.options("/v1/windows", headers={**origin, "Access-Control-Request-Method": "GET"})
    assert not any(name.lower().startswith("access-control-") for name in answer.headers)
    assert not any(name.lower().startswith("access-control-") for name in preflight.headers)
    with running_app(settings.replace(serve_cors_origins="https://dash.example")) as api:
        allowed = api.get("/v1/windows", headers={"Origin": "https://dash.example"})
        other = api.get("/v1/windows", headers=origin)
    assert allowed.headers["access-control-allow-origin"] == "https://dash.example"
    assert "access-control-allow-origin" not in other.headers


def test_defaults_are_documented_in_openapi(settings: Settings, world: World) -> None:
    with running_app(settings) as api:
        document = api.get("/openapi.json").json()
    responses = document["paths"]["/v1/users/{user}"]["get"]["responses"]
    assert {"413", "414", "429"} <= set(responses)
