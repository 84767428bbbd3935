"""The load generator's HTTP/1.1 client: raw trio sockets, a small chunked decoder, no httpx.

It costs a few microseconds per read, so it stays out of the way of the server under test.
Every read is stamped with ``time.monotonic_ns()`` the moment it returns; the upstream's
token stamps (``~seq.ns~``) found in it give each token's lag. The same code reads the fake
upstream directly (the floor), Chorus and LiteLLM, so their figures compare.
"""

from __future__ import annotations

import json
import re
import time
from array import array
from dataclasses import dataclass, field

import trio

STAMP = re.compile(rb"~(\d+)\.(\d+)~")


@dataclass(frozen=True, slots=True)
class Target:
    """A server to stream through: where, which path, and how it wants the body."""

    name: str
    port: int
    # "direct" | "chorus" (/v1/streams) | "chorus-oai" (its /v1/chat/completions) | "litellm"
    # | "relay" (``bench/relay.py``)
    kind: str
    host: str = "127.0.0.1"
    key: str = "sk-bench"

    @property
    def health_path(self) -> str:
        """The server's health check: LiteLLM's own, and ``/healthz`` elsewhere (Chorus,
        the bare relay)."""
        return "/health/liveliness" if self.kind == "litellm" else "/healthz"

    def request(self, model: str | list[str], tag: str, slots: int = 1) -> bytes:
        """The request for ``slots`` answers of ``model`` (through ``/v1/streams``: a list
        of models is one slot each), whose last message is ``tag``."""
        messages = [{"role": "user", "content": tag}]
        if self.kind == "chorus":
            path = "/v1/streams"
            models = [model] * slots if isinstance(model, str) else model
            body: dict[str, object] = {"models": [f"fake/{m}" for m in models],
                                       "messages": messages}
        else:
            assert isinstance(model, str)
            path = "/v1/chat/completions"
            if self.kind == "chorus-oai":
                model = f"fake/{model}"
            body = {"model": model, "messages": messages, "stream": True,
                    "stream_options": {"include_usage": True}}
        data = json.dumps(body).encode()
        return (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                "Accept: text/event-stream\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {self.key}\r\n"
                f"Content-Length: {len(data)}\r\n\r\n").encode() + data


class Dechunker:
    """Incremental ``Transfer-Encoding: chunked`` decoder (RFC 9112 §7.1); ``done`` after the
    last chunk. Trailers are not used by any server here and are skipped."""

    __slots__ = ("_buf", "_left", "done")

    def __init__(self) -> None:
        self._buf = bytearray()
        # Bytes of the current chunk still to come; -1: a size line is next; -2: its CRLF.
        self._left = -1
        self.done = False

    def feed(self, data: bytes) -> bytes:
        buf = self._buf
        buf += data
        out = bytearray()
        while not self.done:
            if self._left == -2:  # the CRLF that closes a chunk's data
                if len(buf) < 2:
                    break
                del buf[:2]
                self._left = -1
            if self._left == -1:
                eol = buf.find(b"\r\n")
                if eol < 0:
                    break
                size = int(bytes(buf[:eol]).split(b";", 1)[0], 16)
                del buf[: eol + 2]
                if size == 0:
                    self.done = True
                    break
                self._left = size
            take = min(self._left, len(buf))
            if take:
                out += buf[:take]
                del buf[:take]
                self._left -= take
            if self._left:
                break
            self._left = -2
        return bytes(out)


@dataclass
class Response:
    """An open streaming response. ``read()`` gives ``(recv_ns, body bytes)`` or ``None``."""

    stream: trio.SocketStream
    status: int
    headers: dict[str, str]
    sent_ns: int
    head_ns: int
    _pending: bytes = b""
    _chunks: Dechunker | None = None
    _left: int = -1
    ended: bool = False

    async def read(self) -> tuple[int, bytes] | None:
        if self.ended:
            return None
        if self._pending:
            data, self._pending = self._pending, b""
            now = self.head_ns
        else:
            try:
                data = await self.stream.receive_some(262144)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            now = time.monotonic_ns()
            if not data:
                self.ended = True
                return None
        if self._chunks is not None:
            body = self._chunks.feed(data)
            self.ended = self._chunks.done
        else:
            body = data
            if self._left >= 0:
                self._left -= len(data)
                self.ended = self._left <= 0
        return now, body

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self.stream.aclose()


def parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    """A message head without its blank line: the first line, and the headers by lowered
    name (the fake upstream reads requests with it too)."""
    first, *lines = head.decode("latin-1").split("\r\n")
    fields = (line.partition(":") for line in lines)
    return first, {name.strip().lower(): value.strip() for name, _, value in fields}


HEAD_TIMEOUT = 10.0  # seconds to connect and get a response head; trio.TooSlowError after


async def open_response(target: Target, raw_request: bytes, *,
                        rcvbuf: int | None = None) -> Response:
    """Send the request, read the response head. ``rcvbuf`` shrinks the socket's receive
    buffer (set before connecting, so the window is small from the start): a client that
    stops reading then leaves the server behind within a few kilobytes."""
    with trio.fail_after(HEAD_TIMEOUT):
        return await _open_response(target, raw_request, rcvbuf)


async def _connect(target: Target, rcvbuf: int | None) -> trio.SocketStream:
    if rcvbuf is None:
        return await trio.open_tcp_stream(target.host, target.port)
    sock = trio.socket.socket()
    try:
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, rcvbuf)
        await sock.connect((target.host, target.port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


async def _open_response(target: Target, raw_request: bytes, rcvbuf: int | None) -> Response:
    stream = await _connect(target, rcvbuf)
    try:
        sent = time.monotonic_ns()
        await stream.send_all(raw_request)
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = await stream.receive_some(65536)
            if not data:
                raise ConnectionError(f"{target.name} closed before answering")
            buf += data
        head_ns = time.monotonic_ns()
        head, _, rest = buf.partition(b"\r\n\r\n")
        first, headers = parse_head(head)
        response = Response(stream, int(first.split(" ", 2)[1]), headers, sent, head_ns, rest)
        if "chunked" in headers.get("transfer-encoding", ""):
            response._chunks = Dechunker()
        elif "content-length" in headers:
            response._left = int(headers["content-length"])
            if response._left == 0:
                response.ended = True
        return response
    except BaseException:
        with trio.CancelScope(shield=True):
            await stream.aclose()
        raise


@dataclass
class StreamResult:
    """What one client stream saw. Lags are receive time minus the upstream's send stamp."""

    target: str
    slots: int
    sent_ns: int = 0
    end_ns: int = 0
    status: int = 0
    first_lags_us: list[float] = field(default_factory=list)  # one per slot: token 0
    lags_us: array[float] = field(default_factory=lambda: array("d"))  # every later token
    max_lag_us: float = 0.0
    tokens: int = 0
    complete: bool = False
    error: str = ""


async def run_stream(target: Target, model: str | list[str], tag: str, slots: int = 1, *,
                     stop_after_tokens: int | None = None,
                     deadline_ns: int | None = None) -> StreamResult:
    """Stream one answer to its end (or ``stop_after_tokens``, or the deadline), stamping
    every token. Never raises for the server's failures: ``error`` says what went wrong."""
    result = StreamResult(target.name, slots)
    try:
        timeout = None if deadline_ns is None else (deadline_ns - time.monotonic_ns()) / 1e9
        with trio.move_on_after(max(timeout, 0.0) if timeout is not None else float("inf")) as cs:
            await _stream(target, model, tag, slots, result, stop_after_tokens)
        if cs.cancelled_caught:
            result.error = "deadline"
    except (OSError, ConnectionError, ValueError, trio.TooSlowError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    return result


async def _stream(target: Target, model: str | list[str], tag: str, slots: int,
                  result: StreamResult, stop_after_tokens: int | None) -> None:
    response = await open_response(target, target.request(model, tag, slots))
    try:
        result.sent_ns = response.sent_ns
        result.status = response.status
        if response.status != 200:
            result.error = f"status {response.status}"
            return
        tail = b""
        lags = result.lags_us
        while True:
            got = await response.read()
            if got is None:
                break
            now, data = got
            # A stamp may be split across reads: scan up to the last complete event only.
            data = tail + data
            cut = data.rfind(b"\n\n") + 2
            tail, data = data[cut:], data[:cut]
            for match in STAMP.finditer(data):
                stamp = int(match.group(2))
                lag = (now - stamp) / 1000
                if match.group(1) == b"0":
                    result.first_lags_us.append(lag)
                else:
                    lags.append(lag)
                if lag > result.max_lag_us:
                    result.max_lag_us = lag
                result.tokens += 1
            if stop_after_tokens is not None and result.tokens >= stop_after_tokens:
                return
        result.complete = response._chunks is None or response._chunks.done
        result.end_ns = time.monotonic_ns()
    finally:
        await response.aclose()


async def get_json(port: int, path: str, method: str = "GET", body: object = None,
                   host: str = "127.0.0.1") -> tuple[int, object, float]:
    """A small request; returns ``(status, json, seconds)``."""
    data = b"" if body is None else json.dumps(body).encode()
    raw = (f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
           f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n").encode()
    target = Target("control", port, "control", host)
    started = time.perf_counter()
    response = await open_response(target, raw + data)
    try:
        body_bytes = b""
        while (got := await response.read()) is not None:
            body_bytes += got[1]
        seconds = time.perf_counter() - started
        return response.status, json.loads(body_bytes or b"null"), seconds
    finally:
        await response.aclose()
