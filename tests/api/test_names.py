"""Names for OpenAI clients over real HTTP: aliases, groups, and errors that say what to do."""

from __future__ import annotations

import pytest

from ..conftest import Server, StartServer, read_events

ASK = {"messages": [{"role": "user", "content": "hello"}]}
SSE = {"Accept": "text/event-stream"}

NAMES = """
[server]
resume_grace = 0.0
demo = "always"

[aliases]
"gpt-4o" = "demo/instant"
slowpoke = "demo/ttft=0,rate=0,tokens=3"
elsewhere = "openai/gpt-4o"

[groups]
panel = ["demo/instant", "slowpoke"]
"""


@pytest.fixture
async def named(start_server: StartServer) -> Server:
    return await start_server(NAMES)


async def test_chat_completions_takes_an_alias(named: Server) -> None:
    async with named.client() as client:
        r = await client.post("/v1/chat/completions", json={"model": "gpt-4o", **ASK})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"]


async def test_streams_take_aliases_as_targets_and_fallbacks(named: Server) -> None:
    async with named.client() as client, client.stream(
        "POST", "/v1/streams", headers=SSE,
        json={"models": ["slowpoke", {"model": "demo/error-500", "fallbacks": ["gpt-4o"]}],
              **ASK},
    ) as r:
        assert r.status_code == 200
        events = [e async for e in read_events(r)]
    start = events[0][2]
    assert [s["model"] for s in start["slots"]] == ["demo/ttft=0,rate=0,tokens=3",
                                                    "demo/error-500"]
    assert [s["label"] for s in start["slots"]] == ["slowpoke", "demo/error-500"]
    retries = [d["model"] for _, t, d in events if t == "model.retry"]
    assert retries[-1] == "demo/instant"  # the fallback's alias, resolved
    assert events[-1][2]["counts"] == {"done": 2, "error": 0, "stopped": 0}


async def test_a_group_expands_to_its_members(named: Server) -> None:
    async with named.client() as client:
        r = await client.post("/v1/streams", json={"models": "group:panel", **ASK})
    assert r.status_code == 201, r.text
    assert [s["model"] for s in r.json()["slots"]] == ["demo/instant",
                                                       "demo/ttft=0,rate=0,tokens=3"]


async def test_an_unknown_group_is_a_400_naming_it(named: Server) -> None:
    async with named.client() as client:
        r = await client.post("/v1/streams", json={"models": "group:panle", **ASK})
    assert r.status_code == 400
    error = r.json()["error"]
    assert (error["type"], error["param"]) == ("unknown_model", "models")
    assert "no group named 'panle'" in error["message"]
    assert "did you mean 'panel'?" in error["message"]


async def test_a_group_inside_a_list_says_how_to_send_it(named: Server) -> None:
    async with named.client() as client:
        r = await client.post("/v1/streams", json={"models": ["group:panel"], **ASK})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == (
        "'group:panel' names a group of models: send it alone, as \"models\": "
        "\"group:panel\" to POST /v1/streams or as \"model\" to POST /v1/chat/completions")


async def test_models_lists_aliases_and_groups(named: Server) -> None:
    async with named.client() as client:
        listing = (await client.get("/v1/models")).json()
    aliases = {m["id"]: m for m in listing["data"] if "alias_of" in m}
    # An alias to a provider that is not configured is not listed: it could not answer.
    assert set(aliases) == {"gpt-4o", "slowpoke"}
    assert aliases["gpt-4o"]["alias_of"] == "demo/instant"
    assert aliases["gpt-4o"]["provider"] == "demo"
    assert aliases["gpt-4o"]["object"] == "model"
    assert listing["groups"] == {"panel": ["demo/instant", "demo/ttft=0,rate=0,tokens=3"]}
    assert listing["notes"] == []


@pytest.mark.parametrize(("field", "value", "says"), [
    ("model", "demo/fast", "unknown field 'model': did you mean 'models'? It takes a list"),
    ("stream", True, "unknown field 'stream': to have the events in this response, send the "
                     "header 'Accept: text/event-stream'"),
    ("mesages", [], "unknown field 'mesages': did you mean 'messages'?"),
    ("colour", "blue", "unknown field 'colour' (a stream body has models, messages, params, "
                       "mode)"),
])
async def test_an_unknown_field_in_a_stream_body_is_named(
    server: Server, field: str, value: object, says: str,
) -> None:
    async with server.client() as client:
        r = await client.post("/v1/streams",
                              json={"models": ["demo/instant"], **ASK, field: value})
    assert r.status_code == 400
    error = r.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request", field)
    assert error["message"].startswith(says)


async def test_chat_completions_keeps_accepting_openai_fields_it_does_not_use(
    server: Server,
) -> None:
    async with server.client() as client:
        r = await client.post("/v1/chat/completions", json={
            "model": "demo/instant", **ASK, "user": "u-1", "logprobs": False,
            "parallel_tool_calls": True, "service_tier": "auto"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(("ref", "says"), [
    ("openai/gpt-4o", "no provider named 'openai' is configured: set OPENAI_API_KEY"),
    ("anthropic/claude-sonnet-4-5", "set ANTHROPIC_API_KEY"),
    ("gemini/gemini-2.5-flash", "set GEMINI_API_KEY"),
    ("openrouter/openai/gpt-4o", "set OPENROUTER_API_KEY"),
    ("ollama/llama3.2", "no Ollama answered at http://"),
    ("dmeo/fast", "no provider named 'dmeo' is configured (did you mean 'demo'?)"),
    ("gpt-4o", "'gpt-4o' is not a model ref or an alias: write it as 'provider/model'"),
])
async def test_an_unknown_provider_says_what_would_enable_it(
    server: Server, ref: str, says: str,
) -> None:
    async with server.client() as client:
        r = await client.post("/v1/streams", json={"models": [ref], **ASK})
        chat = await client.post("/v1/chat/completions", json={"model": ref, **ASK})
    for answer, param in ((r, "models[0]"), (chat, "model")):
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert (error["type"], error["param"]) == ("unknown_model", param)
        assert says in error["message"]


async def test_an_alias_to_a_missing_provider_says_what_would_enable_it(named: Server) -> None:
    async with named.client() as client:
        r = await client.post("/v1/chat/completions", json={"model": "elsewhere", **ASK})
    assert r.status_code == 400
    assert "set OPENAI_API_KEY" in r.json()["error"]["message"]


async def test_models_notes_when_keys_left_the_demo_models_out(
    start_server: StartServer,
) -> None:
    server = await start_server('[providers.up]\ntype = "openai"\n'
                                'base_url = "http://127.0.0.1:9/v1"\n')
    async with server.client() as client:
        listing = (await client.get("/v1/models")).json()
        r = await client.post("/v1/streams", json={"models": ["demo/fast"], **ASK})
    assert [m["id"] for m in listing["data"]] == []
    assert listing["notes"] == ["demo models are left out because other providers are "
                                'configured; set [server] demo = "always" (or CHORUS_DEMO=1) '
                                "to keep them"]
    assert 'demo models are left out once other providers are set ([server] demo = "always"' \
        in r.json()["error"]["message"]
