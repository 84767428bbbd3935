"""The official ``openai`` SDK against a running Chorus: the front door speaks OpenAI.

The SDK does blocking I/O (sync client) or needs asyncio (async client), so each call runs
in a worker thread while trio serves Chorus and the upstream in the test's nursery.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import openai
import pytest
import trio

from ..conftest import Server, StartServer
from ..support.upstream import FakeUpstream, openai_script

T = TypeVar("T")

DEMO = '[providers.demo]\ntype = "demo"\nretries = 0\n'
# The same simulated models, with a first-token timeout short enough to test.
IMPATIENT = '[providers.impatient]\ntype = "demo"\ntimeouts = { first_token = 0.2 }\n'
QUICK = "demo/ttft=0.01,rate=0,tokens=12"
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture
async def chorus(start_server: StartServer) -> Server:
    return await start_server(DEMO)


def client(server: Server, key: str = "sk-anything") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=10)


async def in_thread(fn: Callable[[], T]) -> T:
    with trio.fail_after(10):
        return await trio.to_thread.run_sync(fn)


def stream_chunks(server: Server, **kw: Any) -> list[Any]:
    with client(server) as c:
        return list(c.chat.completions.create(messages=HELLO, stream=True, **kw))


async def test_the_sdk_lists_the_models(chorus: Server) -> None:
    def listing() -> list[str]:
        with client(chorus) as c:
            return [m.id for m in c.models.list()]

    ids = await in_thread(listing)
    assert {"demo/fast", "demo/slow", "demo/thinker"} <= set(ids)


async def test_streams_text_in_chunks_with_role_first_and_done_last(chorus: Server) -> None:
    chunks = await in_thread(lambda: stream_chunks(chorus, model=QUICK))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].id.startswith("chatcmpl-")
    assert chunks[0].model == QUICK
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:])
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.startswith("This is a **simulated** answer")
    assert [c.choices[0].finish_reason for c in chunks][-1] == "stop"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert all(c.usage is None for c in chunks)


async def test_include_usage_adds_a_last_chunk_with_no_choices(chorus: Server) -> None:
    chunks = await in_thread(lambda: stream_chunks(
        chorus, model=QUICK, stream_options={"include_usage": True}, max_tokens=5))
    last = chunks[-1]
    assert last.choices == []
    assert last.usage.completion_tokens == 5
    assert last.usage.prompt_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + 5
    assert chunks[-2].choices[0].finish_reason == "length"


async def test_reasoning_arrives_as_reasoning_content(chorus: Server) -> None:
    model = "demo/ttft=0.01,rate=0,tokens=4,reasoning=6"
    chunks = await in_thread(lambda: stream_chunks(chorus, model=model))
    deltas = [c.choices[0].delta for c in chunks]
    thinking = "".join(getattr(d, "reasoning_content", None) or "" for d in deltas)
    assert thinking.startswith("Let me think")
    first_text = next(i for i, d in enumerate(deltas) if d.content)
    assert all(not getattr(d, "reasoning_content", None) for d in deltas[first_text:])


async def test_n_fans_out_to_one_choice_per_slot(chorus: Server) -> None:
    chunks = await in_thread(lambda: stream_chunks(chorus, model=QUICK, n=2))
    texts = {0: "", 1: ""}
    for c in chunks:
        (choice,) = c.choices
        texts[choice.index] += choice.delta.content or ""
    assert texts[0] == texts[1] != ""

    def whole() -> Any:
        with client(chorus) as c:
            return c.chat.completions.create(model=QUICK, messages=HELLO, n=3)

    done = await in_thread(whole)
    assert [ch.index for ch in done.choices] == [0, 1, 2]
    assert len({ch.message.content for ch in done.choices}) == 1
    assert done.usage.completion_tokens == 3 * 12


NAMES = (DEMO + '[aliases]\n"gpt-4o" = "demo/ttft=0,rate=0,tokens=4"\n'
         '[groups]\npanel = ["gpt-4o", "demo/ttft=0,rate=0,tokens=2,reasoning=1"]\n')


async def test_an_alias_is_a_plain_model_name(start_server: StartServer) -> None:
    server = await start_server(NAMES)
    chunks = await in_thread(lambda: stream_chunks(server, model="gpt-4o"))
    assert {c.model for c in chunks} == {"gpt-4o"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "This is a **simulated** ")

    def whole() -> Any:
        with client(server) as c:
            return c.chat.completions.create(model="gpt-4o", messages=HELLO)

    done = await in_thread(whole)
    assert done.choices[0].message.content == "This is a **simulated** "


async def test_a_group_fans_out_to_one_choice_per_member_each_naming_its_model(
    start_server: StartServer,
) -> None:
    server = await start_server(NAMES)
    members = ["demo/ttft=0,rate=0,tokens=4", "demo/ttft=0,rate=0,tokens=2,reasoning=1"]
    chunks = await in_thread(lambda: stream_chunks(server, model="group:panel"))
    texts: dict[int, str] = {0: "", 1: ""}
    for c in chunks:
        (choice,) = c.choices
        assert choice.model == members[choice.index]  # the extension field, read unchanged
        texts[choice.index] += choice.delta.content or ""
    assert texts == {0: "This is a **simulated** ", 1: "This is "}
    assert {c.model for c in chunks} == {"group:panel"}

    def whole() -> Any:
        with client(server) as c:
            return c.chat.completions.create(model="group:panel", messages=HELLO)

    done = await in_thread(whole)
    assert [(ch.index, ch.model, ch.message.content) for ch in done.choices] == [
        (0, members[0], "This is a **simulated** "), (1, members[1], "This is ")]
    assert done.usage.completion_tokens == 4 + 2

    def with_n() -> None:
        with client(server) as c:
            c.chat.completions.create(model="group:panel", messages=HELLO, n=2)

    with pytest.raises(openai.BadRequestError, match="cannot be combined with a group"):
        await in_thread(with_n)


async def test_without_stream_the_answer_is_one_completion(chorus: Server) -> None:
    def ask() -> Any:
        with client(chorus) as c:
            return c.chat.completions.create(model="demo/ttft=0,rate=0,tokens=3,reasoning=2",
                                             messages=HELLO, temperature=0)

    done = await in_thread(ask)
    assert done.object == "chat.completion"
    (choice,) = done.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == "This is a "
    assert choice.message.reasoning_content == "Let me "
    assert choice.finish_reason == "stop"
    assert done.usage.completion_tokens == 3


async def test_the_async_client_works_too(chorus: Server) -> None:
    async def main() -> tuple[str, str]:
        async with openai.AsyncOpenAI(base_url=chorus.url + "/v1", api_key="k",
                                      max_retries=0) as c:
            stream = await c.chat.completions.create(model=QUICK, messages=HELLO, stream=True)
            text = "".join([ch.choices[0].delta.content or "" async for ch in stream])
            whole = await c.chat.completions.create(model=QUICK, messages=HELLO)
            return text, whole.choices[0].message.content or ""

    text, whole = await in_thread(lambda: asyncio.run(main()))
    assert text == whole != ""


@pytest.mark.parametrize(("model", "error", "status", "kind"), [
    ("demo/error-429", openai.RateLimitError, 429, "rate_limit"),
    ("demo/error-500", openai.InternalServerError, 502, "upstream"),
    ("demo/error-401", openai.InternalServerError, 502, "auth"),
    ("impatient/hang", openai.InternalServerError, 504, "timeout"),
    ("elsewhere/gpt", openai.BadRequestError, 400, "unknown_model"),
])
@pytest.mark.parametrize("stream", [True, False])
async def test_errors_before_the_first_chunk_are_http_statuses(
    start_server: StartServer, model: str, error: type[Exception], status: int, kind: str,
    stream: bool,
) -> None:
    server = await start_server(DEMO + IMPATIENT)

    def ask() -> None:
        with client(server) as c:
            c.chat.completions.create(model=model, messages=HELLO, stream=stream)

    with pytest.raises(error) as caught:
        await in_thread(ask)
    exc = caught.value
    assert isinstance(exc, openai.APIStatusError)
    assert exc.status_code == status
    assert exc.code == kind
    assert exc.type == kind
    assert set(exc.body) >= {"message", "type", "param", "code"}


async def test_bad_input_is_a_400_naming_the_field(chorus: Server) -> None:
    def ask(**kw: Any) -> Any:
        with client(chorus) as c:
            return c.chat.completions.create(**{"model": QUICK, "messages": HELLO, **kw})

    for kw, param in [({"temperature": 7}, "temperature"), ({"n": 0}, "n"),
                      ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
                      ({"messages": []}, "messages")]:
        with pytest.raises(openai.BadRequestError) as caught:
            await in_thread(lambda kw=kw: ask(**kw))
        assert caught.value.param == param, kw


async def test_an_error_after_the_first_chunk_ends_the_stream(chorus: Server) -> None:
    seen: list[str] = []

    def ask() -> None:
        with client(chorus) as c:
            for chunk in c.chat.completions.create(
                    model="demo/ttft=0,rate=0,tokens=50,fail_after=3", messages=HELLO,
                    stream=True):
                seen.append(chunk.choices[0].delta.content or "")

    with pytest.raises(openai.APIError) as caught:
        await in_thread(ask)
    assert caught.value.code == "upstream"
    assert "".join(seen) == "This is a "


async def test_a_wrong_key_is_a_401(start_server: StartServer) -> None:
    server = await start_server(DEMO, env={"CHORUS_API_KEYS": "right"})

    def ask(key: str) -> str:
        with client(server, key) as c:
            return c.chat.completions.create(model=QUICK, messages=HELLO).id

    with pytest.raises(openai.AuthenticationError):
        await in_thread(lambda: ask("wrong"))
    assert (await in_thread(lambda: ask("right"))).startswith("chatcmpl-")


async def test_closing_the_stream_closes_the_upstream_at_once(
    start_server: StartServer, upstream: FakeUpstream,
) -> None:
    upstream.respond = lambda seen: openai_script([f"w{i} " for i in range(200)], gap=0.05)
    server = await start_server(
        f'[providers.up]\ntype = "openai"\nbase_url = "{upstream.url}/v1"\nretries = 0\n'
        "[server]\nresume_grace = 30.0\n")  # the grace must not apply to this door

    def read_two() -> list[str]:
        with client(server) as c:
            stream = c.chat.completions.create(model="up/test", messages=HELLO, stream=True)
            words = [next(stream).choices[0].delta.content or "" for _ in range(2)]
            stream.close()
            return words

    assert await in_thread(read_two) == ["w0 ", "w1 "]
    seen = upstream.seen[0]
    with trio.fail_after(1):  # the answer had 10 s to go, and the grace is 30 s
        await seen.closed.wait()
    assert seen.json["model"] == "test"
    assert seen.json["stream"] is True
    with trio.fail_after(1):
        while server.hub.active:  # noqa: ASYNC110 - no event tells this
            await trio.sleep(0.01)
    registry = server.app.extensions["chorus"].metrics.registry
    assert registry.get_sample_value("chorus_stop_latency_seconds_count",
                                     {"reason": "disconnect"}) == 1
    assert server.hub.streams() == []  # nobody can resume a chat completion: nothing kept


async def test_giving_up_before_the_first_token_closes_the_upstream(
    start_server: StartServer, upstream: FakeUpstream,
) -> None:
    upstream.respond = lambda seen: openai_script(["late"], ttft=10.0)
    server = await start_server(
        f'[providers.up]\ntype = "openai"\nbase_url = "{upstream.url}/v1"\nretries = 0\n')

    def ask() -> None:
        with openai.OpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0,
                           timeout=0.3) as c:
            c.chat.completions.create(model="up/test", messages=HELLO, stream=True)

    with pytest.raises(openai.APITimeoutError):
        await in_thread(ask)
    with trio.fail_after(1):
        await (await upstream.wait_for_request()).closed.wait()


async def test_server_limits_name_the_openai_field(start_server: StartServer) -> None:
    server = await start_server("[server]\nmax_messages = 1\nmax_streams = 1\n")
    many = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    async with server.client() as client:
        r = await client.post("/v1/chat/completions",
                              json={"model": "demo/instant", "messages": many})
        assert r.status_code == 400
        assert r.json()["error"]["param"] == "messages"
        r = await client.post("/v1/chat/completions",
                              json={"model": "nope/x", "messages": many[:1]})
        assert (r.status_code, r.json()["error"]["param"]) == (400, "model")
        busy = await client.post("/v1/streams", json={"models": ["demo/hang"],
                                                      "messages": many[:1]})
        assert busy.status_code == 201
        r = await client.post("/v1/chat/completions",
                              json={"model": "demo/instant", "messages": many[:1]})
        assert (r.status_code, r.json()["error"]["type"]) == (429, "rate_limited")
        assert r.headers["retry-after"]
