"""``chorus ask``, ``models`` and ``logs`` as scripts use them: output, ``--json``, exit
codes, the log, the default model, a pipe closed early, the help.

The real process in a real terminal is ``test_ask_terminal``.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import trio

from ..conftest import StartServer
from ..support.upstream import FakeUpstream, openai_script
from .conftest import DEMO, QUICK, Chorus
from .tmux import CHORUS


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "chorus.toml"
    path.write_text(DEMO)
    return str(path)


async def test_json_prints_every_event_on_its_own_line(chorus: Chorus, config: str) -> None:
    code, out, _ = await chorus("ask", "--config", config, "--json", "-m", QUICK,
                                "-m", "demo/error-429", "hello")
    assert code == 1  # one model failed
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["event"] == "stream.start"
    assert events[-1] == {"id": len(events), "event": "stream.done", "data": events[-1]["data"]}
    assert events[-1]["data"]["counts"] == {"done": 1, "error": 1, "stopped": 0}
    text = "".join(e["data"]["text"] for e in events if e["event"] == "delta")
    assert text == "This is a "


async def test_a_prompt_from_stdin_and_plain_output_off_a_terminal(
    chorus: Chorus, config: str,
) -> None:
    code, out, err = await chorus("ask", "--config", config, "-m", QUICK, "-m", QUICK,
                                  stdin="what is up?")
    assert code == 0, err
    assert "\x1b" not in out
    assert out.splitlines()[0].split(" │ ") == [QUICK.ljust(38), f"{QUICK} #2"]
    assert out.count("This is a") == 2
    assert out.splitlines()[-1].startswith("done 2 · error 0 · stopped 0")


@pytest.mark.parametrize(("args", "message"), [
    (["-m", "nowhere/x", "hi"], "no provider named 'nowhere'"),
    (["-m", QUICK], "the prompt is empty"),
    (["-m", QUICK, "-p", "temperature", "hi"], "--param takes KEY=VALUE"),
    (["-m", QUICK, "-p", "temperature=5", "hi"], "params.temperature must be a number"),
])
async def test_usage_errors_exit_2(
    chorus: Chorus, config: str, args: list[str], message: str,
) -> None:
    code, _, err = await chorus("ask", "--config", config, *args)
    assert code == 2
    assert message in err


async def test_a_config_error_exits_2(chorus: Chorus, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[providers.x]\ntype = 'nope'\n")
    code, _, err = await chorus("ask", "--config", str(bad), "-m", QUICK, "hi")
    assert code == 2
    assert "config error" in err


async def test_against_a_server(chorus: Chorus, start_server: StartServer) -> None:
    server = await start_server(DEMO, env={"CHORUS_API_KEYS": "sesame"})
    code, out, err = await chorus("ask", "--server", server.url, "--json", "-m", QUICK, "hi",
                                  CHORUS_API_KEY="sesame")
    assert code == 0, err
    assert json.loads(out.splitlines()[-1])["event"] == "stream.done"

    code, _, err = await chorus("ask", "--server", server.url, "-m", "nowhere/x", "hi")
    assert code == 2
    assert "400: no provider named 'nowhere'" in err

    code, out, _ = await chorus("models", "--server", server.url)
    assert code == 0
    assert "demo/fast  (simulated)" in out.splitlines()

    code, _, err = await chorus("models", "--server", server.url, CHORUS_API_KEY="guess")
    assert code == 2
    assert "401" in err


async def test_an_unreachable_server_exits_1(chorus: Chorus) -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # a port that nothing listens on
    code, _, err = await chorus("ask", "--server", f"http://127.0.0.1:{port}", "-m", QUICK, "hi")
    assert code == 1
    assert "cannot read from" in err


async def test_local_models_still_list(chorus: Chorus, config: str) -> None:
    code, out, _ = await chorus("models", "--config", config)
    assert code == 0
    assert "demo/thinker  (simulated)" in out.splitlines()


async def test_half_a_character_per_event_prints_as_one(
    chorus: Chorus, start_server: StartServer, upstream: FakeUpstream,
) -> None:
    # An upstream that split an emoji's surrogate pair between two chunks: Chorus sends
    # each half as its JSON escape, and what reaches the terminal is UTF-8 either way.
    upstream.respond = lambda seen: openai_script(["a ", "\ud83d", "\ude00", " b"])
    server = await start_server(
        f'[providers.up]\ntype = "openai"\nbase_url = "{upstream.url}/v1"\n')
    code, out, err = await chorus("ask", "--server", server.url, "--json", "-m", "up/m", "hi")
    assert code == 0, err
    out.encode("utf-8")  # a terminal's stdout takes it: no half character left raw
    events = [json.loads(line) for line in out.splitlines()]
    text = "".join(e["data"]["text"] for e in events if e["event"] == "delta")
    assert text.encode("utf-16-le", "surrogatepass").decode("utf-16-le") == "a \U0001f600 b"
    code, out, err = await chorus("ask", "--server", server.url, "-m", "up/m", "hi")
    assert code == 0, err
    assert "a \U0001f600 b" in out


OTHER = "demo/ttft=0,rate=0,tokens=5"  # a second quick model


async def test_without_m_the_default_model_answers_and_says_so(
    chorus: Chorus, config: str,
) -> None:
    code, out, err = await chorus("ask", "--config", config, "hi")
    assert code == 0, err
    assert out.splitlines()[0].strip() == "demo/fast"
    assert "no -m given: using demo/fast (the default, from the built-in fallback" in err

    code, out, _ = await chorus("models", "default", QUICK, OTHER)
    assert code == 0
    assert f"{QUICK}, {OTHER}" in out
    code, out, _ = await chorus("models", "default")
    assert out.splitlines() == [QUICK, OTHER]
    code, out, err = await chorus("ask", "--config", config, "--json", "hi")
    assert code == 0, err
    start = json.loads(out.splitlines()[0])["data"]
    assert [s["model"] for s in start["slots"]] == [QUICK, OTHER]
    assert f"using {QUICK}, {OTHER}" in err


async def test_a_default_that_is_no_model_ref_is_refused(chorus: Chorus) -> None:
    code, _, err = await chorus("models", "default", "fast")
    assert code == 2
    assert "'fast' is not a model ref: write it as 'provider/model'" in err


async def test_ask_logs_each_exchange(chorus: Chorus, config: str, chorus_home: Path) -> None:
    code, _, _ = await chorus("ask", "--config", config, "-s", "terse", "-m", QUICK,
                              "-m", "demo/error-429", "log me")
    assert code == 1
    code, out, _ = await chorus("logs", "--json")
    (listed,) = json.loads(out)
    assert listed["models"] == [QUICK, "demo/error-429"]
    assert listed["first_prompt"] == "log me"
    code, out, _ = await chorus("logs", "show", listed["id"], "--json")
    whole = json.loads(out)
    assert whole["system"] == "terse"
    (exchange,) = whole["exchanges"]
    done, failed = exchange["answers"]
    assert (done["text"], done["outcome"], done["output_tokens"]) == ("This is a ", "done", 3)
    assert failed["outcome"] == "error"
    assert failed["reason"] == "rate_limit: simulated upstream error 429"
    assert exchange["at"] > 1.7e9  # Unix time

    code, out, _ = await chorus("logs")
    assert code == 0
    assert listed["id"] in out
    assert "log me" in out
    code, out, _ = await chorus("logs", "path")
    assert out.strip() == str(chorus_home / "logs.db")


@pytest.mark.parametrize(("flags", "env", "toml"), [
    (["--no-log"], {}, ""),
    ([], {"CHORUS_LOG": "0"}, ""),
    ([], {}, "[cli]\nlog = false\n"),
], ids=["--no-log", "CHORUS_LOG=0", "[cli] log = false"])
async def test_logging_turned_off_logs_nothing(
    chorus: Chorus, tmp_path: Path, chorus_home: Path,
    flags: list[str], env: dict[str, str], toml: str,
) -> None:
    path = tmp_path / "off.toml"
    path.write_text(DEMO + toml)
    code, _, err = await chorus("ask", "--config", str(path), *flags, "-m", QUICK, "hi", **env)
    assert code == 0, err
    assert not (chorus_home / "logs.db").exists()  # (on by default: test_ask_logs_each_…)


async def test_a_models_listing_that_misses_a_provider_fails(chorus: Chorus, tmp_path: Path,
                                                             ) -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # a port that nothing listens on
    path = tmp_path / "down.toml"
    down = (f'[providers.down]\ntype = "openai"\nbase_url = "http://127.0.0.1:{port}/v1"\n'
            'api_key = "sk-test"\nretries = 0\n')
    path.write_text(down)
    code, out, err = await chorus("models", "--config", str(path))
    assert code == 1
    assert out == ""
    assert "chorus models: provider 'down' cannot list its models" in err

    path.write_text(DEMO + down)  # the others are still listed, and it still fails
    code, out, err = await chorus("models", "--config", str(path))
    assert code == 1
    assert "demo/fast  (simulated)" in out.splitlines()
    assert "provider 'down'" in err


async def test_a_reader_that_leaves_early_ends_it_quietly(config: str) -> None:
    # Far more than a pipe holds, so chorus is still writing when head has gone.
    ask = [*CHORUS, "ask", "--config", config, "--no-log", "--json",
           "-m", "demo/ttft=0,rate=0,tokens=5000", "hi"]
    script = f"{shlex.join(ask)} | head -1; echo status=${{PIPESTATUS[0]}} >&2"
    with trio.fail_after(60):
        done = await trio.run_process(["bash", "-c", script], capture_stdout=True,
                                      capture_stderr=True)
    assert json.loads(done.stdout)["event"] == "stream.start"
    err = done.stderr.decode()
    assert "Traceback" not in err
    assert "BrokenPipeError" not in err
    assert err.strip().splitlines()[-1] == "status=141"


@pytest.mark.parametrize("command", [[], ["ask"], ["chat"], ["logs"], ["models"],
                                     ["models", "default"], ["serve"]])
async def test_the_help_is_plain_text(chorus: Chorus, command: list[str]) -> None:
    code, out, _ = await chorus(*command, "--help")
    assert code == 0
    assert out.startswith("usage: chorus")
    assert "``" not in out
