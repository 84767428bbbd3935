"""``chorus ask`` in a real terminal (tmux): live columns, Ctrl-C, exit codes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio

from ..conftest import StartServer
from ..support.upstream import FakeUpstream, openai_script
from .tmux import CHORUS, Tmux


def token_counts(screen: str) -> list[int]:
    """Each column's live output-token count, from the status row."""
    row = next(line for line in screen.splitlines() if "streaming" in line)
    return [int(n) for n in re.findall(r"~(\d+) tok", row)]


async def test_the_columns_fill_side_by_side_at_the_same_time(tmux: Tmux) -> None:
    await tmux.start([*CHORUS, "ask", "-m", "demo/ttft=0.1,rate=40,tokens=60",
                      "-m", "demo/ttft=0.2,rate=40,tokens=60", "hello"])
    first = await tmux.wait_for(lambda s: s.count("▸ streaming") == 2)
    labels = next(line for line in first.splitlines() if line.startswith("demo/"))
    assert labels.split(" │ ")[1].startswith("demo/ttft=0.2")
    before = token_counts(first)
    assert len(before) == 2

    def both_grew(screen: str) -> bool:
        if screen.count("▸ streaming") != 2:
            return False
        after = token_counts(screen)
        return all(b < a for b, a in zip(before, after, strict=True)) and any(
            line.count("This is a **simulated**") == 2 for line in screen.splitlines())

    await tmux.wait_for(both_grew)  # both columns move, and fill, while both stream
    code, screen = await tmux.exit_code()
    assert code == 0
    assert screen.count("✓ done · ttft") == 2
    assert "done 2 · error 0 · stopped 0" in screen


@pytest.mark.parametrize("remote", [False, True], ids=["in-process", "server"])
async def test_ctrl_c_stops_every_upstream_and_prints_what_arrived(
    tmux: Tmux, tmp_path: Path, upstream: FakeUpstream, start_server: StartServer,
    remote: bool,
) -> None:
    upstream.respond = lambda seen: openai_script([f"w{i} " for i in range(400)], gap=0.05)
    provider = f'[providers.up]\ntype = "openai"\nbase_url = "{upstream.url}/v1"\nretries = 0\n'
    if remote:
        server = await start_server(provider + "[server]\nresume_grace = 30.0\n")
        where = ["--server", server.url]
    else:
        config = tmp_path / "chorus.toml"
        config.write_text(provider)
        where = ["--config", str(config)]
    await tmux.start([*CHORUS, "ask", *where, "-m", "up/a", "-m", "up/b", "hello"])
    await tmux.wait_for(lambda s: s.count("w5") == 2)
    await tmux.keys("C-c")
    code, screen = await tmux.exit_code()
    assert code == 130
    assert screen.count("■ stopped (user)") == 2
    assert "chorus: stopped (Ctrl-C)" in screen
    assert screen.count("w0 w1 w2 w3 w4 w5") == 2  # what arrived, in both columns
    assert len(upstream.seen) == 2
    for seen in upstream.seen:
        with trio.fail_after(1):
            await seen.closed.wait()
        assert seen.bytes_sent < 200 * 150  # far from the 400 words it had to send
    if remote:  # the stop came from the client's stop call, not from a disconnect
        (stream,) = server.hub.streams()
        assert [s.stop_reason for s in stream.slots] == ["user", "user"]
