"""``chorus ask --conversation``: the turns as a thread, each under its speaker's name."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from app.terminal.thread import Thread

from ..conftest import StartServer
from .conftest import DEMO, Chorus

A = "demo/ttft=0,rate=0,tokens=4"
B = "demo/ttft=0,rate=0,tokens=2"
HEADER = re.compile(r"^(.+) · turn (\d+)$")


def thread_of(out: str) -> list[tuple[str, str]]:
    """(speaker, text) per turn, read back from the printed thread."""
    turns: list[tuple[str, list[str]]] = []
    for line in out.splitlines():
        header = HEADER.match(line)
        if header:
            assert int(header[2]) == len(turns) + 1
            turns.append((header[1], []))
        elif line and turns:
            turns[-1][1].append(line)
    return [(name, "\n".join(text).strip()) for name, text in turns]


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "chorus.toml"
    path.write_text(DEMO)
    return str(path)


async def test_the_turns_print_in_order_under_each_speakers_name(chorus: Chorus,
                                                                 config: str) -> None:
    code, out, err = await chorus("ask", "--config", config, "--conversation", "-m", A,
                                  "-m", B, "--rounds", "2", "Is P = NP?")
    assert code == 0, err
    turns = thread_of(out)
    assert [name for name, _ in turns] == [A, B, A, B]
    assert [len(text.split()) for _, text in turns] == [4, 2, 4, 2]


async def test_against_a_server(chorus: Chorus, start_server: StartServer) -> None:
    server = await start_server(DEMO)
    code, out, err = await chorus("ask", "--server", server.url, "--conversation", "-m", B,
                                  "-m", A, "Is P = NP?")
    assert code == 0, err
    assert [name for name, _ in thread_of(out)] == [B, A]


async def test_a_refused_conversation_exits_2(chorus: Chorus, config: str) -> None:
    code, _, err = await chorus("ask", "--config", config, "--conversation", "-m", A,
                                "--rounds", "0", "hi")
    assert code == 2
    assert "'rounds' must be an integer from 1 to 20" in err


def test_an_ended_turn_says_how_and_an_error_fails_the_run() -> None:
    out = io.StringIO()
    thread = Thread(out)
    for kind, data in [
        ("turn.start", {"turn": 0, "slot": 0, "model": "m", "name": "Ada"}),
        ("delta", {"slot": 0, "turn": 0, "text": "Yes"}),
        ("model.stopped", {"slot": 0, "turn": 0, "reason": "skip"}),
        ("turn.start", {"turn": 1, "slot": 1, "model": "m", "name": "Bo"}),
        ("model.error", {"slot": 1, "turn": 1, "error": {"message": "overloaded"}}),
        ("stream.done", {"counts": {}}),
    ]:
        thread.apply(kind, data)
    assert out.getvalue() == ("\nAda · turn 1\nYes\n[stopped: skip]\n"
                              "\nBo · turn 2\n\n[error: overloaded]\n")
    assert thread.exit_code() == 1
