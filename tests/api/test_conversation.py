"""Conversation mode over HTTP: the body's rules, the transcript each speaker is sent (at a
real upstream on loopback), and skip and stop through ``POST …/stop``."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from ..conftest import Server, StartServer, read_events
from ..support.upstream import FakeUpstream, Seen, openai_script

SSE = {"Accept": "text/event-stream"}
OPENING = [{"role": "user", "content": "Is P = NP?"}]
TWO = [{"model": "demo/fast", "name": "Ada"}, {"model": "demo/fast", "name": "Bo"}]


def talk(**fields: Any) -> dict[str, Any]:
    return {"mode": "conversation", "participants": TWO, "messages": OPENING, **fields}


@pytest.mark.parametrize(
    ("body", "type_", "param"),
    [
        (talk(participants=[]), "invalid_request", "participants"),
        (talk(participants="demo/fast"), "invalid_request", "participants"),
        (talk(participants=[{"model": "demo/fast"}] * 10), "too_many_slots", "participants"),
        (talk(participants=[{"name": "Ada"}]), "invalid_request", "participants[0].model"),
        (talk(participants=[{"model": "demo/fast", "voice": "x"}]), "invalid_request",
         "participants[0]"),
        (talk(participants=[{"model": "nope/x"}]), "unknown_model", "participants[0]"),
        (talk(participants=[{"model": "demo/fast", "name": ""}]), "invalid_request",
         "participants[0].name"),
        (talk(participants=[{"model": "demo/fast", "name": "A"}, {"model": "demo/slow",
                                                                  "name": "A"}]),
         "invalid_request", "participants[0].name"),
        (talk(participants=[{"model": "demo/fast", "system": 3}]), "invalid_request",
         "participants[0].system"),
        (talk(participants=[{"model": "demo/fast", "params": {"temperature": 9}}]),
         "invalid_request", "participants[0].params.temperature"),
        (talk(messages=[]), "invalid_request", "messages"),
        (talk(rounds=0), "invalid_request", "rounds"),
        (talk(rounds=21), "invalid_request", "rounds"),
        (talk(rounds=True), "invalid_request", "rounds"),
        (talk(turn_order=[0, 0]), "invalid_request", "turn_order"),
        (talk(turn_order=[1]), "invalid_request", "turn_order"),
        (talk(manager="demo/fast"), "invalid_request", "manager"),
        (talk(manager={"model": "nope/x"}), "unknown_model", "manager.model"),
        (talk(on_error="ignore"), "invalid_request", "on_error"),
        (talk(models=["demo/fast"]), "invalid_request", "models"),
        (talk(topic="x"), "invalid_request", "topic"),
        ({"models": ["demo/fast"], "messages": OPENING, "rounds": 2}, "invalid_request",
         "rounds"),
    ],
)
async def test_bad_conversation_bodies_get_clear_errors(server: Server, body, type_,
                                                        param) -> None:
    async with server.client() as client:
        r = await client.post("/v1/streams", json=body)
        assert r.status_code == 400
        error = r.json()["error"]
        assert (error["type"], error.get("param")) == (type_, param)
        assert error["message"]
        assert (await client.get("/healthz")).status_code == 200


async def test_a_conversation_streams_its_turns(server: Server) -> None:
    async with server.client() as client, client.stream(
            "POST", "/v1/streams", headers=SSE,
            json=talk(participants=[{"model": "demo/ttft=0,rate=0,tokens=3"},
                                    {"model": "demo/ttft=0,rate=0,tokens=3", "name": "Bo"}],
                      rounds=2)) as r:
        events = [e async for e in read_events(r)]
    start = events[0][2]
    assert (start["mode"], start["rounds"]) == ("conversation", 2)
    assert [p["name"] for p in start["participants"]] == ["demo/ttft=0,rate=0,tokens=3", "Bo"]
    assert [d["slot"] for _, t, d in events if t == "turn.start"] == [0, 1, 0, 1]
    assert events[-1][2]["counts"] == {"done": 4, "error": 0, "stopped": 0}


def answers(seen: Seen) -> Any:
    """Each participant's upstream model says who it is and what it heard last."""
    last = seen.json["messages"][-1]["content"]
    return openai_script([f"[{seen.json['model']} heard {len(last)}]"])


async def test_each_speaker_is_sent_its_system_the_opening_and_the_turns_so_far(
        upstream: FakeUpstream, start_server: StartServer) -> None:
    chorus = await start_server(
        f"[server]\nresume_grace = 0.0\n[providers.up]\ntype = \"openai\"\n"
        f"base_url = \"{upstream.url}/v1\"\nretries = 0\n")
    upstream.respond = answers
    body = talk(participants=[
        {"model": "up/a", "name": "Ada", "system": "You are Ada."},
        {"model": "up/b", "name": "Bo"}], rounds=2)
    async with chorus.client() as client, client.stream(
            "POST", "/v1/streams", headers=SSE, json=body) as r:
        events = [e async for e in read_events(r)]
    said = [d["text"] for _, t, d in events if t == "delta"]
    assert len(said) == 4
    sent = [s.json["messages"] for s in upstream.seen]
    assert [s.json["model"] for s in upstream.seen] == ["a", "b", "a", "b"]
    assert sent[0] == [{"role": "system", "content": "You are Ada."}, *OPENING]
    assert sent[1] == [*OPENING, {"role": "user", "content": f"Ada: {said[0]}"}]
    assert sent[2] == [{"role": "system", "content": "You are Ada."}, *OPENING,
                       {"role": "assistant", "content": said[0]},
                       {"role": "user", "content": f"Bo: {said[1]}"}]
    assert sent[3] == [*OPENING, {"role": "user", "content": f"Ada: {said[0]}"},
                       {"role": "assistant", "content": said[1]},
                       {"role": "user", "content": f"Ada: {said[2]}"}]


async def test_skip_and_stop_over_http(server: Server) -> None:
    body = talk(participants=[{"model": "demo/hang", "name": "Ada"},
                              {"model": "demo/hang", "name": "Bo"},
                              {"model": "demo/hang", "name": "Cy"}], rounds=1)
    async with server.client() as client:
        r = await client.post("/v1/streams", json=body)
        assert r.status_code == 201
        stream_id = r.json()["id"]
        async with client.stream("GET", f"/v1/streams/{stream_id}/events") as events_r:
            events: list[tuple[int, str, dict]] = []
            async with trio.open_nursery() as nursery:
                async def read() -> None:
                    async for e in read_events(events_r):
                        events.append(e)

                nursery.start_soon(read)
                stop = f"/v1/streams/{stream_id}/stop"
                r = await client.post(stop, json={"skip": True})
                assert r.status_code == 200
                r = await client.post(stop, json={"skip": "yes"})
                assert r.json()["error"]["param"] == "skip"
                r = await client.post(stop, json={})
                assert r.status_code == 200
                assert all(s["state"] != "running" for s in r.json()["slots"])
        snapshot = (await client.get(f"/v1/streams/{stream_id}")).json()
    ends = [(d["slot"], d["reason"]) for _, t, d in events if t == "model.stopped"]
    assert ends == [(0, "skip"), (1, "user")]
    assert [t["state"] for t in snapshot["turns"]] == ["stopped", "stopped"]
    assert events[-1][1] == "stream.done"


async def test_skip_is_refused_on_a_parallel_stream(server: Server) -> None:
    async with server.client() as client:
        r = await client.post("/v1/streams", json={"models": ["demo/hang"],
                                                   "messages": OPENING})
        stop = f"/v1/streams/{r.json()['id']}/stop"
        r = await client.post(stop, json={"skip": True})
        assert (r.status_code, r.json()["error"]["param"]) == (400, "skip")
        await client.post(stop, json={})
