"""``chorus chat`` as a script drives it (prompts on standard input): the histories it
sends, through a server too; Markdown rendered or raw; usage errors that say what to do.
The real terminal (live screen, Ctrl-C) is ``test_chat_terminal``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.terminal.chat import Session
from app.terminal.logstore import Answer, Conversation, Exchange
from providers import Message

from ..conftest import StartServer
from ..support.upstream import FakeUpstream, openai_script
from .conftest import DEMO, QUICK, Chorus

MARKDOWN = ["# Title\n\n", "Some **bold** ", "and `code`."]


def test_a_session_sends_each_model_its_own_history() -> None:
    session = Session(["demo/a", "demo/b"], "sys")
    session.keep("q1", (Answer(0, "demo/a", "a1", "done"), Answer(1, "demo/b", "  ", "error")))
    first, second = session.targets("q2")
    assert first.messages == (Message("system", "sys"), Message("user", "q1"),
                              Message("assistant", "a1"), Message("user", "q2"))
    assert second.messages == (Message("system", "sys"), Message("user", "q2"))
    assert session.turns == 1


def test_a_resumed_session_takes_a_new_system_message() -> None:
    logged = Conversation("c", 1.0, ("demo/a",), "old", (
        Exchange(1.0, "q1", (Answer(0, "demo/a", "a1", "done"),)),))
    session = Session.resume(logged, "new")
    assert (session.cid, session.models, session.turns) == ("c", ["demo/a"], 1)
    assert session.targets("q2")[0].messages == (
        Message("system", "new"), Message("user", "q1"), Message("assistant", "a1"),
        Message("user", "q2"))


@pytest.fixture
def upconfig(tmp_path: Path, upstream: FakeUpstream) -> str:
    upstream.respond = lambda seen: openai_script(MARKDOWN)
    path = tmp_path / "up.toml"
    path.write_text(f'[providers.up]\ntype = "openai"\nbase_url = "{upstream.url}/v1"\n'
                    "retries = 0\n")
    return str(path)


async def test_answers_are_rendered_as_markdown(chorus: Chorus, upconfig: str) -> None:
    code, out, err = await chorus("chat", "--config", upconfig, "-m", "up/m",
                                  stdin="hello\nexit\n")
    assert code == 0, err
    assert "Title" in out
    assert "Some bold and code." in out  # the marks became styles
    assert "**" not in out
    assert "`" not in out
    assert "chorus: logged as conversation" in err


async def test_raw_prints_the_text_as_it_came(chorus: Chorus, upconfig: str) -> None:
    code, out, err = await chorus("chat", "--config", upconfig, "-m", "up/m", "--raw",
                                  stdin="hello\n")  # the end of input ends the chat
    assert code == 0, err
    assert "".join(MARKDOWN) in out


async def test_through_a_server_each_model_gets_its_own_history(
    chorus: Chorus, start_server: StartServer, upstream: FakeUpstream,
) -> None:
    upstream.respond = lambda seen: openai_script([f"I am {seen.json['model']}"])
    server = await start_server(
        f'[providers.up]\ntype = "openai"\nbase_url = "{upstream.url}/v1"\nretries = 0\n')
    code, _, err = await chorus("chat", "--server", server.url, "-m", "up/a", "-m", "up/b",
                                stdin="one\ntwo\nquit\n")
    assert code == 0, err
    second = {seen.json["model"]: seen.json["messages"] for seen in upstream.seen[2:]}
    for model in ("a", "b"):
        assert second[model] == [{"role": "user", "content": "one"},
                                 {"role": "assistant", "content": f"I am {model}"},
                                 {"role": "user", "content": "two"}]


@pytest.mark.parametrize("through", ["in-process", "server"])
async def test_a_group_chats_as_its_members_each_with_its_own_history(
    chorus: Chorus, start_server: StartServer, upstream: FakeUpstream, tmp_path: Path,
    through: str,
) -> None:
    # (The server also asks the upstream for its model list: no JSON body, no answer.)
    upstream.respond = lambda seen: openai_script([f"I am {(seen.json or {}).get('model')}"])
    config = (f'[providers.up]\ntype = "openai"\nbase_url = "{upstream.url}/v1"\n'
              'retries = 0\n[aliases]\nbee = "up/b"\n[groups]\npanel = ["up/a", "bee"]\n')
    if through == "server":
        where = ["--server", (await start_server(config)).url]
    else:
        path = tmp_path / "panel.toml"
        path.write_text(config)
        where = ["--config", str(path)]
    code, out, err = await chorus("chat", *where, "-m", "group:panel", stdin="one\ntwo\n")
    assert code == 0, err
    assert "Chatting with up/a, up/b." in out
    asked = [seen for seen in upstream.seen if seen.path.endswith("/chat/completions")]
    second = {seen.json["model"]: seen.json["messages"] for seen in asked[2:]}
    for model in ("a", "b"):
        assert second[model] == [{"role": "user", "content": "one"},
                                 {"role": "assistant", "content": f"I am {model}"},
                                 {"role": "user", "content": "two"}]


async def test_an_unknown_group_ends_the_chat_with_2_and_names_the_groups(
    chorus: Chorus, tmp_path: Path,
) -> None:
    path = tmp_path / "demo.toml"
    path.write_text(DEMO + f'[groups]\npanel = ["{QUICK}"]\n')
    code, out, err = await chorus("chat", "--config", str(path), "-m", "group:panl",
                                  stdin="hi\n")
    assert code == 2
    assert "chorus chat: no group named 'panl' is configured (did you mean 'panel'?)" in err
    assert "Chatting" not in out


async def test_continue_with_nothing_logged_says_so(chorus: Chorus) -> None:
    code, _, err = await chorus("chat", "-c")
    assert code == 1
    assert "chorus chat: cannot continue: no conversation is logged yet" in err


async def test_continue_with_other_models_is_refused(chorus: Chorus) -> None:
    code, _, err = await chorus("chat", "-c", "-m", QUICK)
    assert code == 2
    assert "-c and --cid carry on with the conversation's own models; leave out -m" in err


async def test_an_unknown_model_ends_the_chat_with_2(chorus: Chorus, tmp_path: Path) -> None:
    path = tmp_path / "demo.toml"
    path.write_text(DEMO)
    code, _, err = await chorus("chat", "--config", str(path), "-m", "nowhere/x",
                                stdin="hi\nhi again\n")
    assert code == 2
    assert "no provider named 'nowhere'" in err
    code, out, _ = await chorus("logs", "--json")
    assert json.loads(out) == []


async def test_without_m_the_default_model_chats(chorus: Chorus, tmp_path: Path) -> None:
    path = tmp_path / "demo.toml"
    path.write_text(DEMO + f'[cli]\ndefault_models = ["{QUICK}"]\n')
    code, out, err = await chorus("chat", "--config", str(path), stdin="hi\n")
    assert code == 0, err
    assert f"using {QUICK} (the default, from the config's [cli] default_models" in err
    assert f"Chatting with {QUICK}." in out
    assert "This is a" in out
