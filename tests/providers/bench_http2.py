"""HTTP/2 against HTTP/1.1 for a provider's answers, through ``HttpProvider`` on loopback
TLS: the client's CPU per streamed chunk and the time to the first chunk. Run by hand, once
(not collected by pytest): ``python -m tests.providers.bench_http2``. The upstream is
Hypercorn in a process of its own, so the CPU counted is the client's alone."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
import trustme

from providers import create
from providers.base import ChatRequest, Message, ProviderConfig
from providers.http import HttpProvider
from tests.support.upstream import asgi_request

CHUNK = b'data: {"choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}\n\n'
END = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'


async def upstream(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A request for the model ``n=N&gap=S`` gets N chunks, S seconds apart (0: at once)."""
    body = await asgi_request(scope, receive, send)
    if body is None:
        return
    query = dict(p.split("=") for p in json.loads(body)["model"].split("&"))
    n, gap = int(query.get("n", "1")), float(query.get("gap", "0"))
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream")]})
    for _ in range(n):
        await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
        if gap:
            await trio.sleep(gap)
    await send({"type": "http.response.body", "body": END})


def serve(pem: str) -> None:
    import hypercorn.trio
    from hypercorn.config import Config

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.certfile = config.keyfile = pem
    config.accesslog = config.errorlog = None

    async def root() -> None:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(hypercorn.trio.serve, upstream, config)
            print(binds[0], flush=True)

    trio.run(root)


def provider(url: str, *, http2: bool) -> HttpProvider:
    made = create(ProviderConfig(name="p", type="openai", base_url=url + "/v1", api_key="k",
                                 http2=http2))
    assert isinstance(made, HttpProvider)
    return made


async def answer(p: HttpProvider, script: str) -> tuple[float, int]:
    """Seconds to the first event of the answer ``script`` asks for, and how many events."""
    began = time.perf_counter()
    first = 0.0
    count = 0
    async for _ in p.stream(ChatRequest(script, [Message("user", "hi")])):
        if not count:
            first = time.perf_counter() - began
        count += 1
    return first, count


async def measure(url: str, *, http2: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    p = provider(url, http2=http2)
    cold, _ = await answer(p, "n=1")  # a fresh connection: TCP, TLS, ALPN
    out["ttfc_cold_ms"] = cold * 1000
    warm = [(await answer(p, "n=1"))[0] for _ in range(200)]
    out["ttfc_warm_p50_ms"] = statistics.median(warm) * 1000
    out["ttfc_warm_p90_ms"] = statistics.quantiles(warm, n=10)[-1] * 1000
    for name, script in (("paced", "n=300&gap=0.002"), ("burst", "n=3000&gap=0")):
        cpu, wall = time.process_time(), time.perf_counter()
        counts: list[int] = []

        async def one(script: str = script, counts: list[int] = counts) -> None:
            counts.append((await answer(p, script))[1])

        async with trio.open_nursery() as nursery:
            for _ in range(8):  # answers at once, as a stream's slots are
                nursery.start_soon(one)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        out[f"{name}_cpu_us_per_chunk"] = cpu / sum(counts) * 1e6
        out[f"{name}_wall_s"] = wall
    await p.aclose()
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        ca = trustme.CA()
        pem, ca_file = Path(directory, "server.pem"), Path(directory, "ca.pem")
        ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
        ca.cert_pem.write_to_path(str(ca_file))
        server = subprocess.Popen([sys.executable, "-m", "tests.providers.bench_http2",
                                   "serve", str(pem)], stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            url = server.stdout.readline().strip()
            os.environ["SSL_CERT_FILE"] = str(ca_file)
            rounds = int(os.environ.get("ROUNDS", "3"))
            results: dict[str, list[dict[str, float]]] = {"http1.1": [], "http2": []}
            for _ in range(rounds):  # alternating, so drift on a shared machine hits both
                for label, http2 in (("http1.1", False), ("http2", True)):
                    results[label].append(trio.run(lambda h=http2: measure(url, http2=h)))
        finally:
            server.terminate()
            server.wait(5)
    for label, runs in results.items():
        print(label, json.dumps({k: [round(r[k], 2) for r in runs] for k in runs[0]}))


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[2])
    else:
        main()
