"""The bare stack, for comparison: Quart-trio on Hypercorn, httpx to the upstream, nothing else.

    .venv/bin/python -m bench.relay --port 8100 --upstream http://127.0.0.1:8200/v1

A ``POST /v1/chat/completions`` is sent on to the upstream as it came, and the answer's
body goes back to the client a read at a time, as httpx reads it: no parsing, no
coalescing, no event log, no metrics. It is the least a relay built on Chorus's stack
can do, so what Chorus adds beyond it (its parser, merge, log, metrics, stop and resume)
shows in the same run, on the same machine, as the difference between the two. A client
that leaves ends the body's generator, which closes the upstream answer (so a cut
stream does not go on using the core the next measurement needs).
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import httpx
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

# Headers of the upstream's answer that describe it, not its framing.
_KEPT = ("content-type", "cache-control")


def make_app(upstream: str) -> QuartTrio:
    app = QuartTrio(__name__)
    app.config["RESPONSE_TIMEOUT"] = None  # Quart would cut a stream after 60 s
    # httpx's defaults: a 5 s read timeout (a slow answer's gap) and 100 connections at
    # most (the 200-stream load would queue behind them).
    client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None),
                               limits=httpx.Limits(max_connections=None,
                                                   max_keepalive_connections=256))
    url = upstream.rstrip("/") + "/chat/completions"

    @app.post("/v1/chat/completions")
    async def relay() -> Response:
        sent = client.build_request(
            "POST", url, content=await request.get_data(),
            headers={"content-type": request.headers.get("content-type", "application/json")})
        answer = await client.send(sent, stream=True)

        async def body() -> AsyncIterator[bytes]:
            try:
                async for data in answer.aiter_raw():
                    yield data
            finally:
                with trio.CancelScope(shield=True):  # a client that left cancels this task
                    await answer.aclose()

        headers = {k: v for k, v in answer.headers.items() if k in _KEPT}
        return Response(body(), status=answer.status_code, headers=headers)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.after_serving
    async def close_client() -> None:
        await client.aclose()

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.relay",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the upstream's base URL (…/v1)")
    args = parser.parse_args(argv)
    config = Config()
    config.bind = [f"127.0.0.1:{args.port}"]
    config.accesslog = None
    trio.run(serve, make_app(args.upstream), config)


if __name__ == "__main__":
    main()
