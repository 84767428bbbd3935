"""A fast fake OpenAI-style upstream for the benchmarks, on loopback.

``POST /v1/chat/completions`` streams Chat Completions SSE. The model name sets the shape of
the answer (see ``Spec``), so every server under test can be pointed at it unchanged. Each
stamped token carries the moment it was written (``time.monotonic_ns()``, one clock for every
process on the machine), so a client can tell how late it arrived. While answering, the
connection is watched for the client closing, and the moment is logged: that is how the
bench sees a stop or a disconnect reach the upstream.

``GET /_bench/records?tag=T`` returns what happened to the requests whose last message was
``T``, and how many answers are open. Run: ``python -m bench.upstream --port 0``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from urllib.parse import parse_qs, urlsplit

import trio

from .client import parse_head

MAX_HEAD = 64 * 1024
BURST = 16  # tokens per write when an answer goes as fast as the socket takes it


@dataclass(frozen=True, slots=True)
class Spec:
    """The answer a model name asks for: ``m_t20_n50_g20`` is 50 tokens (each ``~seq.ns~``),
    the first after 20 ms, then one every 20 ms. Keys: ``t`` first-token ms, ``n`` tokens,
    ``g`` ms between tokens (0: as fast as the socket takes them), ``x`` seconds after which
    the answer is cut (a bound on every load)."""

    ttft: float = 0.0
    tokens: int = 20
    gap: float = 0.0
    max_seconds: float = 120.0

    @classmethod
    def parse(cls, model: str) -> Spec:
        values: dict[str, float] = {}
        for part in model.rsplit("/", 1)[-1].split("_")[1:]:
            if len(part) > 1:
                try:
                    values[part[0]] = float(part[1:])
                except ValueError:
                    continue
        return cls(
            ttft=values.get("t", 0.0) / 1000, tokens=int(values.get("n", 20)),
            gap=values.get("g", 0.0) / 1000, max_seconds=values.get("x", 120.0),
        )


def model_name(ttft_ms: float = 0, tokens: int = 20, gap_ms: float = 0, *,
               max_s: float = 120) -> str:
    return f"m_t{ttft_ms:g}_n{tokens}_g{gap_ms:g}_x{max_s:g}"


@dataclass(slots=True)
class Record:
    """One answered request, as the upstream saw it (times are ``monotonic_ns``)."""

    tag: str
    model: str
    received_ns: int
    finished: bool = False
    closed_ns: int | None = None  # the client closed before the answer was finished


@dataclass
class Upstream:
    records: dict[str, list[Record]] = field(default_factory=dict)
    open_answers: int = 0

    async def serve(self, port: int, *, task_status: trio.TaskStatus[int]) -> None:
        listeners = await trio.open_tcp_listeners(port, host="127.0.0.1", backlog=4096)
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, stream: trio.SocketStream) -> None:
        buf = bytearray()
        try:
            while True:
                head = await _read_head(stream, buf)
                if head is None:
                    return
                method, target, headers = head
                length = int(headers.get("content-length", "0"))
                while len(buf) < length:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buf += data
                body = bytes(buf[:length])
                del buf[:length]
                path = urlsplit(target).path
                if method == "POST" and path.endswith("/chat/completions"):
                    if not await self._answer(stream, body, buf):
                        return
                elif path.startswith("/_bench/"):
                    await self._records(stream, target)
                else:
                    await _send_json(stream, {"error": {"message": "not found"}}, 404)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ValueError, KeyError):
            return
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _records(self, stream: trio.SocketStream, target: str) -> None:
        tags = parse_qs(urlsplit(target).query).get("tag", [])
        out = {t: [asdict(r) for r in self.records.get(t, [])] for t in tags}
        await _send_json(stream, {"records": out, "open": self.open_answers})

    async def _answer(self, stream: trio.SocketStream, body: bytes, buf: bytearray) -> bool:
        """Stream one answer; ``False`` if the connection is finished with."""
        request = json.loads(body)
        model = str(request.get("model", ""))
        spec = Spec.parse(model)
        messages = request.get("messages") or [{}]
        tag = str(messages[-1].get("content", ""))
        usage = bool((request.get("stream_options") or {}).get("include_usage"))
        record = Record(tag, model, time.monotonic_ns())
        self.records.setdefault(tag, []).append(record)
        self.open_answers += 1
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_watch_close, stream, record, buf, nursery.cancel_scope)
                try:
                    with trio.move_on_after(spec.max_seconds):
                        await _stream_answer(stream, spec, model, usage)
                        record.finished = True
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    if record.closed_ns is None:
                        record.closed_ns = time.monotonic_ns()
                nursery.cancel_scope.cancel()
        finally:
            self.open_answers -= 1
        return record.finished and record.closed_ns is None


async def _watch_close(stream: trio.SocketStream, record: Record, buf: bytearray,
                       scope: trio.CancelScope) -> None:
    """Notice the client closing while we answer: the read returns EOF (or fails)."""
    try:
        data = await stream.receive_some(65536)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        data = b""
    if data:
        buf += data  # a pipelined next request; keep it for the connection loop
        await trio.sleep_forever()
    record.closed_ns = time.monotonic_ns()
    scope.cancel()


_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
         b"transfer-encoding: chunked\r\n\r\n")


def _event(model: str, choices: str, usage: str = "") -> bytes:
    """One Chat Completions chunk as an SSE event, built by hand (it is the upstream's
    whole cost per token, and this process shares its core with the load generator)."""
    return ('data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":'
            f'1700000000,"model":"{model}","choices":[{choices}]{usage}}}\n\n').encode()


def _frame(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def _stream_answer(stream: trio.SocketStream, spec: Spec, model: str,
                         usage: bool) -> None:
    await stream.send_all(_HEAD)
    # Tokens are due at fixed times from the start (first + seq * gap), not a gap after the
    # previous send, so a busy moment delays one token and the answer's length stays true.
    start = trio.current_time()
    if spec.ttft:
        await trio.sleep_until(start + spec.ttft)
    # Only the text (plain ASCII, nothing to escape) changes from token to token.
    before, after = _event(model, '{"index":0,"delta":{"content":"@"},"finish_reason":null}'
                           ).split(b"@")
    # Every token differs from its neighbours: LiteLLM cuts an answer that repeats one
    # chunk a hundred times, taking it for a looping model. Paced tokens go one per write,
    # at fixed times; as fast as the socket takes them, BURST per write, each still its own
    # chunk and event. What the server reads is the same (its reads are filled by the
    # socket buffer either way); this process spends about a quarter per token, which
    # leaves the core it shares with the load generator to the load.
    step = 1 if spec.gap else BURST
    for first in range(0, spec.tokens, step):
        if first and spec.gap:
            await trio.sleep_until(start + spec.ttft + first * spec.gap)
        stamp = time.monotonic_ns()
        await stream.send_all(b"".join(
            _frame(before + b"~%d.%d~ " % (seq, stamp) + after)
            for seq in range(first, min(first + step, spec.tokens))))
    tail = _event(model, '{"index":0,"delta":{},"finish_reason":"stop"}')
    if usage:
        tail += _event(model, "", f',"usage":{{"prompt_tokens":5,"completion_tokens":'
                                  f'{spec.tokens},"total_tokens":{spec.tokens + 5}}}')
    await stream.send_all(_frame(tail) + _frame(b"data: [DONE]\n\n") + b"0\r\n\r\n")


async def _read_head(stream: trio.SocketStream,
                     buf: bytearray) -> tuple[str, str, dict[str, str]] | None:
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            break
        if len(buf) > MAX_HEAD:
            raise ValueError("request head too large")
        data = await stream.receive_some(65536)
        if not data:
            return None
        buf += data
    first, headers = parse_head(bytes(buf[:end]))
    del buf[: end + 4]
    method, target, _ = first.split(" ", 2)
    return method, target, headers


async def _send_json(stream: trio.SocketStream, data: object, status: int = 200) -> None:
    body = json.dumps(data).encode()
    await stream.send_all(b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\n"
                          b"content-length: %d\r\n\r\n%s" % (status, len(body), body))


async def main(port: int) -> None:
    upstream = Upstream()
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(upstream.serve, port)
        print(f"fake upstream on 127.0.0.1:{bound}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    try:
        trio.run(main, parser.parse_args().port)
    except KeyboardInterrupt:
        pass
