"""The HTTP shell (``providers/http.py``) on httpx's own transport, against real upstreams on
loopback: what it sends, how long it waits, how a stop ends the upstream's answer, and which
``providers.errors`` type each failure becomes, with the API key never in a message."""

from __future__ import annotations

import email.utils
import time
import traceback
from collections.abc import Awaitable, Callable
from contextlib import aclosing

import httpx
import pytest
import trio

from providers import create, errors
from providers.base import ChatRequest, Message, ProviderConfig, Timeouts
from providers.events import ProviderEvent, TextDelta
from providers.http import ClientShards, HttpProvider, parse_retry_after
from tests.support.upstream import FakeUpstream, Script, Seen, openai_chunk, openai_script, sse

KEY = "sk-test-secret"
ASK = ChatRequest("m", [Message("user", "hi")])
JSON = [("content-type", "application/json")]


def provider(url: str, *, key: str = KEY, connect: float = 5.0) -> HttpProvider:
    made = create(ProviderConfig(name="p", type="openai", base_url=url + "/v1", api_key=key,
                                 timeouts=Timeouts(connect=connect)))
    assert isinstance(made, HttpProvider)
    return made


async def run(p: HttpProvider) -> list[ProviderEvent]:
    """Every event of one answer; the provider is closed after it."""
    try:
        return [event async for event in p.stream(ASK)]
    finally:
        await p.aclose()


def text(events: list[ProviderEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def fails(p: HttpProvider) -> tuple[errors.ProviderError, list[ProviderEvent]]:
    """The error an answer ends with, and the events that came before it."""
    got: list[ProviderEvent] = []

    async def read() -> None:
        async for event in p.stream(ASK):
            got.append(event)

    try:
        with pytest.raises(errors.ProviderError) as info:
            await read()
    finally:
        await p.aclose()
    return info.value, got


Handler = Callable[[trio.SocketStream], Awaitable[None]]


async def raw_server(nursery: trio.Nursery, handler: Handler) -> str:
    """A loopback server whose every connection runs ``handler``, for answers no real HTTP
    server would give."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    nursery.start_soon(trio.serve_listeners, handler, listeners)
    return f"127.0.0.1:{listeners[0].socket.getsockname()[1]}"


async def test_an_answer_streams_through_with_the_request_the_wire_protocol_built(
    upstream: FakeUpstream,
) -> None:
    events = await run(provider(upstream.url))
    assert text(events) == "Hello world"
    seen = upstream.seen[0]
    assert (seen.method, seen.path) == ("POST", "/v1/chat/completions")
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.json["model"] == "m"
    # No compression: a compressing upstream or proxy may hold tokens back to fill a block.
    assert seen.headers["accept-encoding"] == "identity"


async def test_a_slow_gap_between_tokens_is_not_cut_by_a_read_timeout(
    upstream: FakeUpstream, autojump_clock: trio.testing.MockClock,
) -> None:
    # First token after 50 s, then 30 s gaps: far past httpx's default 5 s read timeout.
    # Only the engine's first-token, idle and total timeouts may cut an answer.
    upstream.respond = lambda seen: openai_script(["slow", " but", " sure"], ttft=50.0,
                                                  gap=30.0)
    began = trio.current_time()
    events = await run(provider(upstream.url))
    assert text(events) == "slow but sure"
    assert trio.current_time() - began >= 110


async def test_connecting_is_bounded_by_the_connect_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock,
) -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    # The TCP connection opens, and the TLS handshake never gets an answer.
    address = await raw_server(nursery, silent)
    began = trio.current_time()
    error, _ = await fails(provider(f"https://{address}", connect=3.0))
    assert type(error) is errors.TimeoutError_
    assert error.message == "connecting to p timed out"
    assert 3.0 <= trio.current_time() - began < 3.5


async def test_a_refused_connection_is_a_retryable_connection_error() -> None:
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    error, _ = await fails(provider(f"http://127.0.0.1:{port}"))
    assert type(error) is errors.TransportError
    assert (error.message, error.retryable) == ("could not connect to p", True)


IN_TWO_MINUTES = "an HTTP-date 120 s from when the answer is sent"


@pytest.mark.parametrize(("status", "headers", "kind", "retry_after"), [
    (401, [], errors.AuthError, None),
    (403, [], errors.AuthError, None),
    (429, [("retry-after", "7")], errors.RateLimitError, 7.0),
    (429, [("retry-after", IN_TWO_MINUTES)], errors.RateLimitError, 120.0),
    (429, [], errors.RateLimitError, None),
    (400, [], errors.BadRequestError, None),
    (504, [], errors.TimeoutError_, None),
    (503, [], errors.UpstreamError, None),
])
async def test_an_error_status_becomes_its_error_type(
    upstream: FakeUpstream, status: int, headers: list[tuple[str, str]],
    kind: type[errors.ProviderError], retry_after: float | None,
) -> None:
    def respond(seen: Seen) -> Script:
        date = email.utils.formatdate(time.time() + 120, usegmt=True)
        return Script(status=status, body=[b'{"error": {"message": "no luck"}}'],
                      headers=JSON + [(k, date if v == IN_TWO_MINUTES else v)
                                      for k, v in headers])

    upstream.respond = respond
    error, events = await fails(provider(upstream.url))
    assert type(error) is kind
    assert events == []
    assert error.status == status
    assert error.message == f"p answered {status}: no luck"
    if retry_after is None:
        assert getattr(error, "retry_after", None) is None
    else:
        assert isinstance(error, errors.RateLimitError)
        assert error.retry_after == pytest.approx(retry_after, abs=2)


def test_retry_after_is_seconds_or_an_http_date_never_negative() -> None:
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


async def test_an_upstream_that_echoes_the_key_has_it_redacted(upstream: FakeUpstream) -> None:
    upstream.respond = lambda seen: Script(
        status=500, headers=JSON, body=[f'{{"error": {{"message": "bad {KEY}"}}}}'.encode()])
    error, _ = await fails(provider(upstream.url))
    assert type(error) is errors.UpstreamError
    assert error.message == "p answered 500: bad [redacted]"
    assert error.retryable


async def test_a_key_http_forbids_is_refused_before_anything_is_sent_and_never_shown(
    upstream: FakeUpstream,
) -> None:
    # A key pasted with its line break would split the request's head.
    key = "sk-pasted\nX-Injected: 1"
    error, _ = await fails(provider(upstream.url, key=key))
    assert type(error) is errors.BadRequestError
    assert not error.retryable
    assert upstream.seen == []
    # httpx quotes the header value it refused: that error is not chained, since a logged
    # traceback prints every cause.
    shown = "".join(traceback.format_exception(error))
    assert "sk-pasted" not in shown


async def test_an_answer_cut_off_mid_body_is_a_connection_error_after_its_events(
    upstream: FakeUpstream,
) -> None:
    upstream.respond = lambda seen: Script(
        body=[*sse(openai_chunk("par"), done=False), b'data: {"choi'], end="drop")
    error, events = await fails(provider(upstream.url))
    assert type(error) is errors.TransportError
    assert error.message == "p broke off the answer or the HTTP protocol"
    assert text(events) == "par"


async def test_a_malformed_answer_head_is_a_connection_error(nursery: trio.Nursery) -> None:
    async def broken(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n")
        await stream.aclose()

    address = await raw_server(nursery, broken)
    error, _ = await fails(provider(f"http://{address}"))
    assert type(error) is errors.TransportError


async def test_a_body_that_cannot_be_decoded_is_a_protocol_error(upstream: FakeUpstream) -> None:
    upstream.respond = lambda seen: Script(
        headers=[("content-type", "text/event-stream"), ("content-encoding", "gzip")],
        body=[b"this is not gzip"])
    error, _ = await fails(provider(upstream.url))
    assert type(error) is errors.ProtocolError


@pytest.mark.parametrize("how", ["cancel", "aclose"])
async def test_a_stop_mid_answer_closes_the_upstream_connection_at_once(
    upstream: FakeUpstream, how: str,
) -> None:
    """Cancelling the slot's scope, or closing the provider's generator, while the answer
    streams: the upstream sees its connection close (so it stops generating), and the
    provider serves the next answer on a fresh connection."""
    upstream.respond = lambda seen: (openai_script(["tok "] * 1000, gap=0.01)
                                     if len(upstream.seen) == 1 else openai_script(["next"]))
    p = provider(upstream.url)
    try:
        with trio.CancelScope() as scope:
            async with aclosing(p.stream(ASK)) as events:
                assert isinstance(await anext(events), TextDelta)
                stopped = trio.current_time()
                if how == "cancel":
                    scope.cancel()
                    await anext(events)
        assert scope.cancelled_caught == (how == "cancel")
        seen = upstream.seen[0]
        with trio.fail_after(1):
            await seen.closed.wait()
        assert seen.closed_at is not None
        assert seen.closed_at - stopped < 0.1
        assert text([e async for e in p.stream(ASK)]) == "next"
    finally:
        await p.aclose()


async def test_a_proxy_from_the_environment_carries_the_request_unless_no_proxy_says_not(
    nursery: trio.Nursery, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = FakeUpstream(lambda seen: openai_script(["via", " proxy"]))
    await nursery.start(proxy.serve)
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    assert text(await run(provider("http://example.invalid"))) == "via proxy"
    assert [s.path for s in proxy.seen] == ["http://example.invalid/v1/chat/completions"]
    assert text(await run(provider(upstream.url))) == "Hello world"
    assert len(proxy.seen) == 1
    assert [s.path for s in upstream.seen] == ["/v1/chat/completions"]


async def test_models_are_listed_with_the_same_client_and_errors(upstream: FakeUpstream) -> None:
    def respond(seen: Seen) -> Script:
        if len(upstream.seen) == 1:
            return Script(headers=JSON, body=[b'{"data": [{"id": "a"}, {"id": "b"}]}'])
        return Script(status=401, headers=JSON, body=[f'{{"error": "{KEY}"}}'.encode()])

    upstream.respond = respond
    p = provider(upstream.url)
    try:
        assert await p.list_models() == ["a", "b"]
        assert upstream.seen[0].path == "/v1/models"
        fresh = provider(upstream.url)
        with pytest.raises(errors.AuthError, match=r"listing models: \[redacted\]"):
            await fresh.list_models()
        await fresh.aclose()
    finally:
        await p.aclose()


def test_httpx_errors_map_to_one_provider_error_each() -> None:
    p = provider("http://127.0.0.1:9")
    request = httpx.Request("GET", "http://127.0.0.1:9")
    cases: list[tuple[httpx.HTTPError, type[errors.ProviderError]]] = [
        (httpx.ConnectTimeout("t"), errors.TimeoutError_),
        (httpx.ReadTimeout("t"), errors.TimeoutError_),
        (httpx.PoolTimeout("t"), errors.TimeoutError_),
        (httpx.ConnectError("c"), errors.TransportError),
        (httpx.ReadError("r"), errors.TransportError),
        (httpx.WriteError("w"), errors.TransportError),
        (httpx.RemoteProtocolError("r"), errors.TransportError),
        (httpx.LocalProtocolError("l"), errors.BadRequestError),
        (httpx.DecodingError("d"), errors.ProtocolError),
        (httpx.UnsupportedProtocol("u"), errors.BadRequestError),
        (httpx.InvalidURL("i"), errors.BadRequestError),
        (httpx.TooManyRedirects("r", request=request), errors.TransportError),
    ]
    for exc, kind in cases:
        assert type(p.map_error(exc)) is kind, exc


async def test_answers_in_flight_are_spread_over_clients_of_a_bounded_size() -> None:
    made: list[int] = []

    def make(index: int) -> httpx.AsyncClient:
        made.append(index)
        return httpx.AsyncClient()

    shards = ClientShards(make, per_client=2)
    with shards.lease() as a, shards.lease() as b, shards.lease() as c:
        assert a is b is shards.first
        assert c is not a  # the first client is full: a second one carries the third answer
        assert made == [0, 1]
    with shards.lease() as again, shards.lease() as too, shards.lease() as third:
        assert again is too is shards.first  # every answer ended: the first has room again
        assert third is c  # and the second is reused, not made anew
    assert made == [0, 1]
    await shards.aclose()
    assert shards.first.is_closed
    assert c.is_closed


async def test_an_injected_client_carries_every_answer() -> None:
    client = httpx.AsyncClient()
    shards = ClientShards(lambda _: client, per_client=None)
    with shards.lease() as a, shards.lease() as b:
        assert a is b is client
    await shards.aclose()
