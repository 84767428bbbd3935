"""Every limit under [server]: a clear 4xx (or 503), with Retry-After where waiting helps."""

from __future__ import annotations

import tomllib

import httpx
import pytest
import trio

from app.api.errors import ApiError
from app.config import ConfigError, build_config
from app.limits import RateLimiter, TokenBucket, cap_max_tokens

from ..conftest import StartServer
from ..support.upstream import FakeUpstream
from .conftest import ASK, SSE

KEYS = {"CHORUS_API_KEYS": "alice-key,bob-key"}
ALICE = {"Authorization": "Bearer alice-key"}
BOB = {"Authorization": "Bearer bob-key"}


async def test_concurrent_streams_per_key(start_server: StartServer) -> None:
    server = await start_server("[server]\nmax_streams_per_key = 2\nresume_grace = 0.0\n",
                                env=KEYS)
    async with server.client(**ALICE) as alice, server.client(**BOB) as bob:
        first = (await alice.post("/v1/streams", json={"models": ["demo/hang"], **ASK})).json()
        async with alice.stream("POST", "/v1/streams", headers=SSE,
                                json={"models": ["demo/hang"], **ASK}) as live:
            assert live.status_code == 200  # a streaming one counts the same
            for path, body in (("/v1/streams", {"models": ["demo/hang"], **ASK}),
                               ("/v1/chat/completions", {"model": "demo/hang", **ASK})):
                r = await alice.post(path, json=body)
                assert r.status_code == 429, path
                assert int(r.headers["retry-after"]) >= 1
                assert "per key" in r.text
            r = await alice.post("/v1/streams", json={"models": ["demo/hang"], **ASK})
            assert r.json()["error"]["type"] == "rate_limited"
            r = await bob.post("/v1/streams", json={"models": ["demo/hang"], **ASK})
            assert r.status_code == 201  # another key is not affected
            bobs = r.json()["id"]
        await alice.post(first["stop_url"])
        # Once the SSE reader has left and the other was stopped, alice may open more.
        with trio.fail_after(2):
            for stream in server.hub.streams():
                if stream.id != bobs:
                    await stream.done.wait()
        r = await alice.post("/v1/streams", json={"models": ["demo/instant"], **ASK})
        assert r.status_code == 201


async def test_no_new_stream_while_shutting_down(start_server: StartServer) -> None:
    server = await start_server()
    async with server.client() as client:
        created = (await client.post("/v1/streams", json={"models": ["demo/hang"], **ASK})).json()
        await server.hub.shutdown()
        r = await client.post("/v1/streams", json={"models": ["demo/fast"], **ASK})
        assert (r.status_code, r.json()["error"]["type"]) == (503, "unavailable")
        assert int(r.headers["retry-after"]) >= 1
        snap = (await client.get(f"/v1/streams/{created['id']}")).json()
        assert snap["slots"][0]["stop_reason"] == "shutdown"


async def test_request_rate_per_key(start_server: StartServer) -> None:
    """The refill itself is timed exactly in the MockClock tests below; here, what a
    client sees (one token per 2 s, so no timing noise lets another request through)."""
    server = await start_server("[server]\nrate_limit = 0.5\nrate_burst = 3\n", env=KEYS)
    async with server.client(**ALICE) as alice, server.client(**BOB) as bob:
        for _ in range(3):
            assert (await alice.get("/v1/models")).status_code == 200
        r = await alice.get("/v1/models")
        assert (r.status_code, r.json()["error"]["type"]) == (429, "rate_limited")
        assert 1 <= int(r.headers["retry-after"]) <= 2
        r = await alice.post("/v1/streams", json={"models": ["demo/fast"], **ASK})
        assert r.status_code == 429  # refused before the body is even looked at
        assert (await bob.get("/v1/models")).status_code == 200  # each key has its own
        assert (await alice.get("/healthz")).status_code == 200  # not an API route
        metrics = (await alice.get("/metrics")).text
    assert 'chorus_requests_rejected_total{reason="rate"} 2.0' in metrics


async def test_a_refused_body_does_not_hang_the_connection(start_server: StartServer) -> None:
    """A 429 or 401 answered before a large body was read; the next request on the same
    keep-alive connection still gets its answer."""
    server = await start_server("[server]\nrate_limit = 0.1\nrate_burst = 1\n", env=KEYS)
    big = {"models": ["demo/instant"], "messages": [{"role": "user", "content": "x" * 400_000}]}
    limits = httpx.Limits(max_connections=1)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, headers=ALICE,
                                 timeout=5) as client:
        with trio.fail_after(10):
            assert (await client.post("/v1/streams", json=big)).status_code == 201
            assert (await client.post("/v1/streams", json=big)).status_code == 429
            assert (await client.get("/healthz")).status_code == 200
            r = await client.post("/v1/streams", json=big, headers={"Authorization": "Bearer x"})
            assert r.status_code == 401
            assert (await client.get("/healthz")).status_code == 200


def test_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=100.0)
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(100.0) == pytest.approx(0.5)
    assert bucket.take(100.25) == pytest.approx(0.25)  # half a token came back
    assert bucket.take(100.5) == 0.0
    assert bucket.take(200.0) == 0.0  # a long pause refills to the burst, no further
    assert [bucket.take(200.0) for _ in range(2)] == [0.0, 0.0]
    assert bucket.take(200.0) > 0


async def test_rate_limiter_runs_on_trios_clock(autojump_clock: trio.testing.MockClock) -> None:
    limiter = RateLimiter(rate=0.5, burst=2)
    limiter.check("a")
    limiter.check("a")
    with pytest.raises(ApiError, match=r"retry in 2\.0 s") as caught:
        limiter.check("a")
    assert caught.value.headers == {"Retry-After": "2"}
    limiter.check("b")  # every key has its own bucket
    await trio.sleep(2.0)
    limiter.check("a")
    with pytest.raises(ApiError, match="per second"):
        limiter.check("a")
    RateLimiter(rate=0.0, burst=1).check("a")  # 0 turns it off
    for _ in range(100):
        RateLimiter(rate=0.0, burst=1).check("a")


async def test_body_size_without_a_content_length(start_server: StartServer) -> None:
    server = await start_server("[server]\nmax_body = 1000\n")

    async def chunked():  # no Content-Length: the limit holds as the body arrives
        for _ in range(20):
            yield b'{"pad": "' + b"x" * 200 + b'", '

    async with server.client() as client:
        r = await client.post("/v1/streams", content=chunked(),
                              headers={"Content-Type": "application/json"})
        assert (r.status_code, r.json()["error"]["type"]) == (413, "payload_too_large")
        assert r.headers["connection"] == "close"
        assert (await client.get("/healthz")).status_code == 200


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"models": ["demo/fast"], "messages": [{"role": "user", "content": "hi"}] * 4},
         "messages"),
        ({"models": ["demo/fast", {"model": "demo/fast",
                                   "messages": [{"role": "user", "content": "hi"}] * 4}],
          **ASK}, "models[1].messages"),
        ({"models": ["demo/fast"], "messages": [{"role": "system", "content": "ok"},
                                                {"role": "user", "content": "x" * 101}]},
         "messages[1].content"),
        ({"models": ["demo/fast"], "messages": [{"role": "user", "content": [
            {"type": "text", "text": "x" * 60}, {"type": "text", "text": "y" * 60}]}]},
         "messages[0].content"),
    ],
    ids=["count", "count-per-target", "size", "size-of-parts"],
)
async def test_message_count_and_size(start_server: StartServer, body, param) -> None:
    server = await start_server("[server]\nmax_messages = 3\nmax_message_chars = 100\n")
    async with server.client() as client:
        r = await client.post("/v1/streams", json=body)
        assert r.status_code == 400
        assert r.json()["error"]["param"] == param
        assert "at most" in r.json()["error"]["message"]
        assert (await client.post("/v1/streams", json={"models": ["demo/instant"], **ASK})
                ).status_code == 201
        chat = await client.post("/v1/chat/completions", json={
            "model": "demo/fast", "messages": [{"role": "user", "content": "x" * 101}]})
        assert chat.status_code == 400


async def test_max_tokens_is_clamped_to_the_ceiling(
    start_server: StartServer, upstream: FakeUpstream,
) -> None:
    server = await start_server(
        f"[server]\nmax_tokens = 50\n[providers.up]\ntype = \"openai\"\n"
        f"base_url = \"{upstream.url}/v1\"\nretries = 0\n")
    asks = [{"max_tokens": 1000}, {"max_tokens": 10}, {}, {"max_completion_tokens": 900}]
    async with server.client() as client:
        for params in asks:
            async with client.stream("POST", "/v1/streams", headers=SSE, json={
                    "models": [{"model": "up/m", "params": params}], **ASK}) as r:
                assert r.status_code == 200
                await r.aread()
        await client.post("/v1/chat/completions", json={"model": "up/m", "max_tokens": 4096,
                                                        **ASK})
    sent = [{k: v for k, v in s.json.items() if "max" in k} for s in upstream.seen]
    assert sent == [{"max_tokens": 50}, {"max_tokens": 10}, {"max_tokens": 50},
                    {"max_completion_tokens": 50}, {"max_tokens": 50}]


def test_cap_max_tokens_leaves_what_it_does_not_understand() -> None:
    assert cap_max_tokens({"max_tokens": 5}, 0) == {"max_tokens": 5}
    assert cap_max_tokens({}, 0) == {}
    assert cap_max_tokens({"max_tokens": "many"}, 8) == {"max_tokens": "many"}
    assert cap_max_tokens({"temperature": 1}, 8) == {"temperature": 1, "max_tokens": 8}


@pytest.mark.parametrize("line", [
    "max_streams_per_key = 0", "max_messages = 0", "max_message_chars = -1",
    "max_tokens = -5", "rate_limit = -1.0", "rate_burst = 0", "stall_timeout = -2.0",
    "rate_limit = \"fast\"", "max_streams = 0",
])
def test_bad_limits_are_config_errors_with_a_line(line: str) -> None:
    text = f"[server]\nport = 8000\n{line}\n"
    with pytest.raises(ConfigError) as caught:
        build_config(tomllib.loads(text), {}, None, text)
    assert caught.value.line == 3


async def test_without_keys_a_local_user_is_not_throttled(start_server: StartServer) -> None:
    """Default settings, no keys: 240 chat completions, 80 at a time, all answered. The
    per-key limits (20/s, bursts of 100, 100 streams) would refuse most of them."""
    server = await start_server()
    statuses: list[int] = []
    at_once = trio.CapacityLimiter(80)
    # Idle connections are dropped by the client before Hypercorn's keep-alive timeout
    # (5 s) can close one under a request being sent on it, a race of HTTP itself.
    limits = httpx.Limits(max_connections=80, max_keepalive_connections=80,
                          keepalive_expiry=1.0)

    async def one(client: httpx.AsyncClient) -> None:
        async with at_once:
            r = await client.post("/v1/chat/completions",
                                  json={"model": "demo/fast", "max_tokens": 5, **ASK})
            statuses.append(r.status_code)

    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as client:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for _ in range(240):
                    nursery.start_soon(one, client)
    assert statuses == [200] * 240


async def test_a_rate_limit_says_a_wait_no_shorter_than_the_real_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter(rate=20.0, burst=1)
    limiter.check("a")
    with pytest.raises(ApiError) as caught:
        limiter.check("a")  # the next token comes in 0.05 s
    assert "retry in 0.1 s" in caught.value.message
    assert caught.value.headers == {"Retry-After": "1"}
    await trio.sleep(0.05)
    limiter.check("a")  # and it does
