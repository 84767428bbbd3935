"""Where ``chorus ask`` gets its events: in this process, a stream is planned exactly as the
server plans it (labels, the ``max_tokens`` ceiling, per-target messages, fallbacks, the
conversation manager's cap), so every test runs both ways and expects the same."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from app.config import build_config
from app.terminal.sources import Where, expand_groups, open_stream, stream_body, targets
from providers import Message

from ..conftest import StartServer
from ..support.upstream import FakeUpstream, Script, Seen, openai_script
from .conftest import Chorus

CEILING = 100  # the [server] max_tokens of every test here
MANAGER_CAP = 64  # what a conversation's manager may answer, in tokens


def toml(upstream: FakeUpstream) -> str:
    return (f'[providers.up]\ntype = "openai"\nbase_url = "{upstream.url}/v1"\n'
            f"retries = 0\n[server]\nmax_tokens = {CEILING}\n"
            '[groups]\npanel = ["up/a", "up/b"]\n')


@pytest.fixture(params=["in-process", "server"])
async def where(request: pytest.FixtureRequest, upstream: FakeUpstream,
                start_server: StartServer) -> Where:
    text = toml(upstream)
    config = build_config(tomllib.loads(text), {})
    if request.param == "in-process":
        return Where(config)
    server = await start_server(text)
    return Where(config, server.url)


async def events_of(where: Where, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    async with open_stream(where, body) as source:
        return [(kind, data) async for _, kind, data in source.events()]


def asked(upstream: FakeUpstream) -> dict[str, list[dict[str, Any]]]:
    """The request bodies the upstream received, by model."""
    by_model: dict[str, list[dict[str, Any]]] = {}
    for seen in upstream.seen:
        by_model.setdefault(seen.json["model"], []).append(seen.json)
    return by_model


def output_ceiling(body: dict[str, Any]) -> int:
    return int(body.get("max_completion_tokens", body.get("max_tokens", 0)))


HI = [Message("user", "hi")]


@pytest.mark.parametrize(("params", "sent"), [
    ({"max_tokens": 5000}, CEILING),  # a larger ask is clamped to the ceiling
    ({}, CEILING),  # none asked: the ceiling is asked
    ({"max_tokens": 7}, 7),  # a smaller ask goes as it is
])
async def test_a_repeated_model_is_numbered_and_its_output_capped(
    where: Where, upstream: FakeUpstream, params: dict[str, Any], sent: int,
) -> None:
    events = await events_of(where, stream_body(targets(["up/a", "up/a"], HI), params))
    start = next(data for kind, data in events if kind == "stream.start")
    assert [s["label"] for s in start["slots"]] == ["up/a", "up/a #2"]
    assert [output_ceiling(body) for body in asked(upstream)["a"]] == [sent, sent]
    assert [kind for kind, _ in events].count("model.done") == 2


async def test_a_group_is_expanded_to_its_members(where: Where, upstream: FakeUpstream) -> None:
    events = await events_of(where, stream_body(targets(["group:panel"], HI), {}))
    start = next(data for kind, data in events if kind == "stream.start")
    assert [s["label"] for s in start["slots"]] == ["up/a", "up/b"]
    assert sorted(asked(upstream)) == ["a", "b"]
    assert [kind for kind, _ in events].count("model.done") == 2


async def test_each_target_is_sent_its_own_messages_and_falls_back(
    where: Where, upstream: FakeUpstream,
) -> None:
    def respond(seen: Seen) -> Script:
        if seen.json["model"] == "broken":
            return Script(status=500, body=[b'{"error": {"message": "down"}}'],
                          headers=[("content-type", "application/json")])
        return openai_script(["fine"])

    upstream.respond = respond
    body = {"models": [
        {"model": "up/a", "messages": [{"role": "user", "content": "first"}]},
        {"model": "up/broken", "fallbacks": ["up/spare"],
         "messages": [{"role": "user", "content": "second"}]},
    ]}
    events = await events_of(where, body)
    sent = asked(upstream)
    assert [m["content"] for m in sent["a"][0]["messages"]] == ["first"]
    assert [m["content"] for m in sent["broken"][0]["messages"]] == ["second"]
    assert [m["content"] for m in sent["spare"][0]["messages"]] == ["second"]
    done = {data["slot"] for kind, data in events if kind == "model.done"}
    assert done == {0, 1}


async def test_a_conversations_manager_is_capped(where: Where,
                                                 upstream: FakeUpstream) -> None:
    upstream.respond = lambda seen: openai_script(["Bo"])
    body = {"mode": "conversation", "rounds": 1,
            "participants": [{"model": "up/a", "name": "Al"}, {"model": "up/b", "name": "Bo"}],
            "manager": {"model": "up/m"}, "params": {"max_tokens": 5000},
            "messages": [{"role": "user", "content": "Is P = NP?"}]}
    events = await events_of(where, body)
    sent = asked(upstream)
    assert sent["m"]
    assert {output_ceiling(b) for b in sent["m"]} == {MANAGER_CAP}
    assert {output_ceiling(b) for b in sent["a"] + sent["b"]} == {CEILING}
    assert [kind for kind, _ in events].count("turn.start") == 2


async def test_an_unknown_model_is_refused_with_the_servers_message(
    chorus: Chorus, upstream: FakeUpstream, start_server: StartServer, tmp_path: Path,
) -> None:
    config = tmp_path / "chorus.toml"
    config.write_text(toml(upstream))
    server = await start_server(toml(upstream))
    local = await chorus("ask", "--no-log", "--config", str(config), "-m", "nope/x", "hi")
    remote = await chorus("ask", "--no-log", "--server", server.url, "-m", "nope/x", "hi")
    assert (local[0], remote[0]) == (2, 2)
    message = remote[2].partition("the server answered 400: ")[2]
    assert "'nope'" in message
    assert local[2] == f"chorus ask: {message}"
    assert upstream.seen == []


async def test_a_group_is_expanded_in_place_among_other_models() -> None:
    config = build_config(tomllib.loads(
        '[aliases]\nbee = "demo/b"\n[groups]\npanel = ["demo/a", "bee"]\n'), {})
    assert await expand_groups(Where(config), ["demo/x", "group:panel", "demo/y"]) == [
        "demo/x", "demo/a", "demo/b", "demo/y"]
    assert await expand_groups(Where(config), ["demo/x"]) == ["demo/x"]
