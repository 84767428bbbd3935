"""The httpx transport Chorus talks to providers with: HTTP/1.1 on trio streams.

httpx's default transport (httpcore's pool) costs more than everything else Chorus does per
request: it walks and polls every pooled connection when a request starts and ends, and
wraps each read in several layers of async generators. Starting nine upstream requests took
about 0.6 ms of CPU each, so the ninth model of a stream left 5-6 ms after the first, and
each upstream read cost more than the engine's whole handling of it (``bench/findings.md``).

This transport is the least that streaming a JSON request's answer needs:

- the request's head is written and the answer's head read by ``providers/head.py``, and
  the answer's body unframed by ``BodyFraming`` (``providers/framing.py``), a read at a
  time: h11's state machine and validation, and httpx's ``Request``, cost more per request
  than the rest of a stream's setup (``bench/findings.md``); the request's head and body
  leave in one write;
- a last-in-first-out list of idle connections per origin, bounded by ``max_idle``; an
  idle connection is checked with one non-blocking poll before reuse (a peer that closed
  it made it readable) and dropped after ``keepalive_expiry`` seconds;
- a response body read to its end returns its connection to the list; one closed early (a
  stop, a client that left, an error) closes its connection at once, so the upstream sees
  the stop;
- a request that finds its reused connection closed by the peer before a byte of answer
  came back is sent once more on a new connection (the peer never read it);
- errors are httpx's own types, so callers map them in one place as before.

Requests come either as ``httpx.Request`` (``handle_async_request``: the transport of an
``httpx.AsyncClient``) or, on the streaming path, as method, parsed URL, headers and body
(``send``), which skips building an ``httpx.Request`` at all.

It speaks HTTP/1.1 only, also over TLS (ALPN offers ``http/1.1``): one connection per
concurrent answer, which is what streaming answers need anyway. A provider behind a proxy
from the environment uses httpx's own transports instead (``providers/http.py``).
"""

from __future__ import annotations

import math
import os
import select
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import trio

from .framing import BodyFraming, FramingError
from .head import HeadError, HeadReader, ResponseHead, request_head

# Bytes taken from the upstream per read. Everything one read holds is parsed in the slot
# task's one step, before the slot yields: at 64 KiB (~300 tokens of a fast upstream) that
# step took up to 7 ms, during which the merge task and every other stream waited. 4 KiB
# bounds it to ~1 ms with no more CPU per token at saturation (``bench/findings.md``);
# an upstream at a model's real speed sends far less than that between reads.
READ_SIZE = 4 * 1024
MAX_IDLE = 16  # idle connections kept per origin
KEEPALIVE_EXPIRY = 20.0  # seconds an idle connection is kept

Origin = tuple[str, str, int]


class Http11Transport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport``: pass it as ``httpx.AsyncClient(transport=...)``."""

    def __init__(self, *, max_idle: int = MAX_IDLE, keepalive_expiry: float = KEEPALIVE_EXPIRY,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.max_idle = max_idle
        self.keepalive_expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._idle: dict[Origin, list[Connection]] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await _body(request)
        # The body is sent whole, so it is framed by its length whatever httpx chose.
        headers = [(name, value) for name, value in request.headers.raw
                   if name.lower() not in (b"content-length", b"transfer-encoding")]
        if body or len(headers) < len(request.headers.raw):
            headers.append((b"Content-Length", b"%d" % len(body)))
        return await self._request(request.method, request.url, headers, body,
                                   request.extensions.get("timeout", {}))

    async def send(self, method: str, url: httpx.URL, headers: list[tuple[bytes, bytes]],
                   body: bytes, timeouts: dict[str, float | None]) -> httpx.Response:
        """Send ``body`` with ``headers`` (``Host`` and ``Content-Length`` are added) and
        return the answer as it starts: the streaming path, with no ``httpx.Request``."""
        headers = [(b"Host", url.netloc), *headers, (b"Content-Length", b"%d" % len(body))]
        return await self._request(method, url, headers, body, timeouts)

    async def _request(self, method: str, url: httpx.URL, headers: list[tuple[bytes, bytes]],
                       body: bytes, timeouts: dict[str, float | None]) -> httpx.Response:
        if self._closed:
            raise RuntimeError("the transport is closed")
        origin = _origin(url)
        try:
            head = request_head(method, url.raw_path, headers)
        except HeadError as exc:
            raise httpx.LocalProtocolError(str(exc)) from exc
        message = head + body if body else head
        framing_method = method.encode("ascii")
        conn = self._checkout(origin)
        if conn is not None:
            try:
                return await conn.send(framing_method, message, timeouts, self)
            except _PeerClosedIdle:
                pass  # the peer closed it as we reused it: it never read this request
        conn = await self._connect(origin, timeouts.get("connect"))
        try:
            return await conn.send(framing_method, message, timeouts, self)
        except _PeerClosedIdle as exc:
            raise httpx.RemoteProtocolError("the server closed the connection without an "
                                            "answer") from exc

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                await conn.close()

    # -- the pool --------------------------------------------------------------------------

    def _checkout(self, origin: Origin) -> Connection | None:
        conns = self._idle.get(origin)
        now = time.monotonic()
        while conns:
            conn = conns.pop()
            if now - conn.idle_since < self.keepalive_expiry and conn.usable():
                return conn
            conn.close_now()
        return None

    def checkin(self, conn: Connection) -> None:
        """Keep ``conn`` for the next request to its origin, or close it if the list is full."""
        conns = self._idle.setdefault(conn.origin, [])
        if self._closed or len(conns) >= self.max_idle:
            conn.close_now()
            return
        conn.idle_since = time.monotonic()
        conns.append(conn)

    async def _connect(self, origin: Origin, connect_timeout: float | None) -> Connection:
        scheme, host, port = origin
        limit = float("inf") if connect_timeout is None else connect_timeout
        try:
            with trio.fail_after(limit):
                stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
                sock = stream.socket  # type: ignore[attr-defined]
                if scheme == "https":
                    tls = trio.SSLStream(stream, self._tls(), server_hostname=host,
                                         https_compatible=True)
                    try:
                        await tls.do_handshake()
                    except BaseException:
                        await trio.aclose_forcefully(stream)
                        raise
                    stream = tls
        except trio.TooSlowError as exc:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from exc
        except (OSError, trio.BrokenResourceError) as exc:
            raise httpx.ConnectError(f"could not connect to {host}:{port}: {exc}") from exc
        return Connection(origin, stream, sock, plain=scheme == "http")

    def _tls(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            import certifi

            context = ssl.create_default_context(cafile=certifi.where())
            context.set_alpn_protocols(["http/1.1"])
            self._ssl_context = context
        return self._ssl_context


class _PeerClosedIdle(Exception):
    """A reused connection was closed by the peer before any of the answer arrived."""


class Connection:
    """One socket and the state of its current exchange; used by one request at a time."""

    __slots__ = ("_fd", "_full", "_pending", "answered", "framing", "idle_since",
                 "keep_alive", "origin", "read", "read_timeout", "reused", "sent", "sock",
                 "stream")

    def __init__(self, origin: Origin, stream: trio.abc.Stream,
                 sock: trio.socket.SocketType, *, plain: bool) -> None:
        self.origin = origin
        self.stream = stream
        self.sock = sock
        self._fd = sock.fileno()
        self.read = self._read_plain if plain else self._read_stream
        self._full = False  # the last plain read filled its buffer: more may be waiting
        self.sent = False  # the current request went out whole
        self.idle_since = 0.0
        self.reused = False
        self.answered = False  # a byte of the current answer has arrived
        self.read_timeout: float | None = None
        self.framing = BodyFraming(length=0)  # the current answer's body (see ``send``)
        self._pending = b""  # body bytes that came with the head, not yet handed on
        self.keep_alive = False  # the current answer lets the connection be reused

    def usable(self) -> bool:
        """An idle connection is usable while its socket has nothing to read: a peer that
        closed it (or sent anything unasked) made it readable."""
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        return not poller.poll(0)

    async def send(self, method: bytes, message: bytes, timeouts: dict[str, Any],
                   transport: Http11Transport) -> httpx.Response:
        """Send the request (its head and body, in one write) and read the answer's head."""
        reused, self.reused, self.answered = self.reused, True, False
        self.read_timeout = timeouts.get("read")
        try:
            try:
                await self._write(message, timeouts.get("write"))
                self.sent = True
                head = await self._read_head()
            except (httpx.RemoteProtocolError, httpx.WriteError, httpx.ReadError):
                if reused and not self.answered:
                    raise _PeerClosedIdle from None
                raise
            self._frame_head(method, head)
        except BaseException:
            await self.close()
            raise
        return httpx.Response(
            head.status_code, headers=head.headers, stream=Body(self, transport),
            extensions={"http_version": b"HTTP/" + head.http_version,
                        "reason_phrase": head.reason},
        )  # no ``request=``: a streaming answer need not keep its request alive (httpx's
        # client sets it on responses it returns; ``HttpProvider.stream`` needs none)

    async def _write(self, data: bytes, limit: float | None) -> None:
        try:
            with trio.fail_after(math.inf if limit is None else limit):
                await self.stream.send_all(data)
        except trio.TooSlowError as exc:
            raise httpx.WriteTimeout("the server did not take the request in time") from exc
        except (OSError, trio.BrokenResourceError) as exc:
            raise httpx.WriteError(f"sending the request failed: {exc}") from exc

    async def _read_head(self) -> ResponseHead:
        """The answer's head (informational ones skipped), reading as it needs, within
        ``read_timeout`` of each read when it is set; what came after it is kept for the
        body."""
        reader, limit = HeadReader(), self.read_timeout
        while True:
            data = await self._receive(limit)
            if not data:
                raise httpx.RemoteProtocolError(
                    "the server closed the connection mid-head" if self.answered
                    else "the server closed the connection without an answer")
            try:
                head = reader.feed(data)
            except HeadError as exc:
                raise httpx.RemoteProtocolError(str(exc)) from exc
            if head is not None:
                self._pending = reader.rest  # framed in ``_frame_head``
                return head

    async def body_data(self) -> bytes:
        """The answer body's next bytes; ``b""`` once it is complete."""
        pending = self._pending
        if pending:
            self._pending = b""
            return pending
        framing, limit = self.framing, self.read_timeout
        while not framing.done:
            data = await self._receive(limit)
            try:
                data = framing.feed(data)
            except FramingError as exc:
                raise httpx.RemoteProtocolError(str(exc)) from exc
            if data:
                return data
        return b""

    def _frame_head(self, method: bytes, head: ResponseHead) -> None:
        headers = head.lowered()
        self.keep_alive = head.http_version == b"1.1" and not any(
            name == b"connection" and b"close" in value.lower() for name, value in headers)
        early = self._pending
        try:
            self.framing = BodyFraming.for_response(method, head.status_code, headers)
            self._pending = self.framing.feed(early) if early else b""
        except FramingError as exc:
            raise httpx.RemoteProtocolError(str(exc)) from exc

    async def _receive(self, limit: float | None) -> bytes:
        """One read (within ``limit`` seconds, when set), errors as httpx's."""
        try:
            if limit is None:  # the streaming case: no scope per read
                data = await self.read()
            else:
                with trio.fail_after(limit):
                    data = await self.read()
        except trio.TooSlowError as exc:
            raise httpx.ReadTimeout("the server did not answer in time") from exc
        except (OSError, trio.BrokenResourceError) as exc:
            raise httpx.ReadError(f"reading the answer failed: {exc}") from exc
        if data:
            self.answered = True
        return data

    async def _read_stream(self) -> bytes:
        data = await self.stream.receive_some(READ_SIZE)
        return data if type(data) is bytes else bytes(data)

    async def _read_plain(self) -> bytes:
        """One read of a plain socket: wait until it is readable, then read.

        The answer's next bytes are almost never there yet when it is read again (its last
        read took all there was), so this waits first. trio's own ``receive_some`` tries
        the read first: a failed system call, an exception and a context manager per
        upstream read, about a tenth of the process's work per token at 1 token a read.
        After a read that filled the buffer, it tries first.
        """
        fd = self._fd
        if not self._full:
            await trio.lowlevel.wait_readable(fd)
        while True:
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(fd)
                continue
            self._full = len(data) == READ_SIZE
            return data

    def reusable(self) -> bool:
        """The request was sent, the answer read to its end, the server keeps the
        connection open, and nothing unasked came after the answer (a server that sends,
        say, a 408 before closing an idle connection would otherwise have it read as the
        next request's answer)."""
        framing = self.framing
        return (self.keep_alive and self.sent and framing.done
                and not self._pending and not framing.until_close and not framing.leftover)

    def next_cycle(self) -> None:
        """Ready for the next request."""
        self.sent = False
        self.framing = BodyFraming(length=0)

    def close_now(self) -> None:
        """Close the socket at once (no TLS goodbye): for connections nobody is using."""
        self.sock.close()

    async def close(self) -> None:
        await trio.aclose_forcefully(self.stream)


class Body(httpx.AsyncByteStream):
    """A response body: the connection's ``body_data``, then the connection goes back to
    the pool if the answer was read to its end (``Connection.reusable``), or is closed."""

    def __init__(self, conn: Connection, transport: Http11Transport) -> None:
        self._conn: Connection | None = conn
        self._transport = transport

    def __aiter__(self) -> AsyncIterator[bytes]:
        # An iterator object, not an async generator: one abandoned mid-body (a parser
        # error, a stop) leaves no generator for the garbage collector to finalise.
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        if conn is not None:
            data = await conn.body_data()  # b"" at once when the body is complete
            if data:
                return data
        raise StopAsyncIteration

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if conn.reusable():
            conn.next_cycle()
            self._transport.checkin(conn)
        else:
            await conn.close()


def _origin(url: httpx.URL) -> Origin:
    scheme = url.scheme
    if scheme not in ("http", "https"):
        raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
    return scheme, url.host, url.port or (443 if scheme == "https" else 80)


async def _body(request: httpx.Request) -> bytes:
    if isinstance(request.stream, httpx.ByteStream):
        return request.content
    return await request.aread()
