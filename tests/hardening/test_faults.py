"""Upstream faults: each ends only its own slot, with a typed error, within its timeout.

The faulty upstream is a raw socket server here (or ``FakeUpstream`` where HTTP is well
formed); the sibling slot streams from a healthy ``FakeUpstream`` and must finish.
(Refused connections, drops mid-body, malformed chunks and upstream statuses are in
tests/api/test_upstream.py.)
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Awaitable, Callable
from functools import partial

import pytest
import trio

from ..conftest import StartServer, read_events
from ..support.upstream import FakeUpstream, Script, openai_chunk, openai_script, sse
from .conftest import ASK, SSE

Handler = Callable[[trio.SocketStream], Awaitable[None]]

OK_HEADERS = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"


async def read_request(stream: trio.SocketStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            while len(body) < int(value):
                body += await stream.receive_some(65536)
    return head


async def reset_mid_stream(stream: trio.SocketStream) -> None:
    await read_request(stream)
    await stream.send_all(OK_HEADERS + b"Content-Length: 100000\r\n\r\n"
                          + b"".join(sse(openai_chunk("par"), done=False)))
    await trio.sleep(0.1)
    # SO_LINGER 0: close() sends a RST instead of a FIN.
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


async def truncated_chunk(stream: trio.SocketStream) -> None:
    await read_request(stream)
    body = b"".join(sse(openai_chunk("par"), done=False))
    await stream.send_all(OK_HEADERS + b"Transfer-Encoding: chunked\r\n\r\n"
                          + b"%x\r\n%s\r\n" % (len(body), body) + b"400\r\ndata: {\"cho")
    await stream.aclose()


async def not_http(stream: trio.SocketStream) -> None:
    await read_request(stream)
    await stream.send_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    await stream.aclose()


async def hang_before_headers(stream: trio.SocketStream) -> None:
    await read_request(stream)
    await trio.sleep(60)


async def endless_line(stream: trio.SocketStream) -> None:
    """A 200 whose body never ends a line: as fast as the client takes it, for 30 s."""
    await read_request(stream)
    await stream.send_all(OK_HEADERS + b"\r\ndata: ")
    block = b"a" * 65536
    with trio.move_on_after(30):
        while True:
            await stream.send_all(block)


@pytest.fixture
async def raw_upstream(nursery: trio.Nursery) -> Callable[[Handler], Awaitable[str]]:
    async def start(handler: Handler) -> str:
        async def guarded(stream: trio.SocketStream) -> None:
            try:
                await handler(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass

        listeners = await nursery.start(partial(trio.serve_tcp, guarded, 0, host="127.0.0.1"))
        return f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"

    return start


def two_providers(bad_url: str, good: FakeUpstream, timeouts: str = "") -> str:
    return (f"[server]\nresume_grace = 0.0\n"
            f"[providers.bad]\ntype = \"openai\"\nbase_url = \"{bad_url}/v1\"\nretries = 0\n"
            f"timeouts = {{ connect = 2, first_token = 2, idle = 2 {timeouts} }}\n"
            f"[providers.good]\ntype = \"openai\"\nbase_url = \"{good.url}/v1\"\n")


async def run_pair(server, *, limit: float) -> tuple[dict, dict, float]:
    """Stream ``bad/m`` beside ``good/m``; return the bad slot's error, the good slot's end
    and how long the bad slot took from the request."""
    async with server.client() as client, client.stream(
            "POST", "/v1/streams", headers=SSE,
            json={"models": ["bad/m", "good/m"], **ASK}) as r:
        started = trio.current_time()
        ended_at = None
        events = []
        with trio.fail_after(limit + 5):
            async for event in read_events(r):
                events.append(event)
                if event[1] == "model.error" and ended_at is None:
                    ended_at = trio.current_time()
    bad_end = next(d for _, t, d in events if t in ("model.error", "model.done",
                                                     "model.stopped") and d["slot"] == 0)
    good_end = next(d for _, t, d in events if t.startswith("model.") and t != "model.start"
                    and d["slot"] == 1)
    assert "error" in bad_end, bad_end
    return bad_end["error"], good_end, (ended_at or trio.current_time()) - started


@pytest.mark.parametrize(
    ("handler", "error_type", "limit"),
    [
        (reset_mid_stream, "connection", 2.0),
        (truncated_chunk, "connection", 2.0),
        (not_http, "connection", 2.0),
        (hang_before_headers, "timeout", 2.0 + 1.5),  # first_token = 2
        (endless_line, ("protocol", "timeout"), 2.0 + 2.0),
    ],
    ids=["reset", "truncated-chunk", "not-http", "hang-before-headers", "endless-line"],
)
async def test_a_broken_upstream_fails_only_its_slot_in_time(
    raw_upstream, upstream: FakeUpstream, start_server: StartServer,
    handler: Handler, error_type: str | tuple[str, ...], limit: float,
) -> None:
    upstream.respond = lambda seen: openai_script(["fine"] * 10, gap=0.01)
    server = await start_server(two_providers(await raw_upstream(handler), upstream))
    error, good, took = await run_pair(server, limit=limit)
    assert error["type"] in (error_type if isinstance(error_type, tuple) else (error_type,))
    assert took < limit
    assert good["finish_reason"] == "stop"
    assert "usage" in good


async def test_hang_between_chunks_is_an_idle_timeout(
    upstream: FakeUpstream, start_server: StartServer,
) -> None:
    upstream.respond = lambda seen: (
        Script(body=[*sse(openai_chunk("first"), done=False), 60.0])
        if seen.json["model"] == "m" and seen.path.startswith("/bad")
        else openai_script(["fine"] * 10, gap=0.01))
    server = await start_server(two_providers(f"{upstream.url}/bad", upstream,
                                              timeouts=", total = 30"))
    error, good, took = await run_pair(server, limit=3.5)
    assert error["type"] == "timeout"
    assert "silent" in error["message"]
    assert 2.0 <= took < 3.5  # idle = 2, counted from the first token
    assert good["finish_reason"] == "stop"


async def test_tls_to_a_plain_http_port_is_a_connection_error(
    upstream: FakeUpstream, start_server: StartServer,
) -> None:
    upstream.respond = lambda seen: openai_script(["fine"] * 3)
    tls_url = upstream.url.replace("http://", "https://")
    server = await start_server(two_providers(tls_url, upstream))
    error, good, took = await run_pair(server, limit=2.0)
    assert error["type"] == "connection"
    assert took < 2.0  # connect = 2
    assert good["finish_reason"] == "stop"


class NoSuchHost(trio.abc.HostnameResolver):
    """DNS that knows no name but the loopback ones (no query leaves the machine)."""

    async def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):
        if host in (b"127.0.0.1", "127.0.0.1"):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def getnameinfo(self, sockaddr, flags):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


async def test_a_name_that_does_not_resolve_is_a_connection_error(
    upstream: FakeUpstream, start_server: StartServer,
) -> None:
    upstream.respond = lambda seen: openai_script(["fine"] * 3)
    server = await start_server(two_providers("http://llm.chorus-test.invalid", upstream))
    previous = trio.socket.set_custom_hostname_resolver(NoSuchHost())
    try:
        error, good, _ = await run_pair(server, limit=1.0)
    finally:
        trio.socket.set_custom_hostname_resolver(previous)
    assert error["type"] == "connection"
    assert good["finish_reason"] == "stop"


async def test_a_429_storm_is_retried_a_bounded_number_of_times(
    upstream: FakeUpstream, start_server: StartServer,
) -> None:
    """Every request refused with 429: each of 18 slots makes 1 + 2 attempts, honours
    ``Retry-After`` (0 here) and ends with ``rate_limit``; a ``Retry-After`` beyond 30 s
    is not waited for at all."""
    def respond(seen):
        wait = "3600" if seen.json["model"] == "later" else "0"
        return Script(status=429, body=[b'{"error": {"message": "slow down"}}'],
                      headers=[("content-type", "application/json"), ("retry-after", wait)])

    upstream.respond = respond
    server = await start_server(
        f"[server]\nrate_limit = 0.0\n[providers.up]\ntype = \"openai\"\n"
        f"base_url = \"{upstream.url}/v1\"\nretries = 2\n")
    results: list[list[tuple]] = []

    async def one(models: list[str]) -> None:
        async with server.client() as client, client.stream(
                "POST", "/v1/streams", headers=SSE, json={"models": models, **ASK}) as r:
            results.append([e async for e in read_events(r)])

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            for _ in range(2):
                nursery.start_soon(one, ["up/now"] * 9)
            nursery.start_soon(one, ["up/later"])
    errors = [d for events in results for _, t, d in events if t == "model.error"]
    assert len(errors) == 19
    assert {e["error"]["type"] for e in errors} == {"rate_limit"}
    asked = [s.json["model"] for s in upstream.seen]
    assert asked.count("now") == 18 * 3
    assert asked.count("later") == 1


SPLIT = ["a ", "\ud83d", "\ude00", " b"]  # an emoji's surrogate pair, one half per chunk


async def test_half_a_character_passes_through_as_its_escape(
    upstream: FakeUpstream, start_server: StartServer,
) -> None:
    # An upstream that escapes non-ASCII (``\ud83d`` in its JSON) may split a character
    # outside the BMP between two chunks. Each half goes out as the same escape, so a
    # client that joins the texts (a browser: UTF-16 strings) has the character back; it
    # fails nothing, and the server goes on serving.
    upstream.respond = lambda seen: openai_script(SPLIT)
    server = await start_server(two_providers(upstream.url, upstream))
    async with server.client() as client:
        for _ in range(2):  # the second: the server still serves
            async with client.stream("POST", "/v1/streams", headers=SSE,
                                     json={"models": ["bad/m", "good/m"], **ASK}) as r:
                events = [e async for e in read_events(r)]
            assert events[-1][1] == "stream.done"
            for slot in (0, 1):
                text = "".join(d["text"] for _, t, d in events
                               if t == "delta" and d["slot"] == slot)
                assert utf16(text) == "a \U0001f600 b"
        chunks = []
        async with client.stream("POST", "/v1/chat/completions", json={
                "model": "good/m", "stream": True, **ASK}) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: {"):
                    chunks.append(json.loads(line[6:]))
        assert chunks
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        assert utf16(text) == "a \U0001f600 b"
        whole = await client.post("/v1/chat/completions", json={"model": "good/m", **ASK})
        assert whole.status_code == 200
        assert utf16(whole.json()["choices"][0]["message"]["content"]) == "a \U0001f600 b"


def utf16(text: str) -> str:
    """``text`` as a UTF-16 client reads it: surrogate halves side by side are one
    character."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
