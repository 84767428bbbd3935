"""``chorus chat`` in a real terminal (tmux) against a loopback upstream: each model's own
history goes up with every turn, Ctrl-C stops the upstreams and gives the prompt back,
``-c`` carries on, and the log holds it all (``chorus logs``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from ..conftest import StartServer
from ..support.upstream import FakeUpstream, Script, Seen, openai_script
from .tmux import CHORUS, Tmux


def up_toml(upstream: FakeUpstream) -> str:
    return (f'[providers.up]\ntype = "openai"\nbase_url = "{upstream.url}/v1"\n'
            "retries = 0\n")


@pytest.fixture
def config(tmp_path: Path, upstream: FakeUpstream) -> str:
    path = tmp_path / "chorus.toml"
    path.write_text(up_toml(upstream))
    return str(path)


def numbered(seen: Seen) -> Script:
    """Each model answers with its name and how many messages it was sent."""
    return openai_script([f"{seen.json['model']}-saw-", f"{len(seen.json['messages'])}"])


def at_prompt(screen: str) -> bool:
    return screen.rstrip().endswith(">")


async def say(tmux: Tmux, text: str) -> None:
    await tmux.keys("-l", text)
    await tmux.keys("Enter")


async def chorus(*args: str) -> Any:
    """``chorus logs … --json``, run as a script would; its output, parsed."""
    with trio.fail_after(30):
        done = await trio.run_process([*CHORUS, *args], capture_stdout=True)
    return json.loads(done.stdout)


def messages(seen: Seen) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in seen.json["messages"]]


async def test_each_model_gets_its_own_history_turn_after_turn(
    tmux: Tmux, upstream: FakeUpstream, config: str,
) -> None:
    upstream.respond = numbered
    await tmux.start([*CHORUS, "chat", "--config", config, "-m", "up/a", "-m", "up/b",
                      "--system", "be brief"])
    await tmux.wait_for(at_prompt)
    await say(tmux, "first question")
    await tmux.wait_for(lambda s: "a-saw-2" in s and "b-saw-2" in s and at_prompt(s))
    await say(tmux, "second question")
    screen = await tmux.wait_for(lambda s: "a-saw-4" in s and "b-saw-4" in s and at_prompt(s))
    assert screen.count("✓ done") >= 2
    await say(tmux, "exit")
    code, _ = await tmux.exit_code()
    assert code == 0

    assert len(upstream.seen) == 4
    second = {seen.json["model"]: messages(seen) for seen in upstream.seen[2:]}
    for model in ("a", "b"):
        assert second[model] == [
            ("system", "be brief"),
            ("user", "first question"),
            ("assistant", f"{model}-saw-2"),  # its own answer, not the other model's
            ("user", "second question"),
        ]


@pytest.mark.parametrize("remote", [False, True], ids=["in-process", "server"])
async def test_ctrl_c_stops_the_upstreams_and_gives_the_prompt_back(
    tmux: Tmux, upstream: FakeUpstream, config: str, start_server: StartServer, remote: bool,
) -> None:
    upstream.respond = lambda seen: openai_script([f"w{i} " for i in range(400)], gap=0.05)
    where = ["--config", config]
    if remote:
        server = await start_server(up_toml(upstream))
        where = ["--server", server.url]
    await tmux.start([*CHORUS, "chat", *where, "-m", "up/a", "-m", "up/b"])
    await tmux.wait_for(at_prompt)
    await say(tmux, "go on and on")
    await tmux.wait_for(lambda s: s.count("w5") == 2)
    await tmux.keys("C-c")
    screen = await tmux.wait_for(lambda s: s.count("■ stopped") == 2 and at_prompt(s))
    assert "chorus: stopped (Ctrl-C)" in screen
    assert len(upstream.seen) == 2
    for seen in upstream.seen:
        with trio.fail_after(5):
            await seen.closed.wait()  # the upstream connection really closed
        assert seen.bytes_sent < 200 * 150  # far from the 400 words it had to send

    upstream.respond = numbered  # the partial answers went into the history
    await say(tmux, "and now?")
    await tmux.wait_for(lambda s: "a-saw-3" in s and "b-saw-3" in s and at_prompt(s))
    # Model a's second request (the two models' requests may arrive in either order).
    (again,) = [s for s in upstream.seen[2:] if s.json["model"] == "a"]
    kept = messages(again)[1]
    assert kept[0] == "assistant"
    assert kept[1].startswith("w0 w1 w2 w3 w4 w5")
    await tmux.keys("C-d")
    code, _ = await tmux.exit_code()
    assert code == 0

    (logged,) = await chorus("logs", "--json")
    whole = await chorus("logs", "show", logged["id"], "--json")
    first = whole["exchanges"][0]
    assert [a["outcome"] for a in first["answers"]] == ["stopped", "stopped"]
    assert first["answers"][0]["reason"] == "user"
    assert first["answers"][0]["text"] == kept[1]


async def one_turn(tmux: Tmux, argv: list[str], prompt: str, answer: str) -> str:
    """Start a chat, ask ``prompt``, see ``answer``, leave; what the screen held."""
    await tmux.start(argv)
    await tmux.wait_for(at_prompt)
    await say(tmux, prompt)
    await tmux.wait_for(lambda s: answer in s and at_prompt(s))
    await say(tmux, "quit")
    code, screen = await tmux.exit_code()
    assert code == 0
    return screen


async def test_continue_carries_on_the_latest_conversation_and_logs_show_it(
    tmux: Tmux, upstream: FakeUpstream, config: str,
) -> None:
    upstream.respond = numbered
    await one_turn(tmux, [*CHORUS, "chat", "--config", config, "-m", "up/a"],
                   "remember 42", "a-saw-1")
    await tmux.close()

    await tmux.start([*CHORUS, "chat", "--config", config, "-c"])  # no -m: its own models
    screen = await tmux.wait_for(at_prompt)
    assert "Continuing conversation" in screen
    await say(tmux, "what was it?")
    await tmux.wait_for(lambda s: "a-saw-3" in s and at_prompt(s))
    await say(tmux, "exit")
    assert (await tmux.exit_code())[0] == 0
    assert messages(upstream.seen[1]) == [
        ("user", "remember 42"), ("assistant", "a-saw-1"), ("user", "what was it?")]

    (listed,) = await chorus("logs", "--json")
    assert listed["models"] == ["up/a"]
    assert listed["first_prompt"] == "remember 42"
    assert listed["exchanges"] == 2
    whole = await chorus("logs", "show", listed["id"][:8], "--json")
    assert [e["prompt"] for e in whole["exchanges"]] == ["remember 42", "what was it?"]
    answer = whole["exchanges"][1]["answers"][0]
    assert answer["text"] == "a-saw-3"
    assert answer["outcome"] == "done"
    assert answer["reason"] == "stop"
    assert answer["output_tokens"] == 2  # the usage the upstream reported
    assert answer["ttft_ms"] is not None

    with trio.fail_after(30):
        shown = await trio.run_process([*CHORUS, "logs", "show", listed["id"]],
                                       capture_stdout=True)
    text = shown.stdout.decode()
    assert "> remember 42" in text
    assert "> what was it?" in text
    assert "a-saw-3" in text


async def test_no_log_keeps_nothing(
    tmux: Tmux, upstream: FakeUpstream, config: str, chorus_home: Path,
) -> None:
    upstream.respond = numbered
    screen = await one_turn(tmux, [*CHORUS, "chat", "--config", config, "-m", "up/a",
                                   "--no-log"], "off the record", "a-saw-1")
    assert "logged as conversation" not in screen
    assert not (chorus_home / "logs.db").exists()
    assert await chorus("logs", "--json") == []
