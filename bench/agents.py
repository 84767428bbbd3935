"""What an agent adds: the same fake upstream reached directly and through ``chorus agent``.

    .venv/bin/python -m bench.agents [--runs 20]

One process runs the fake upstream (``bench.upstream``) and Chorus with two providers on
it: ``up`` (``type = "openai"``, Chorus's own HTTP to the upstream) and ``lab``
(``type = "agent"``), served by a ``chorus agent`` subprocess that talks to the same
upstream. For each, it measures the time from ``POST /v1/streams`` to the first delta
(TTFT, upstream first token at 0 ms), each token's lag from the moment the upstream wrote
it (its ``~seq.ns~`` stamp) to the moment the client read it, the agent's frames per token
on a fast answer, and the time from a stop to the upstream seeing its connection close.
Every time is ``time.monotonic_ns()``, one clock for every process on the machine.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import tomllib

import httpx
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from quart_trio import QuartTrio

from app import create_app
from app.config import build_config
from providers.agent import AgentPool
from providers.sse import SSEDecoder

from .client import STAMP
from .stats import median, percentile
from .upstream import Upstream, model_name

TOKEN = "bench-agent-token"


async def one(client: httpx.AsyncClient, model: str, tag: str,
              stop_after: int | None = None) -> tuple[float, list[float], float | None]:
    """TTFT ms, each token's lag ms, and the moment (ns) a stop was sent, if it was."""
    start, first, lags, stopped = time.monotonic_ns(), 0, [], None
    async with client.stream("POST", "/v1/streams", headers={"Accept": "text/event-stream"},
                             json={"models": [model], "messages": [
                                 {"role": "user", "content": tag}]}) as r:
        stop_url = f"/v1/streams/{r.headers['X-Chorus-Stream-Id']}/stop"
        decoder = SSEDecoder()
        async for chunk in r.aiter_raw():
            now = time.monotonic_ns()
            for event in decoder.feed(chunk):
                if event.event != "delta":
                    continue
                first = first or now
                lags += [(now - int(ns)) / 1e6 for _, ns in STAMP.findall(event.data.encode())]
                if stop_after is not None and len(lags) >= stop_after and stopped is None:
                    stopped = time.monotonic_ns()
                    await client.post(stop_url, json={"slots": [0]})
    return (first - start) / 1e6, lags, stopped


async def main(runs: int) -> None:
    upstream = Upstream()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(upstream.serve, 0)
        config = build_config(tomllib.loads(
            f'[server]\nresume_grace = 0.0\n[providers.up]\ntype = "openai"\n'
            f'base_url = "http://127.0.0.1:{port}/v1"\napi_key = "x"\n'
            f'[providers.lab]\ntype = "agent"\ntoken_env = "T"\n'), {"T": TOKEN})
        app = create_app(config)
        hyper = HypercornConfig()
        hyper.bind, hyper.accesslog, hyper.errorlog = ["127.0.0.1:0"], None, None
        url = (await nursery.start(serve, app, hyper))[0]
        steady, fast, slow = (model_name(0, 50, 5), model_name(0, 2000, 0),
                              model_name(0, 2000, 5))
        agent = await trio.lowlevel.open_process(
            [sys.executable, "-m", "app", "agent", "--server", url, "--token", TOKEN,
             "--upstream", f"http://127.0.0.1:{port}/v1", "--type", "openai",
             "--models", ",".join((steady, fast, slow)), "--name", "bench"])
        try:
            await measure(app, url, upstream, (steady, fast, slow), runs)
        finally:
            agent.kill()
            await agent.wait()
            nursery.cancel_scope.cancel()


async def measure(app: QuartTrio, url: str, upstream: Upstream, models: tuple[str, ...],
                  runs: int) -> None:
    steady, fast, slow = models
    pool = app.extensions["chorus"].catalog.providers["lab"]
    assert isinstance(pool, AgentPool)
    with trio.fail_after(30):
        while not await pool.list_models():
            await pool.next_change()
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        print(f"{'path':6} {'TTFT ms (median)':>17} {'token lag ms p50':>17} "
              f"{'p99':>7} {'stop -> upstream closed ms':>27}")
        rows: dict[str, tuple[float, float, float, float]] = {}
        for provider in ("up", "lab"):
            ttfts, lags, stops = [], [], []
            for i in range(runs):
                ttft, lag, _ = await one(client, f"{provider}/{steady}", f"{provider}{i}")
                ttfts.append(ttft)
                lags += lag
                tag = f"{provider}-stop{i}"
                _, _, asked = await one(client, f"{provider}/{slow}", tag, stop_after=5)
                await trio.sleep(0.2)
                closed = upstream.records[tag][0].closed_ns
                if asked is not None and closed is not None:
                    stops.append((closed - asked) / 1e6)
            rows[provider] = row = (median(ttfts) or 0.0, percentile(lags, 50) or 0.0,
                                    percentile(lags, 99) or 0.0, median(stops) or 0.0)
            print(f"{provider:6} {row[0]:17.2f} {row[1]:17.2f} {row[2]:7.2f} {row[3]:27.2f}")
        frames_before = _metric(await client.get("/metrics"), "chorus_agent_frames_total")
        await one(client, f"lab/{fast}", "fast")
        frames = _metric(await client.get("/metrics"), "chorus_agent_frames_total")
        print(f"agent frames per token, 2000 tokens as fast as the upstream writes: "
              f"{(frames - frames_before) / 2000:.3f}")
        print()
        markdown(rows, (frames - frames_before) / 2000, runs)


def markdown(rows: dict[str, tuple[float, float, float, float]], per_token: float,
             runs: int) -> None:
    """The figures as the benchmarks page shows them: each path, then what the agent adds
    (``lab`` minus ``up``)."""
    print("| path | TTFT ms (median) | token lag ms p50 | p99 | stop → upstream closed ms |")
    print("|---|---|---|---|---|")
    names = {"up": f"direct (`up`), {runs} runs", "lab": "through `chorus agent` (`lab`)"}
    for provider, (ttft, p50, p99, stop) in rows.items():
        print(f"| {names[provider]} | {ttft:.2f} | {p50:.2f} | {p99:.2f} | {stop:.2f} |")
    added = [b - a for a, b in zip(rows["up"], rows["lab"], strict=True)]
    print(f"| **added by the agent** | **{added[0]:.2f}** | **{added[1]:.2f}** | "
          f"**{added[2]:.2f}** | {added[3]:.2f} |")
    print()
    print(f"Agent frames per token, 2000 tokens as fast as the upstream writes: "
          f"**{per_token:.3f}**.")


def _metric(response: httpx.Response, name: str) -> float:
    found = re.search(rf'^{name}\{{provider="lab"\}} (\S+)$', response.text, re.M)
    return float(found.group(1)) if found else 0.0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    trio.run(main, parser.parse_args().runs)
