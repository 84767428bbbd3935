"""The stream API over real HTTP: create, follow, resume, stop, snapshot — and bad input."""

from __future__ import annotations

import json
from contextlib import aclosing

import httpx
import pytest
import trio

from ..conftest import Server, StartServer, read_events

ASK = {"messages": [{"role": "user", "content": "hello"}]}
SSE = {"Accept": "text/event-stream"}


async def stream_all(client: httpx.AsyncClient, body: dict, **headers: str) -> list[tuple]:
    async with client.stream("POST", "/v1/streams", json=body, headers={**SSE, **headers}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        return [e async for e in read_events(r)]


async def test_post_with_accept_event_stream_streams_every_slot(server: Server) -> None:
    async with server.client() as client:
        events = await stream_all(client, {"models": ["demo/ttft=0.05,rate=200,tokens=20",
                                                      "demo/ttft=0,rate=200,tokens=20,reasoning=5"],
                                           **ASK})
    types = [t for _, t, _ in events]
    assert types[0] == "stream.start"
    assert types[-1] == "stream.done"
    assert [i for i, _, _ in events] == list(range(1, len(events) + 1))
    done = [d for _, t, d in events if t == "model.done"]
    assert sorted(d["slot"] for d in done) == [0, 1]
    assert any(t == "reasoning" and d["slot"] == 1 for _, t, d in events)
    assert events[-1][2]["counts"] == {"done": 2, "error": 0, "stopped": 0}


async def test_201_then_events_replays_from_the_start(server: Server) -> None:
    async with server.client() as client:
        r = await client.post("/v1/streams", json={"models": ["demo/instant", "demo/instant"],
                                                       **ASK})
        assert r.status_code == 201
        created = r.json()
        assert created["events_url"] == f"/v1/streams/{created['id']}/events"
        assert created["stop_url"] == f"/v1/streams/{created['id']}/stop"
        assert created["slots"] == [
            {"slot": 0, "model": "demo/instant", "label": "demo/instant"},
            {"slot": 1, "model": "demo/instant", "label": "demo/instant #2"}]
        assert len(created["id"]) >= 22  # 128 random bits, URL-safe
        async with client.stream("GET", created["events_url"]) as events:
            got = [e async for e in read_events(events)]
    assert got[0][1] == "stream.start"
    assert got[-1][1] == "stream.done"
    assert got[0][2]["stream_id"] == created["id"]


async def test_last_event_id_resumes_without_gaps_or_repeats(server: Server) -> None:
    async with server.client() as client:
        created = (await client.post("/v1/streams", json={
            "models": ["demo/ttft=0,rate=100,tokens=60"] * 2, **ASK})).json()
        first: list[tuple] = []
        async with client.stream("GET", created["events_url"]) as r, \
                aclosing(read_events(r)) as events:
            async for event in events:
                first.append(event)
                if len(first) == 15:
                    break
        seen_id = first[-1][0]
        async with client.stream("GET", created["events_url"],
                                 headers={"Last-Event-ID": str(seen_id)}) as r:
            rest = [e async for e in read_events(r)]
        # The query form does the same, for EventSource pages that reload.
        async with client.stream("GET", created["events_url"] + f"?last_event_id={seen_id}") as r:
            again = [e async for e in read_events(r)]
    whole = first + rest
    assert [i for i, _, _ in whole] == list(range(1, len(whole) + 1))
    assert whole[-1][1] == "stream.done"
    assert again == rest


async def test_several_subscribers_see_identical_events(server: Server) -> None:
    async with server.client() as client:
        created = (await client.post("/v1/streams", json={
            "models": ["demo/ttft=0.1,rate=100,tokens=30"] * 3, **ASK})).json()
        results: list[list[tuple]] = []

        async def follow() -> None:
            async with client.stream("GET", created["events_url"]) as r:
                assert r.status_code == 200
                results.append([e async for e in read_events(r)])

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(follow)
    assert len(results) == 3
    assert results[0] == results[1] == results[2]
    assert [t for _, t, _ in results[0]].count("model.done") == 3
    assert results[0][-1][1] == "stream.done"
    assert [i for i, _, _ in results[0]] == list(range(1, len(results[0]) + 1))


async def test_stop_one_slot_reports_states_and_others_finish(server: Server) -> None:
    async with server.client() as client:
        created = (await client.post("/v1/streams", json={
            "models": ["demo/ttft=0,rate=20,tokens=200", "demo/ttft=0,rate=200,tokens=40"],
            **ASK})).json()
        events: list[tuple] = []
        async with client.stream("GET", created["events_url"]) as r, \
                aclosing(read_events(r)) as reader:
            while not (events and events[-1][1] == "delta" and events[-1][2]["slot"] == 0):
                events.append(await reader.__anext__())
            stop = await client.post(created["stop_url"], json={"slots": [0]})
            assert stop.status_code == 200
            assert stop.json()["slots"][0] == {"slot": 0, "model": events[0][2]["slots"][0]
                                               ["model"], "state": "stopped"}
            again = await client.post(created["stop_url"], json={"slots": [0]})
            assert again.json()["slots"][0]["state"] == "stopped"  # idempotent
            events += [e async for e in reader]
        snap = (await client.get(f"/v1/streams/{created['id']}")).json()
    ends = {d["slot"]: t for _, t, d in events if t.startswith("model.") and t != "model.start"}
    assert ends == {0: "model.stopped", 1: "model.done"}
    assert [s["state"] for s in snap["slots"]] == ["stopped", "done"]
    assert snap["slots"][1]["text"]
    assert snap["slots"][0]["stop_reason"] == "user"


async def test_stop_with_an_empty_body_stops_everything(server: Server) -> None:
    async with server.client() as client:
        created = (await client.post("/v1/streams", json={
            "models": ["demo/hang", "demo/slow"], **ASK})).json()
        r = await client.post(created["stop_url"])
        assert [s["state"] for s in r.json()["slots"]] == ["stopped", "stopped"]


async def test_models_health_and_openapi(server: Server) -> None:
    async with server.client() as client:
        models = (await client.get("/v1/models")).json()
        assert models["object"] == "list"
        demo = {m["id"]: m for m in models["data"]}["demo/fast"]
        assert demo["provider"] == "demo"
        assert demo["simulated"] is True
        assert (await client.get("/healthz")).json()["status"] == "ok"
        spec = (await client.get("/openapi.json")).json()
        assert spec["openapi"].startswith("3.")
        for path in ("/v1/streams", "/v1/streams/{id}/events", "/v1/streams/{id}/stop",
                     "/v1/streams/{id}", "/v1/models", "/healthz"):
            assert path in spec["paths"], path


@pytest.mark.parametrize(
    ("body", "status", "type_", "param"),
    [
        ({"models": ["nope/x"], **ASK}, 400, "unknown_model", "models[0]"),
        ({"models": ["demo/no-such-preset"], **ASK}, 400, "unknown_model", "models[0]"),
        ({"models": ["fast"], **ASK}, 400, "unknown_model", "models[0]"),
        ({"models": [], **ASK}, 400, "invalid_request", "models"),
        ({"models": ["demo/fast"] * 10, **ASK}, 400, "too_many_slots", "models"),
        ({"models": "demo/fast", **ASK}, 400, "invalid_request", "models"),
        ({"models": [3], **ASK}, 400, "invalid_request", "models[0]"),
        ({"models": ["demo/fast"], "messages": [{"role": "wizard", "content": "x"}]},
         400, "invalid_request", "messages[0].role"),
        ({"models": ["demo/fast"], "messages": [{"role": "user", "content": 5}]},
         400, "invalid_request", "messages[0].content"),
        ({"models": ["demo/fast"], "messages": [{"role": "tool", "content": "x"}]},
         400, "invalid_request", "models[0]"),
        ({"models": ["demo/fast"], "messages": []}, 400, "invalid_request", "models[0].messages"),
        ({"models": ["demo/fast"], **ASK, "mode": "debate"}, 400, "invalid_request", "mode"),
        ({"models": ["demo/fast"], **ASK, "params": {"temperature": "hot"}},
         400, "invalid_request", "params.temperature"),
        ({"models": [{"model": "demo/fast", "params": {"max_tokens": 0}}], **ASK},
         400, "invalid_request", "models[0].params.max_tokens"),
        ([1, 2], 400, "invalid_request", None),
    ],
)
async def test_bad_bodies_get_clear_errors(server: Server, body, status, type_, param) -> None:
    async with server.client() as client:
        r = await client.post("/v1/streams", json=body)
        assert r.status_code == status
        error = r.json()["error"]
        assert error["type"] == type_
        assert error.get("param") == param
        assert error["message"]
        # …and the server keeps serving.
        assert (await client.get("/healthz")).status_code == 200


async def test_malformed_json_and_wrong_media_type(server: Server) -> None:
    async with server.client() as client:
        r = await client.post("/v1/streams", content=b"{not json",
                              headers={"Content-Type": "application/json"})
        assert (r.status_code, r.json()["error"]["type"]) == (400, "invalid_request")
        r = await client.post("/v1/streams", content=b"models=demo/fast",
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert (r.status_code, r.json()["error"]["type"]) == (415, "unsupported_media_type")


async def test_oversize_body_is_refused_and_the_connection_closed(
    start_server: StartServer,
) -> None:
    server = await start_server("[server]\nmax_body = 1000\n")
    async with server.client() as client:
        big = {"models": ["demo/fast"], "messages": [{"role": "user", "content": "x" * 5000}]}
        r = await client.post("/v1/streams", json=big)
        assert r.status_code == 413
        assert r.json()["error"]["type"] == "payload_too_large"
        assert r.headers["connection"] == "close"
        assert (await client.get("/healthz")).status_code == 200


async def test_unknown_stream_and_bad_last_event_id(server: Server) -> None:
    async with server.client() as client:
        for method, path in (("GET", "/v1/streams/nope"), ("GET", "/v1/streams/nope/events"),
                             ("POST", "/v1/streams/nope/stop")):
            r = await client.request(method, path)
            assert (r.status_code, r.json()["error"]["type"]) == (404, "not_found")
        created = (await client.post("/v1/streams", json={"models": ["demo/fast"], **ASK})).json()
        r = await client.get(created["events_url"], headers={"Last-Event-ID": "abc"})
        assert r.status_code == 400
        # An id this stream never sent: the client holds another stream's id, or made one
        # up. Said at once, not answered with a keep-alive per missing event.
        r = await client.get(created["events_url"], headers={"Last-Event-ID": "100000"})
        assert (r.status_code, r.json()["error"]["param"]) == (400, "Last-Event-ID")
        assert "past this stream's last event" in r.json()["error"]["message"]
        r = await client.post(created["stop_url"], json={"slots": [5]})
        assert (r.status_code, r.json()["error"]["param"]) == (400, "slots")
        r = await client.get("/no/such/route")
        assert (r.status_code, r.json()["error"]["type"]) == (404, "not_found")


async def test_keys_and_ownership(start_server: StartServer) -> None:
    server = await start_server("", env={"CHORUS_API_KEYS": "alice-key,bob-key"})
    async with server.client() as anon, \
            server.client(Authorization="Bearer alice-key") as alice, \
            server.client(Authorization="Bearer bob-key") as bob:
        r = await anon.post("/v1/streams", json={"models": ["demo/fast"], **ASK})
        assert (r.status_code, r.json()["error"]["type"]) == (401, "unauthorized")
        assert r.headers["www-authenticate"] == "Bearer"
        assert (await anon.get("/v1/models")).status_code == 401
        created = (await alice.post("/v1/streams", json={"models": ["demo/slow"], **ASK})).json()
        for method, path in (("GET", f"/v1/streams/{created['id']}"),
                             ("GET", created["events_url"]), ("POST", created["stop_url"])):
            r = await bob.request(method, path)
            assert (r.status_code, r.json()["error"]["type"]) == (404, "not_found")
        r = await alice.post(created["stop_url"])
        assert r.json()["slots"][0]["state"] == "stopped"
        body = json.dumps(r.json())
        assert "alice-key" not in body


async def test_too_many_streams_is_429_with_retry_after(start_server: StartServer) -> None:
    server = await start_server("[server]\nmax_streams = 1\n")
    async with server.client() as client:
        r = await client.post("/v1/streams", json={"models": ["demo/hang"], **ASK})
        assert r.status_code == 201
        r = await client.post("/v1/streams", json={"models": ["demo/hang"], **ASK})
        assert (r.status_code, r.json()["error"]["type"]) == (429, "rate_limited")
        assert int(r.headers["retry-after"]) > 0


async def test_idle_streams_get_ping_comments(start_server: StartServer) -> None:
    server = await start_server("[server]\nping = 0.05\nresume_grace = 0.0\n")
    async with server.client() as client, client.stream(
        "POST", "/v1/streams", headers=SSE, json={"models": ["demo/hang"], **ASK},
    ) as r:
        seen = b""
        async with aclosing(r.aiter_raw()) as chunks:
            async for chunk in chunks:
                seen += chunk
                if seen.count(b": ping\n\n") >= 2:
                    break
    assert seen.startswith(b"id: 1\nevent: stream.start\n")


async def test_the_page_is_served_fresh_and_locked_down(server: Server) -> None:
    async with server.client() as client:
        page = await client.get("/")
        assert page.status_code == 200
        assert "<title>Chorus</title>" in page.text
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["cache-control"] == "no-cache"
        script = await client.get("/static/app.js")
        assert script.status_code == 200
        assert script.headers["cache-control"] == "no-cache"
        assert (await client.get("/v1/models")).json()["max_slots"] == 9
