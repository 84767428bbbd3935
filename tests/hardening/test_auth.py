"""Keys: who may listen where, whose streams a key may see, and that no key ever leaks."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import pytest
import trio

from app import cli

from ..conftest import StartServer, read_events
from ..support.upstream import FakeUpstream, Script, openai_chunk, openai_script, sse
from .conftest import ASK, SSE, spawn

CLIENT_KEY = "planted-client-key-7Qx3"
OTHER_KEY = "planted-other-key-Zp91"
WRONG_KEY = "planted-wrong-key-Hh42"
UPSTREAM_KEY = "sk-planted-upstream-Mv08"
SECRETS = (CLIENT_KEY, OTHER_KEY, WRONG_KEY, UPSTREAM_KEY)


async def test_serve_refuses_a_public_address_without_keys() -> None:
    """The command as run: the process ends with 2 before listening, and says why."""
    process = await spawn(["serve", "--host", "0.0.0.0", "--port", "0"])
    assert process.stderr is not None
    with trio.fail_after(20):
        err = b"".join([chunk async for chunk in process.stderr]).decode()
        code = await process.wait()
    assert code == 2
    assert "refusing to listen on 0.0.0.0 with no API keys configured" in err
    assert "CHORUS_API_KEYS" in err


@pytest.mark.usefixtures("bare_env", "no_serving")
@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7"])
def test_every_public_address_is_refused_without_keys(
        host: str, capsys: pytest.CaptureFixture[str]) -> None:
    # The refusal comes before anything listens: the command's own function, in-process.
    assert cli.main(["serve", "--host", host, "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert f"refusing to listen on {host} with no API keys configured" in err
    assert "CHORUS_API_KEYS" in err


@pytest.mark.usefixtures("bare_env", "no_serving")
def test_a_public_host_in_the_config_file_is_refused_too(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "chorus.toml"
    path.write_text('[server]\nhost = "0.0.0.0"\n')
    assert cli.main(["serve", "--config", str(path), "--port", "0"]) == 2
    assert "refusing to listen on 0.0.0.0 with no API keys" in capsys.readouterr().err


async def test_every_api_route_wants_a_valid_key(start_server: StartServer) -> None:
    server = await start_server("", env={"CHORUS_API_KEYS": f"{CLIENT_KEY},{OTHER_KEY}"})
    calls = [("POST", "/v1/streams"), ("GET", "/v1/streams/x"), ("GET", "/v1/streams/x/events"),
             ("POST", "/v1/streams/x/stop"), ("GET", "/v1/models"),
             ("POST", "/v1/chat/completions")]
    headers = [{}, {"Authorization": f"Bearer {WRONG_KEY}"}, {"Authorization": WRONG_KEY},
               {"Authorization": f"Basic {CLIENT_KEY}"},
               {"Authorization": f"Bearer {CLIENT_KEY[:-1]}"},
               {"Authorization": f"Bearer {CLIENT_KEY}x"}]
    async with server.client() as client:
        for method, path in calls:
            for h in headers:
                r = await client.request(method, path, headers=h, json={"models": ["demo/fast"]})
                assert r.status_code == 401, (method, path, h)
                assert "error" in r.json()
                assert WRONG_KEY not in r.text
                assert CLIENT_KEY not in r.text
        # Health, the API description and metrics need no key.
        for path in ("/healthz", "/openapi.json", "/metrics"):
            assert (await client.get(path)).status_code == 200


async def test_another_key_cannot_see_follow_or_stop_a_stream(start_server: StartServer) -> None:
    server = await start_server("", env={"CHORUS_API_KEYS": f"{CLIENT_KEY},{OTHER_KEY}"})
    async with server.client(Authorization=f"Bearer {CLIENT_KEY}") as alice, \
            server.client(Authorization=f"Bearer {OTHER_KEY}") as bob:
        created = (await alice.post("/v1/streams",
                                    json={"models": ["demo/hang", "demo/hang"], **ASK})).json()
        sid = created["id"]
        for method, path, body in (
            ("GET", f"/v1/streams/{sid}", None), ("GET", f"/v1/streams/{sid}/events", None),
            ("GET", f"/v1/streams/{sid}/events?last_event_id=0", None),
            ("POST", f"/v1/streams/{sid}/stop", {}),
            ("POST", f"/v1/streams/{sid}/stop", {"slots": [0]}),
        ):
            r = await bob.request(method, path, json=body)
            assert (r.status_code, r.json()["error"]["type"]) == (404, "not_found")
        # The same answer as for a stream that does not exist: nothing to tell them apart.
        missing = await bob.get("/v1/streams/" + "A" * len(sid))
        theirs = await bob.get(f"/v1/streams/{sid}")
        assert missing.json()["error"]["type"] == theirs.json()["error"]["type"]
        snap = (await alice.get(f"/v1/streams/{sid}")).json()
        assert [s["state"] for s in snap["slots"]] == ["running", "running"]  # bob stopped nothing
        stopped = (await alice.post(created["stop_url"])).json()
        assert [s["state"] for s in stopped["slots"]] == ["stopped", "stopped"]


async def test_stream_ids_are_unguessable(start_server: StartServer) -> None:
    server = await start_server("[server]\nrate_limit = 0.0\nmax_streams_per_key = 1000\n")
    async with server.client() as client:
        ids = []
        for _ in range(200):  # each a one-token answer: the ids are what is looked at
            r = await client.post("/v1/streams", json={
                "models": ["demo/ttft=0,rate=0,tokens=1"], **ASK})
            ids.append(r.json()["id"])
    assert len(set(ids)) == len(ids)
    for sid in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{22,}", sid)
        assert len(base64.urlsafe_b64decode(sid + "=" * (-len(sid) % 4))) >= 16  # 128 bits
    # Nothing sequential: no two ids share even their first 6 characters (36 bits).
    assert len({sid[:6] for sid in ids}) == len(ids)


async def test_no_key_reaches_logs_errors_events_or_metrics(
    start_server: StartServer, upstream: FakeUpstream, log_lines: io.StringIO,
) -> None:
    """Plant every kind of key, make the upstream echo its own back in every way it can,
    and look for them everywhere a client or an operator can read."""
    echo = f"your key {UPSTREAM_KEY} is wrong"
    scripts = {
        "err400": Script(status=400, body=[f'{{"error": {{"message": "{echo}"}}}}'.encode()],
                         headers=[("content-type", "application/json")]),
        "err401": Script(status=401, body=[f'{{"error": "{echo}"}}'.encode()],
                         headers=[("content-type", "application/json")]),
        "err429": Script(status=429, body=[echo.encode()], headers=[
            ("content-type", "text/plain"), ("retry-after", "0")]),
        "err500": Script(status=500, body=[echo.encode()],
                         headers=[("content-type", "text/plain")]),
        "midstream": Script(body=[*sse(openai_chunk("part"), done=False),
                                  *sse({"error": {"message": echo, "type": "server_error"}},
                                       done=False)]),
    }
    listing = Script(body=[b'{"object": "list", "data": [{"id": "fine"}]}'],
                     headers=[("content-type", "application/json")])
    upstream.respond = lambda seen: (scripts.get(seen.json["model"], openai_script(["ok"]))
                                     if seen.json else listing)
    server = await start_server(
        f"[providers.up]\ntype = \"openai\"\nbase_url = \"{upstream.url}/v1\"\n"
        f"api_key = \"{UPSTREAM_KEY}\"\nretries = 1\n",
        env={"CHORUS_API_KEYS": f"{CLIENT_KEY},{OTHER_KEY}"})
    seen_by_clients: list[str] = []
    async with server.client(Authorization=f"Bearer {CLIENT_KEY}") as client, \
            server.client(Authorization=f"Bearer {WRONG_KEY}") as intruder:
        models = [f"up/{name}" for name in (*scripts, "fine")]
        async with client.stream("POST", "/v1/streams", headers=SSE,
                                 json={"models": models, **ASK}) as r:
            events = [e async for e in read_events(r)]
            seen_by_clients.append(repr(events))
            sid = r.headers["x-chorus-stream-id"]
        assert {d["error"]["type"] for _, t, d in events if t == "model.error"} == {
            "bad_request", "auth", "rate_limit", "upstream"}
        for path in (f"/v1/streams/{sid}", f"/v1/streams/{sid}/events", "/v1/models"):
            seen_by_clients.append((await client.get(path)).text)
            seen_by_clients.append((await intruder.get(path)).text)
        for name in scripts:
            r = await client.post("/v1/chat/completions",
                                  json={"model": f"up/{name}", **ASK})
            seen_by_clients.append(r.text + repr(dict(r.headers)))
        metrics = (await client.get("/metrics")).text
    assert UPSTREAM_KEY in upstream.seen[0].headers["authorization"]  # the key was used…
    logs = log_lines.getvalue()
    assert "event=slot.end" in logs
    for secret in SECRETS:  # …and went nowhere else
        assert secret not in logs
        assert secret not in metrics
        for text in seen_by_clients:
            assert secret not in text
