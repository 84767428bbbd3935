"""The HTTP/1.1 transport (``providers/transport.py``) against a loopback server that speaks
raw bytes: each test decides what every connection does, and reuse, pooling and closes are
seen from the server side (connections accepted, EOF from the client)."""

from __future__ import annotations

import re
import ssl
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import trio
import trustme

from providers import create
from providers.base import ChatRequest, Message, ProviderConfig, Timeouts
from providers.events import TextDelta
from providers.http import _proxied
from providers.transport import Http11Transport
from tests.support.upstream import FakeUpstream, openai_chunk, sse

# An answer's parts: bytes to send, seconds to wait, or an event to wait for. ``None``
# closes the connection without answering.
Part = bytes | float | trio.Event
Answer = bytes | list[Part] | None
Respond = Callable[[int, int, bytes], Answer]


@dataclass
class Peer:  # one accepted connection, as the server saw it
    requests: list[bytes] = field(default_factory=list)  # head and body of each request
    eof: trio.Event = field(default_factory=trio.Event)  # the client closed it


class Raw:
    """``respond(conn, nth, request)`` answers the ``nth`` request on connection ``conn``.
    After an answer the server closes the connection if its body is close-delimited or it
    carries ``x-then: close`` (a note to this server only); else (``Connection: close`` too,
    and an empty answer) it waits for the next request, or the client's EOF."""

    def __init__(self, respond: Respond, ssl_context: ssl.SSLContext | None = None) -> None:
        self.respond = respond
        self.ssl_context = ssl_context
        self.peers: list[Peer] = []
        self.url = ""

    async def serve(self, *, task_status: trio.TaskStatus[str]) -> None:
        listeners: list[Any] = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        if self.ssl_context is not None:
            listeners = [trio.SSLListener(x, self.ssl_context, https_compatible=True)
                         for x in listeners]
        self.url = f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{port}"
        task_status.started(self.url)
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, stream: trio.abc.Stream) -> None:
        conn, peer = len(self.peers), Peer()
        self.peers.append(peer)
        buf = bytearray()
        try:
            while (request := await read_request(stream, buf)) is not None:
                peer.requests.append(request)
                answer = self.respond(conn, len(peer.requests) - 1, request)
                if answer is None:
                    return
                parts = [answer] if isinstance(answer, bytes) else answer
                for part in parts:
                    if isinstance(part, trio.Event):
                        await part.wait()
                    elif isinstance(part, float):
                        await trio.sleep(part)
                    else:
                        await stream.send_all(part)
                sent = b"".join(p for p in parts if isinstance(p, bytes)).lower()
                framed = re.search(rb"length|chunked", sent)
                if b"x-then: close" in sent or (sent and not framed):
                    return
            peer.eof.set()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            peer.eof.set()
        finally:
            await trio.aclose_forcefully(stream)


async def read_request(stream: trio.abc.Stream, buf: bytearray) -> bytes | None:
    """One request (head, and a ``content-length`` body) off ``stream``; None at EOF."""
    while b"\r\n\r\n" not in buf:
        if not (data := await stream.receive_some(65536)):
            return None
        buf += data
    end = buf.index(b"\r\n\r\n") + 4
    length = re.search(rb"(?im)^content-length:\s*(\d+)", buf[:end])
    end += int(length[1]) if length else 0
    while len(buf) < end:
        if not (data := await stream.receive_some(65536)):
            return None
        buf += data
    request = bytes(buf[:end])
    del buf[:end]
    return request


def ok(body: bytes = b"hello", *headers: str) -> bytes:
    extra = "".join(f"{h}\r\n" for h in headers)
    return f"HTTP/1.1 200 OK\r\ncontent-length: {len(body)}\r\n{extra}\r\n".encode() + body


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


CHUNKED = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
Start = Callable[..., Awaitable[Raw]]


@pytest.fixture
def start(nursery: trio.Nursery) -> Start:
    async def start(respond: Respond, ssl_context: ssl.SSLContext | None = None) -> Raw:
        raw = Raw(respond, ssl_context)
        await nursery.start(raw.serve)
        return raw
    return start


def client(timeout: httpx.Timeout | float = 5, **options: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=Http11Transport(**options), timeout=timeout)


async def test_a_body_read_to_its_end_keeps_the_connection_one_closed_early_ends_it(
    start: Start,
) -> None:
    long = b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\npart-"
    with trio.fail_after(5):
        raw = await start(lambda conn, nth, req: long if nth == 2 else ok(b"%d/%d" % (conn, nth)))
        async with client() as c:
            for n in range(2):
                r = await c.post(raw.url + "/v1/x", content=b"q%d" % n)
                assert (r.status_code, r.content) == (200, b"0/%d" % n)
            assert len(raw.peers) == 1
            assert [q.rsplit(b"\r\n", 1)[1] for q in raw.peers[0].requests] == [b"q0", b"q1"]
            async with c.stream("GET", raw.url) as r, aclosing(r.aiter_raw()) as body:
                assert await anext(body) == b"part-"  # and the rest is left unread
            with trio.fail_after(0.5):
                await raw.peers[0].eof.wait()
            assert (await c.get(raw.url)).content == b"1/0"
        assert len(raw.peers) == 2


@pytest.mark.parametrize(("answer", "client_closes"), [
    # The server keeps the socket: the client must close it itself.
    pytest.param(ok(b"hello world", "Connection: close"), True, id="connection-close"),
    # No length, not chunked: the body ends when the server closes.
    pytest.param([b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n", b"hello ", 0.02,
                  b"world"], False, id="close-delimited"),
])
async def test_an_answer_that_ends_its_connection_is_read_whole_and_not_kept(
    start: Start, answer: Answer, client_closes: bool,
) -> None:
    with trio.fail_after(5):
        raw = await start(lambda conn, nth, req: answer)
        async with client() as c:
            for n in range(2):
                r = await c.get(raw.url)
                assert (r.status_code, r.content) == (200, b"hello world")
                if client_closes:
                    with trio.fail_after(0.5):
                        await raw.peers[n].eof.wait()
        assert len(raw.peers) == 2


@pytest.mark.parametrize("stale", [
    pytest.param(None, id="server-closed-it"),
    # Unasked bytes on an idle connection (a 408, the socket left open): reusing it would
    # read them as the answer to the next request.
    pytest.param(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n", id="sent-a-408"),
])
async def test_an_idle_connection_the_server_spoiled_is_dropped(
    start: Start, stale: bytes | None,
) -> None:
    go = trio.Event()
    first = [ok(b"0", "x-then: close")] if stale is None else [ok(b"0"), go, stale]
    with trio.fail_after(5):
        raw = await start(lambda conn, nth, req: first if conn == 0 else ok(b"1"))
        async with client() as c:
            assert (await c.get(raw.url)).content == b"0"
            go.set()
            await trio.sleep(0.05)
            r = await c.get(raw.url)
            assert (r.status_code, r.content) == (200, b"1")
            if stale is not None:
                with trio.fail_after(0.5):
                    await raw.peers[0].eof.wait()  # the client closed the spoiled one
        assert len(raw.peers) == 2
        assert len(raw.peers[0].requests) == 1


async def test_a_reused_connection_closed_unanswered_is_resent_once(start: Start) -> None:
    # The race a poll cannot see: the server closes the kept connection as the next request
    # arrives on it (it read the request, but never answered).
    def respond(conn: int, nth: int, req: bytes) -> Answer:
        return None if (conn, nth) == (0, 1) else ok(b"%d/%d" % (conn, nth))

    with trio.fail_after(5):
        raw = await start(respond)
        async with client() as c:
            assert (await c.post(raw.url, content=b"one")).content == b"0/0"
            assert (await c.post(raw.url, content=b"two")).content == b"1/0"
        assert len(raw.peers) == 2
        assert raw.peers[0].requests[1].endswith(b"two")
        assert raw.peers[1].requests == [raw.peers[0].requests[1]]


@pytest.mark.parametrize("answer", [
    pytest.param(None, id="closed-unanswered"),
    pytest.param(b"HTTP/1.1 two hundred OK\r\n\r\n", id="malformed-status-line"),
    pytest.param(b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", id="malformed-header"),
    pytest.param(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\nx-then: close\r\n\r\nhello",
                 id="body-cut-short"),
    pytest.param(CHUNKED[:-2] + b"x-then: close\r\n\r\n" + chunk(b"hello"),
                 id="chunked-cut-short"),
])
async def test_a_broken_answer_on_a_fresh_connection_raises_without_resending(
    start: Start, answer: Answer,
) -> None:
    with trio.fail_after(5):
        raw = await start(lambda conn, nth, req: answer)
        async with client() as c:
            with pytest.raises(httpx.RemoteProtocolError):
                await c.get(raw.url)
        assert len(raw.peers) == 1


async def test_max_idle_bounds_the_idle_connections_per_origin(start: Start) -> None:
    all_in = trio.Event()

    def respond(conn: int, nth: int, req: bytes) -> Answer:
        if sum(len(p.requests) for p in raw.peers) == 4:
            all_in.set()
        return [all_in, ok()]  # four requests in flight at once: four connections

    with trio.fail_after(5):
        raw = await start(respond)
        async with client(max_idle=2) as c:
            for n, total in ((4, 4), (2, 6)):  # then the two kept serve two at once
                async with trio.open_nursery() as nursery:
                    for _ in range(n):
                        nursery.start_soon(c.get, raw.url)
                assert sum(len(p.requests) for p in raw.peers) == total
                assert len(raw.peers) == 4
                await trio.sleep(0.05)  # time for the server to read EOF on closed ones
                assert sum(p.eof.is_set() for p in raw.peers) == 2


async def test_an_idle_connection_past_keepalive_expiry_is_not_reused(start: Start) -> None:
    with trio.fail_after(5):
        raw = await start(lambda conn, nth, req: ok())
        async with client(keepalive_expiry=0.1) as c:
            for _ in range(2):
                await c.get(raw.url)
            assert len(raw.peers) == 1
            await trio.sleep(0.2)
            await c.get(raw.url)
            assert len(raw.peers) == 2
            with trio.fail_after(0.5):
                await raw.peers[0].eof.wait()  # the expired one was closed, not leaked


async def test_tls_streams_a_body_when_its_ca_is_trusted_and_fails_when_not(
    start: Start,
) -> None:
    ca = trustme.CA()
    tls_server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(tls_server)
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    go = trio.Event()
    with trio.fail_after(5):
        raw = await start(lambda conn, nth, req: [CHUNKED, chunk(b"one "), go, chunk(b"two"),
                                                  b"0\r\n\r\n"], tls_server)
        async with client(ssl_context=trusting) as c:
            async with c.stream("GET", raw.url) as r, aclosing(r.aiter_raw()) as body:
                assert await anext(body) == b"one "  # before the server sends the rest
                go.set()
                assert [part async for part in body] == [b"two"]
            assert (await c.get(raw.url)).content == b"one two"
        assert raw.url.startswith("https://")
        assert len(raw.peers) == 1  # reused
        async with client() as c:  # certifi's roots: the private CA is not among them
            with pytest.raises(httpx.ConnectError):
                await c.get(raw.url)


async def test_a_refused_connection_and_an_unknown_scheme_are_httpx_errors() -> None:
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    refused = httpx.Request("GET", f"http://127.0.0.1:{port}/")
    with trio.fail_after(5):
        async with Http11Transport() as transport:
            with pytest.raises(httpx.ConnectError):
                await transport.handle_async_request(refused)
            with pytest.raises(httpx.UnsupportedProtocol):
                await transport.handle_async_request(httpx.Request("GET", "ftp://127.0.0.1/x"))


@pytest.mark.parametrize("answer", [
    pytest.param(b"", id="no-head"),
    pytest.param(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello", id="body-stalls"),
])
async def test_the_read_timeout_bounds_each_read(start: Start, answer: Answer) -> None:
    # The client hands its timeouts to the transport as request.extensions["timeout"].
    with trio.fail_after(5):
        raw = await start(lambda conn, nth, req: answer)
        began = trio.current_time()
        async with client(httpx.Timeout(5, read=0.2)) as c:
            with pytest.raises(httpx.ReadTimeout):
                await c.get(raw.url)
            assert 0.2 <= trio.current_time() - began < 1
            await raw.peers[0].eof.wait()  # closed at once, not kept


async def test_informational_answers_before_the_real_one_are_skipped(start: Start) -> None:
    with trio.fail_after(5):
        early = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n"
        raw = await start(lambda conn, nth, req: [early, 0.02, ok(b"real")])
        async with client() as c:
            r = await c.post(raw.url, content=b"x")
            assert (r.status_code, r.content) == (200, b"real")
            assert (await c.get(raw.url)).content == b"real"  # and the connection is kept
        assert len(raw.peers) == 1


async def test_send_writes_exactly_the_head_and_body_it_was_given_plus_host_and_length(
    start: Start,
) -> None:
    answer = ok(b"fine", "X-Case: Kept")
    with trio.fail_after(5):
        raw = await start(lambda conn, nth, req: [answer[:1], answer[1:9], 0.01,
                                                  *(bytes([b]) for b in answer[9:])])
        async with Http11Transport() as transport:
            url = httpx.URL(raw.url + "/v1/chat/completions?alt=sse")
            for n in range(2):
                r = await transport.send("POST", url, [(b"Accept", b"text/event-stream")],
                                         b'{"n":%d}' % n, {"read": 2.0})
                assert (r.status_code, r.reason_phrase, r.http_version) == (200, "OK",
                                                                            "HTTP/1.1")
                assert r.headers.raw[-1] == (b"X-Case", b"Kept")
                assert b"".join([part async for part in r.stream]) == b"fine"
                await r.aclose()
    port = raw.url.rsplit(":", 1)[1]
    assert raw.peers[0].requests == [
        b"POST /v1/chat/completions?alt=sse HTTP/1.1\r\nHost: 127.0.0.1:%s\r\n"
        b"Accept: text/event-stream\r\nContent-Length: 7\r\n\r\n{\"n\":%d}" % (port.encode(), n)
        for n in range(2)]  # one connection, reused


async def test_a_header_that_would_split_the_head_is_refused_before_anything_is_sent(
    start: Start,
) -> None:
    with trio.fail_after(5):
        raw = await start(lambda conn, nth, req: ok())
        async with Http11Transport() as transport:
            with pytest.raises(httpx.LocalProtocolError, match="line break"):
                await transport.send("POST", httpx.URL(raw.url), [
                    (b"Authorization", b"Bearer k\r\nX-Injected: 1")], b"{}", {})
    assert raw.peers == []


async def test_a_malformed_answer_head_is_a_protocol_error_and_its_connection_closed(
    start: Start,
) -> None:
    with trio.fail_after(5):
        broken = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nbroken line\r\n\r\n"
        raw = await start(lambda conn, nth, req: broken)
        async with client() as c:
            with pytest.raises(httpx.RemoteProtocolError, match="malformed header line"):
                await c.get(raw.url)
            await raw.peers[0].eof.wait()


async def test_a_chunked_answer_in_odd_pieces_is_read_whole_and_its_connection_kept(
    start: Start,
) -> None:
    # Extensions and trailers, the head and first chunk in one write, a chunk cut in two,
    # and a pause mid-chunk: the part that arrived is handed on before the rest comes.
    wire = CHUNKED + b"5;ext=1\r\nhel"
    rest = [b"lo\r\n6\r\n wor", 0.05, b"ld\r\n0\r\nx-sum: 9\r\n\r\n"]
    seen: list[tuple[bytes, float]] = []
    with trio.fail_after(5):
        raw = await start(lambda conn, nth, req: [wire, 0.02, *rest] if nth == 0 else ok(b"2"))
        async with client() as c:
            async with c.stream("GET", raw.url) as r:
                async for data in r.aiter_raw():
                    seen.append((data, trio.current_time()))
            assert b"".join(d for d, _ in seen) == b"hello world"
            assert seen[0][0] == b"hel"
            assert seen[-1][1] - seen[0][1] >= 0.05
            assert (await c.get(raw.url)).content == b"2"
        assert len(raw.peers) == 1


BROKEN_HEAD = CHUNKED[:-2] + b"x-then: close\r\n\r\n"  # the server closes after it


@pytest.mark.parametrize("answer", [
    pytest.param([BROKEN_HEAD, b"zz\r\nab\r\n"], id="bad-chunk-size"),
    pytest.param([BROKEN_HEAD, b"2\r\nabc\r\n"], id="chunk-overruns-its-size"),
    pytest.param([BROKEN_HEAD, b"5\r\nab"], id="closed-mid-chunk"),
    pytest.param([ok(b"abcdefghi", "x-then: close")[:-6]], id="closed-short"),
])
async def test_a_body_broken_mid_answer_is_a_protocol_error_and_its_connection_closed(
    start: Start, answer: Answer,
) -> None:
    with trio.fail_after(5):
        raw = await start(lambda conn, nth, req: answer if conn == 0 else ok(b"fresh"))
        async with client() as c:
            with pytest.raises(httpx.RemoteProtocolError):
                await c.get(raw.url)
            assert (await c.get(raw.url)).content == b"fresh"
        assert len(raw.peers) == 2


async def test_bytes_after_the_answer_spoil_its_connection(start: Start) -> None:
    extra = CHUNKED + chunk(b"ok") + b"0\r\n\r\nHTTP/1.1 200 OK\r\n"
    with trio.fail_after(5):
        raw = await start(lambda conn, nth, req: extra if conn == 0 else ok(b"fresh"))
        async with client() as c:
            assert (await c.get(raw.url)).content == b"ok"
            with trio.fail_after(0.5):
                await raw.peers[0].eof.wait()
            assert (await c.get(raw.url)).content == b"fresh"
        assert len(raw.peers) == 2


async def test_answers_without_a_body_keep_their_connection(start: Start) -> None:
    # (``x-framing: length`` tells the test server to keep the connection after a 204.)
    answers = [b"HTTP/1.1 204 No Content\r\nx-framing: length\r\n\r\n",
               b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", ok(b"last")]
    with trio.fail_after(5):
        raw = await start(lambda conn, nth, req: answers[nth])
        async with client() as c:
            assert (await c.get(raw.url)).status_code == 204
            head = await c.head(raw.url)
            assert (head.status_code, head.content) == (200, b"")
            assert (await c.get(raw.url)).content == b"last"
        assert len(raw.peers) == 1


# -- through HttpProvider: proxies from the environment ------------------------------------

SSE = b"".join(p for p in sse(openai_chunk("Hi"), openai_chunk(finish="stop"))
               if isinstance(p, bytes))
SSE_ANSWER = CHUNKED[:-2] + b"content-type: text/event-stream\r\n\r\n" + chunk(SSE) + b"0\r\n\r\n"


async def ask(base_url: str) -> tuple[Any, str]:
    """The provider's own transport for ``base_url`` (``None``: it sends through the
    httpx client), and the text it streams."""
    provider: Any = create(ProviderConfig(name="p", type="openai", base_url=base_url,
                                          api_key="k", timeouts=Timeouts(connect=2.0)))
    try:
        with trio.fail_after(5):
            events = [e async for e in provider.stream(ChatRequest("m", [Message("user", "hi")]))]
    finally:
        await provider.aclose()
    return provider._transport, "".join(e.text for e in events if isinstance(e, TextDelta))


@pytest.fixture
async def proxy(start: Start, monkeypatch: pytest.MonkeyPatch) -> Raw:
    """A "proxy" that answers every request itself, in an environment with no proxy set."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "request_method"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return await start(lambda conn, nth, req: SSE_ANSWER)


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "ALL_PROXY"])
async def test_an_environment_proxy_carries_the_request(
    proxy: Raw, monkeypatch: pytest.MonkeyPatch, variable: str,
) -> None:
    monkeypatch.setenv(variable, proxy.url)
    transport, text = await ask("http://example.invalid/v1")
    assert transport is None  # via the client
    assert text == "Hi"
    assert proxy.peers[0].requests[0].startswith(
        b"POST http://example.invalid/v1/chat/completions HTTP/1.1\r\n")


async def test_no_proxy_sends_straight_to_the_upstream(
    proxy: Raw, monkeypatch: pytest.MonkeyPatch, nursery: trio.Nursery,
) -> None:
    upstream = FakeUpstream()
    await nursery.start(upstream.serve)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    assert _proxied("http://example.invalid/v1")
    assert not _proxied(upstream.url)
    transport, text = await ask(upstream.url + "/v1")
    assert isinstance(transport, Http11Transport)  # straight to it
    assert text == "Hello world"
    assert upstream.seen[0].path == "/v1/chat/completions"
    assert proxy.peers == []
