"""``python -m bench.many`` run small: every stream opens through Chorus, its tokens are
timed in the steady state against the floor's, and every upstream is seen closed once the
clients leave. Bounded: 20 streams held 2 s, one pass direct and one through Chorus."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench import many
from bench.procs import ROOT


def test_a_small_run_holds_every_stream_and_sees_every_upstream_closed(tmp_path: Path) -> None:
    out = tmp_path / "many.json"
    subprocess.run([sys.executable, "-m", "bench.many", "--streams", "20", "--hold", "2",
                    "--json", str(out)], cwd=ROOT, check=True, timeout=60,
                   stdout=subprocess.DEVNULL)
    r = json.loads(out.read_text())
    assert r["streams"] == 20
    for name in ("floor", "chorus"):
        p = r[name]
        assert (p["opened"], p["failed"], p["ended_early"]) == (20, 0, 0)
        # One token a second each, over a 2 s window: about two per stream.
        assert 20 <= p["tokens"] <= 60
        assert 0 < p["lag_ms"]["p50"] <= p["lag_ms"]["p99"]
        assert p["upstream_open_after_leaving"] == 0
        assert p["upstream_answers_finished"] == 0  # every answer was ended by a client leaving
        assert 0 <= p["all_upstreams_closed_after_leaving_s"] < many.CLOSE_WAIT
    chorus = r["chorus"]
    assert chorus["server_rss_mb"] > r["server_idle_rss_mb"] > 0
    # A client and an upstream each.
    assert chorus["server_fds"] >= r["server_idle_fds"] + 2 * 20, (chorus, r["server_idle_fds"])
    assert r["added_ms"]["p99"] == round(chorus["lag_ms"]["p99"] - r["floor"]["lag_ms"]["p99"], 3)
    assert [name for name, *_ in many.verdicts(r)] == [
        "server RSS with every stream open, MB", "added latency per chunk p99, ms",
        "clients left -> every upstream closed, s"]


def test_the_streams_are_cut_to_what_the_open_file_limit_holds() -> None:
    # Two descriptors a stream beside what the idle server holds and a spare.
    assert many.streams_that_fit(10_000, 20_000, 40) == (20_000 - 40 - many.FD_SPARE) // 2
    assert many.streams_that_fit(100, 20_000, 40) == 100
    assert many.streams_that_fit(100, 50, 40) == 0
