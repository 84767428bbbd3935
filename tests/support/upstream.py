"""A scriptable upstream on loopback, speaking real HTTP/1.1 (h11) over real sockets, and
the same scripts served by Hypercorn over TLS, with HTTP/2 offered by ALPN.

Each request is answered by a ``Script``: a status, headers, and a body made of byte
chunks and pauses, then an ending (finish the body, drop the connection, or hang). The
server records every request and the moment the client closed its connection (or, on
HTTP/2, ended its stream), so tests can prove that a stop really closed the upstream.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
import trio
import trustme

from .serving import loopback_config, start_serving


@dataclass
class Script:
    status: int = 200
    body: list[bytes | float] = field(default_factory=list)  # bytes to send, or seconds to wait
    headers: list[tuple[str, str]] = field(
        default_factory=lambda: [("content-type", "text/event-stream")]
    )
    end: str = "finish"  # "finish" | "drop" (close mid-body) | "hang" (never finish)


@dataclass
class Seen:
    """One request as the upstream saw it."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    received_at: float
    closed_at: float | None = None
    closed: trio.Event = field(default_factory=trio.Event)
    bytes_sent: int = 0
    http_version: str = "1.1"
    peer_port: int = 0  # the client's port: one per connection


Responder = Callable[[Seen], Script]


def sse(*payloads: Any, done: bool = True) -> list[bytes | float]:
    """SSE ``data:`` events, JSON-encoded (``str`` payloads go as they are)."""
    out: list[bytes | float] = []
    for p in payloads:
        text = p if isinstance(p, str) else json.dumps(p)
        out.append(f"data: {text}\n\n".encode())
    if done:
        out.append(b"data: [DONE]\n\n")
    return out


def openai_chunk(
    content: str | None = None, *, finish: str | None = None, reasoning: str | None = None,
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if content is not None:
        delta["content"] = content
    if reasoning is not None:
        delta["reasoning_content"] = reasoning
    chunk: dict[str, Any] = {
        "id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1,
        "model": "test", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        chunk["choices"] = []
        chunk["usage"] = usage
    return chunk


def openai_script(words: list[str], *, gap: float = 0.0, ttft: float = 0.0,
                  end: str = "finish", usage: bool = True) -> Script:
    """A Chat Completions stream of ``words``, one per chunk, ``gap`` seconds apart."""
    body: list[bytes | float] = [ttft] if ttft else []
    for i, word in enumerate(words):
        if i and gap:
            body.append(gap)
        body += sse(openai_chunk(word), done=False)
    body += sse(openai_chunk(finish="stop"), done=False)
    if usage:
        body += sse(openai_chunk(usage={"prompt_tokens": 7, "completion_tokens": len(words),
                                        "total_tokens": 7 + len(words)}), done=False)
    body.append(b"data: [DONE]\n\n")
    return Script(body=body, end=end)


class FakeUpstream:
    """Serve with ``url = await nursery.start(upstream.serve)``; set ``respond``."""

    def __init__(self, respond: Responder | None = None) -> None:
        self.respond: Responder = respond or (lambda seen: openai_script(["Hello", " world"]))
        self.seen: list[Seen] = []
        self.url = ""
        self._arrived = trio.Event()

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        task_status.started(self.url)
        await trio.serve_listeners(self._connection, listeners)

    async def wait_for_request(self, n: int = 1) -> Seen:
        """Until at least ``n`` requests have arrived; returns the ``n``-th."""
        while len(self.seen) < n:
            await self._arrived.wait()
            self._arrived = trio.Event()
        return self.seen[n - 1]

    async def _connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                seen = await self._read_request(conn, stream)
                if seen is None:
                    return
                keep = await self._answer(conn, stream, seen)
                if not keep or conn.our_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
            return
        finally:
            with trio.move_on_after(1) as cs:
                cs.shield = True
                await stream.aclose()

    async def _read_request(self, conn: h11.Connection, stream: trio.SocketStream) -> Seen | None:
        request: h11.Request | None = None
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return None
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                return None
        assert request is not None
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None
        seen = Seen(request.method.decode(), request.target.decode(), headers, payload,
                    trio.current_time())
        self.seen.append(seen)
        self._arrived.set()
        return seen

    async def _answer(self, conn: h11.Connection, stream: trio.SocketStream, seen: Seen) -> bool:
        """Answer one request; ``False`` when the connection cannot be used again.

        A client that resets the connection while the answer is being written (a stop racing
        a write) ends this connection only, never the server.
        """
        keep = False
        try:
            keep = await self._write_answer(conn, stream, seen)
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        return keep

    async def _write_answer(
        self, conn: h11.Connection, stream: trio.SocketStream, seen: Seen
    ) -> bool:
        script = self.respond(seen)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_close, conn, stream, seen, nursery.cancel_scope)
            headers = [*script.headers]
            await stream.send_all(conn.send(h11.Response(status_code=script.status,
                                                         headers=headers)))
            for part in script.body:
                if isinstance(part, float | int):
                    await trio.sleep(part)
                    continue
                await stream.send_all(conn.send(h11.Data(data=part)))
                seen.bytes_sent += len(part)
            if script.end == "hang":
                await trio.sleep_forever()
            if script.end == "drop":
                nursery.cancel_scope.cancel()
                return False
            await stream.send_all(conn.send(h11.EndOfMessage()))
            nursery.cancel_scope.cancel()
        return True

    async def _watch_close(
        self, conn: h11.Connection, stream: trio.SocketStream, seen: Seen,
        scope: trio.CancelScope,
    ) -> None:
        """While answering, notice the client closing: the read returns EOF (or fails).
        Bytes that arrive instead are the client's next request, sent the moment it read
        the end of this answer: h11 keeps them for the next cycle."""
        try:
            data = await stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if data:
            conn.receive_data(data)
        else:
            seen.closed_at = trio.current_time()
            seen.closed.set()
            scope.cancel()


class TlsUpstream:
    """``Script`` answers over TLS, from Hypercorn: HTTP/2 when the client offers it by ALPN
    (unless ``http2=False``), else HTTP/1.1. ``ca_file`` is the certificate authority to
    trust. ``closed`` is set when the request ends before its answer did (the connection
    closed, or the client reset its HTTP/2 stream). Endings: "finish" and "hang"."""

    def __init__(self, respond: Responder, *, http2: bool = True) -> None:
        self.respond = respond
        self.http2 = http2
        self.seen: list[Seen] = []
        self.url = ""
        self.ca_file = ""
        self._arrived = trio.Event()

    async def start(self, nursery: trio.Nursery, directory: Path) -> str:
        ca = trustme.CA()
        self.ca_file = str(directory / "ca.pem")
        ca.cert_pem.write_to_path(self.ca_file)
        pem = str(directory / "server.pem")
        ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(pem)
        config = loopback_config(certfile=pem, keyfile=pem, alpn_protocols=(
            ["h2", "http/1.1"] if self.http2 else ["http/1.1"]))
        self.url, _, _ = await start_serving(nursery, self._app, config)
        return self.url

    async def wait_for_request(self, n: int = 1) -> Seen:
        while len(self.seen) < n:
            await self._arrived.wait()
            self._arrived = trio.Event()
        return self.seen[n - 1]

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = await asgi_request(scope, receive, send)
        if body is None:
            return
        query = scope["query_string"].decode()
        seen = Seen(scope["method"], scope["path"] + (f"?{query}" if query else ""),
                    {k.decode().lower(): v.decode() for k, v in scope["headers"]},
                    json.loads(body) if body else None, trio.current_time(),
                    http_version=scope["http_version"], peer_port=scope["client"][1])
        self.seen.append(seen)
        self._arrived.set()
        script = self.respond(seen)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_end, receive, seen, nursery.cancel_scope)
            await send({"type": "http.response.start", "status": script.status,
                        "headers": [(k.encode(), v.encode()) for k, v in script.headers]})
            for part in script.body:
                if isinstance(part, float | int):
                    await trio.sleep(part)
                    continue
                await send({"type": "http.response.body", "body": part, "more_body": True})
                seen.bytes_sent += len(part)
            if script.end == "hang":
                await trio.sleep_forever()
            await send({"type": "http.response.body", "body": b""})
            nursery.cancel_scope.cancel()

    @staticmethod
    async def _watch_end(receive: Any, seen: Seen, scope: trio.CancelScope) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        seen.closed_at = trio.current_time()
        seen.closed.set()
        scope.cancel()



async def asgi_request(scope: dict[str, Any], receive: Any, send: Any) -> bytes | None:
    """An ASGI upstream's first steps: the request's whole body, or ``None`` for the
    server's lifespan messages, answered here."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return None
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body
