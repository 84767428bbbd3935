"""Each provider type end to end: recorded provider bodies replayed by a real HTTP upstream
on loopback, through Chorus, to an SSE client. What arrives must be what the protocol's
parser reads from the same bytes offline, so nothing is lost or changed on the way."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import trio

from app.autodetect import with_local_ollama
from app.config import build_config
from providers import ReasoningDelta, TextDelta, Usage
from providers.base import StreamParser

from ..conftest import StartServer, read_events
from ..support.upstream import FakeUpstream, Script, Seen, openai_script

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
ASK = {"messages": [{"role": "user", "content": "hello"}]}

CASES = [
    ("openai", "openai_chat_text_include_usage.sse", "/v1/chat/completions"),
    ("openai", "deepseek_chat_reasoning_content.sse", "/v1/chat/completions"),
    ("openai", "together_chat_think_inline.sse", "/v1/chat/completions"),
    ("openai", "openrouter_chat_comments_reasoning.sse", "/v1/chat/completions"),
    ("anthropic", "anthropic_messages_thinking.sse", "/v1/messages"),
    ("gemini", "gemini_stream_sse_thinking.sse",
     "/v1beta/models/m:streamGenerateContent?alt=sse"),
    ("ollama", "ollama_chat.ndjson", "/api/chat"),
]


def offline(kind: str, body: bytes) -> tuple[str, str, Usage | None]:
    """Text, reasoning and last usage as the protocol's parser reads the body whole."""
    from providers import anthropic, gemini, ollama, openai

    parser: StreamParser = {"openai": openai.parser, "anthropic": anthropic.parser,
                            "gemini": gemini.parser, "ollama": ollama.parser}[kind]()
    events = parser.feed(body) + parser.close()
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    usages = [e for e in events if isinstance(e, Usage)]
    return text, reasoning, usages[-1] if usages else None


def replay(body: bytes, piece: int = 997) -> list[bytes | float]:
    """The body in uneven network-sized pieces, so events straddle reads."""
    return [body[i:i + piece] for i in range(0, len(body), piece)]


def provider_toml(name: str, kind: str, url: str, extra: str = "") -> str:
    base = url + ("/v1" if kind == "openai" else "")
    return (f"[providers.{name}]\ntype = \"{kind}\"\nbase_url = \"{base}\"\n"
            f"api_key = \"test-key\"\nretries = 0\n{extra}")


@pytest.mark.parametrize(("kind", "fixture", "path"), CASES, ids=[c[1] for c in CASES])
async def test_a_recorded_stream_arrives_whole(
    upstream: FakeUpstream, start_server: StartServer, kind: str, fixture: str, path: str,
) -> None:
    body = (FIXTURES / fixture).read_bytes()
    ctype = "application/x-ndjson" if kind == "ollama" else "text/event-stream"
    upstream.respond = lambda seen: Script(body=replay(body), headers=[("content-type", ctype)])
    server = await start_server(provider_toml("p", kind, upstream.url))
    async with server.client() as client, client.stream(
        "POST", "/v1/streams", headers={"Accept": "text/event-stream"},
        json={"models": ["p/m"], **ASK}) as r:
        events = [e async for e in read_events(r)]
    assert upstream.seen[0].path == path
    text, reasoning, usage = offline(kind, body)
    assert "".join(d["text"] for _, t, d in events if t == "delta") == text
    assert "".join(d["text"] for _, t, d in events if t == "reasoning") == reasoning
    assert text
    done = next(d for _, t, d in events if t == "model.done")
    if usage is not None and usage.output_tokens is not None:
        assert done["usage"]["output_tokens"] == usage.output_tokens
        assert done["usage"]["estimated"] is False


@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini", "ollama"])
async def test_stop_closes_the_connection_for_every_protocol(
    upstream: FakeUpstream, start_server: StartServer, kind: str,
) -> None:
    fixture = {"openai": "openai_chat_text_plain.sse", "anthropic": "anthropic_messages_text.sse",
               "gemini": "gemini_stream_sse_text.sse", "ollama": "ollama_chat.ndjson"}[kind]
    body = (FIXTURES / fixture).read_bytes()
    # The first third of the body, then silence: the model is "still generating".
    upstream.respond = lambda seen: Script(body=[body[: len(body) // 3]], end="hang")
    server = await start_server(provider_toml("p", kind, upstream.url))
    async with server.client() as client:
        created = (await client.post("/v1/streams", json={"models": ["p/m"], **ASK})).json()
        async with client.stream("GET", created["events_url"]):
            seen = await upstream.wait_for_request()
            stopped = (await client.post(created["stop_url"])).json()
            assert stopped["slots"][0]["state"] == "stopped"
            with trio.fail_after(1):
                await seen.closed.wait()


async def test_rate_limited_then_served_with_retry_after(
    upstream: FakeUpstream, start_server: StartServer,
) -> None:
    def respond(seen: Seen) -> Script:
        if len(upstream.seen) == 1:
            return Script(status=429, headers=[("content-type", "application/json"),
                                               ("retry-after", "0.3")],
                          body=[b'{"error": {"message": "slow down"}}'])
        return openai_script(["after", " waiting"])

    upstream.respond = respond
    server = await start_server(provider_toml("p", "openai", upstream.url).replace(
        "retries = 0", "retries = 2"))
    async with server.client() as client, client.stream(
        "POST", "/v1/streams", headers={"Accept": "text/event-stream"},
        json={"models": ["p/m"], **ASK}) as r:
        events = [e async for e in read_events(r)]
    retry = next(d for _, t, d in events if t == "model.retry")
    assert retry == {"slot": 0, "attempt": 1, "reason": "rate_limit", "model": "p/m"}
    assert upstream.seen[1].received_at - upstream.seen[0].received_at >= 0.3
    assert "".join(d["text"] for _, t, d in events if t == "delta") == "after waiting"


async def test_fallback_from_a_failing_provider_to_another(
    upstream: FakeUpstream, start_server: StartServer,
) -> None:
    upstream.respond = lambda seen: (
        Script(status=503, body=[b"{}"], headers=[("content-type", "application/json")])
        if seen.json["model"] == "primary" else openai_script(["rescued"]))
    toml = (provider_toml("a", "openai", upstream.url, 'fallbacks = { primary = ["b/backup"] }\n')
            + provider_toml("b", "openai", upstream.url))
    server = await start_server(toml)
    async with server.client() as client, client.stream(
        "POST", "/v1/streams", headers={"Accept": "text/event-stream"},
        json={"models": ["a/primary"], **ASK}) as r:
        events = [e async for e in read_events(r)]
    retry = next(d for _, t, d in events if t == "model.retry")
    assert (retry["model"], retry["reason"]) == ("b/backup", "upstream")
    assert [s.json["model"] for s in upstream.seen] == ["primary", "backup"]
    assert next(d for _, t, d in events if t == "delta")["text"] == "rescued"


async def test_a_request_target_can_name_its_own_fallbacks(
    upstream: FakeUpstream, start_server: StartServer,
) -> None:
    upstream.respond = lambda seen: (
        Script(status=401, body=[b"{}"], headers=[("content-type", "application/json")])
        if seen.json["model"] == "x" else openai_script(["y here"]))
    server = await start_server(provider_toml("p", "openai", upstream.url))
    async with server.client() as client, client.stream(
        "POST", "/v1/streams", headers={"Accept": "text/event-stream"},
        json={"models": [{"model": "p/x", "fallbacks": ["p/y"]}], **ASK}) as r:
        events = [e async for e in read_events(r)]
    assert [t for _, t, _ in events if t.startswith("model.")] == [
        "model.start", "model.retry", "model.done"]


async def test_max_concurrency_queues_slots_visibly(
    upstream: FakeUpstream, start_server: StartServer,
) -> None:
    upstream.respond = lambda seen: openai_script(["a"] * 20, gap=0.02)
    server = await start_server(provider_toml("p", "openai", upstream.url,
                                              "max_concurrency = 1\n"))
    async with server.client() as client:
        created = (await client.post("/v1/streams", json={"models": ["p/m"] * 3, **ASK})).json()
        async with client.stream("GET", created["events_url"]) as r:
            await upstream.wait_for_request()
            snap = (await client.get(f"/v1/streams/{created['id']}")).json()
            assert sorted(s["state"] for s in snap["slots"]) == ["queued", "queued", "running"]
            events = [e async for e in read_events(r)]
    assert [d["counts"] for _, t, d in events if t == "stream.done"] == [
        {"done": 3, "error": 0, "stopped": 0}]
    # One at a time: each request waited for the previous answer (19 gaps of 20 ms).
    arrivals = [s.received_at for s in upstream.seen]
    assert len(arrivals) == 3
    assert all(b - a >= 0.38 for a, b in itertools.pairwise(arrivals))


async def test_models_are_discovered_from_the_upstream_and_cached(
    upstream: FakeUpstream, start_server: StartServer,
) -> None:
    upstream.respond = lambda seen: Script(
        headers=[("content-type", "application/json")],
        body=[json.dumps({"data": [{"id": "alpha"}, {"id": "beta"}]}).encode()])
    toml = provider_toml("p", "openai", upstream.url) + (
        "[providers.down]\ntype = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n")
    server = await start_server(toml)
    async with server.client() as client:
        first = (await client.get("/v1/models")).json()
        second = (await client.get("/v1/models")).json()
    assert [m["id"] for m in first["data"]] == ["p/alpha", "p/beta"]
    assert second == first
    assert [s.path for s in upstream.seen] == ["/v1/models"]  # the second came from cache
    assert upstream.seen[0].headers["authorization"] == "Bearer test-key"


async def test_a_reachable_local_ollama_is_added_and_replaces_the_demo(
    upstream: FakeUpstream,
) -> None:
    upstream.respond = lambda seen: Script(
        headers=[("content-type", "application/json")],
        body=[b'{"models": [{"name": "llama3.2:latest"}]}'])
    base = build_config({}, {})
    assert list(base.providers) == ["demo"]
    host = upstream.url.removeprefix("http://")
    found = await trio.to_thread.run_sync(with_local_ollama, base, {"OLLAMA_HOST": host})
    assert list(found.providers) == ["ollama"]
    assert found.providers["ollama"].base_url == upstream.url
    assert found.demo_left_out  # and /v1/models and `chorus models` say so
    asked = build_config({}, {"CHORUS_DEMO": "1"})
    kept = await trio.to_thread.run_sync(with_local_ollama, asked, {"OLLAMA_HOST": host})
    assert sorted(kept.providers) == ["demo", "ollama"]
    assert not kept.demo_left_out
    nothing = await trio.to_thread.run_sync(with_local_ollama, base,
                                            {"OLLAMA_HOST": "127.0.0.1:9"})
    assert list(nothing.providers) == ["demo"]
