"""The benchmark harness, run small: every part measures something sane, and the report
is written. Bounded: well under a minute of load against a real Chorus, the bare relay and
the fake upstream."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from bench import procs, report, scenarios
from bench.client import Dechunker, StreamResult, Target, run_stream
from bench.load import Sample
from bench.scenarios import Ctx, Plan, Server, least_stolen
from bench.upstream import Spec, model_name


def test_dechunker_any_split() -> None:
    rng = random.Random(1)
    parts = [bytes([65 + i % 26]) * rng.randint(1, 40) for i in range(60)]
    wire = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    for size in (1, 2, 3, 7, len(wire)):
        d = Dechunker()
        out = b"".join(d.feed(wire[i : i + size]) for i in range(0, len(wire), size))
        assert out == b"".join(parts)
        assert d.done


def test_model_name_round_trips() -> None:
    spec = Spec.parse("fake/" + model_name(20, 50, 5, max_s=9))
    assert spec == Spec(ttft=0.02, tokens=50, gap=0.005, max_seconds=9)


def test_steal_is_read_per_core_from_proc_stat() -> None:
    stat = ("cpu  811900 5821 79819 5118031 3596 0 17850 70668 0 0\n"
            "cpu0 400000 2000 40000 2500000 1500 0 9000 30000 0 0\n"
            "cpu1 411900 3821 39819 2618031 2096 0 8850 40668 120 0\n"
            "intr 123 4 5\nctxt 99\n")
    one = procs.parse_cpu_ticks(stat, {1})
    assert one == procs.CpuTicks(total=411900 + 3821 + 39819 + 2618031 + 2096 + 8850 + 40668,
                                 steal=40668)  # guest time is inside user time already
    both = procs.parse_cpu_ticks(stat, {0, 1})
    assert both.steal == 70668
    assert procs.parse_cpu_ticks(stat).steal == 70668  # the summary line
    later = procs.CpuTicks(both.total + 1000, both.steal + 50)
    assert (later - both).steal_pct == 5.0
    assert procs.CpuTicks().steal_pct is None  # no ticks elapsed: no share to give
    assert procs.parse_cpu_ticks("", {3}) == procs.CpuTicks()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to split")
def test_the_server_keeps_its_own_core_after_the_runner_pins_itself() -> None:
    server, load = procs.cpus()
    assert server
    assert load
    assert not server & load
    started_with = os.sched_getaffinity(0)
    os.sched_setaffinity(0, load)  # what every runner does once it has split the cores
    try:
        assert procs.cpus() == (server, load)  # the next round's server is not on the load's
    finally:
        os.sched_setaffinity(0, started_with)


def test_the_rounds_pooled_are_those_with_the_least_stolen_time() -> None:
    def run(steal: int, lag_us: float) -> Sample:
        result = StreamResult("chorus", 1, tokens=1, lags_us=array("d", [lag_us]))
        return Sample([result], wall=1.0, cpu=0.1, ticks=procs.CpuTicks(1000, steal))

    rounds = [run(200, 9000.0), run(0, 3000.0), run(30, 1000.0), run(1, 5000.0)]
    kept, left_out = least_stolen(rounds, 2)
    assert kept == [rounds[1], rounds[3]]  # in the order they ran; the lags play no part
    assert left_out == [rounds[0], rounds[2]]
    assert least_stolen(rounds, 4) == (rounds, [])


def test_quick_run_measures_every_figure_of_the_contract(tmp_path: Path) -> None:
    """``python -m bench --quick`` end to end, as shipped: real Chorus, relay and fake
    upstream processes; every part gives sane figures and the page shows the targets."""
    figures, docs = tmp_path / "figures.json", tmp_path / "docs"
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--no-litellm",
                           "--json", str(figures), "--out", str(docs)], cwd=procs.ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    r = json.loads(figures.read_text())
    assert r["notes"] == []
    for name in ("direct", "chorus-1", "chorus-oai", "relay"):
        lat = r["latency"][name]["5"]
        assert lat["tokens"] > 0, name
        assert lat["errors"] == 0, name
        assert 0.0 <= lat["chunk_lag_ms"]["p50"] <= lat["chunk_lag_ms"]["p99"], name
        assert r["saturation"][name]["tokens_per_s"] > 100, name
    assert r["wall_time"]["chorus_9_slots_ms"] >= r["wall_time"]["slowest_alone_ms"] > 0
    for mode in ("idle", "under_load"):
        assert r["stop"][mode]["failed"] == 0
        assert r["stop"][mode]["upstream_closed_ms"]["max"] < 1000
    for name in ("chorus-9", "chorus-oai"):
        for mode in ("streaming", "before_first_token", "backlogged"):
            assert r["disconnect"][name][mode]["never_closed"] == 0, (name, mode)
        assert r["disconnect"][name]["backlogged"]["healthz_ms"]["n"] > 0
    for name in ("chorus", "relay"):
        assert r["memory"][name]["streams_open"] == 20
        assert r["memory"][name]["kb_per_stream"] is not None
        assert r["memory"][name]["upstream_answers_left_open"] == 0
    for label in ("full_speed", "1000_per_s"):
        merge = r["merge"][label]
        assert merge["complete"]
        assert merge["tokens"] == 9 * Plan.quick().merge_tokens
        assert merge["probe"]["wakeups"] > 0  # bench.probed found the merge task and timed it
    page = (docs / "benchmarks.md").read_text()
    assert "## Targets" in page
    assert "python -m bench --quick --no-litellm" in page
    assert "(../bench/findings.md)" in page


def test_the_targets_are_the_contract_read_from_the_figures() -> None:
    def lag(p50: float, p99: float) -> dict[str, Any]:
        return {"ttft_lag_ms": {"p50": p50, "p99": p99}, "chunk_lag_ms": {"p50": p50, "p99": p99}}

    r: dict[str, Any] = {
        "plan": {"target_concurrency": 50},
        "latency": {"direct": {"50": lag(0.2, 0.7)}, "chorus-1": {"50": lag(0.4, 2.0)}},
        "saturation": {"chorus-1": {"cpu_us_per_token": 30.0, "tokens_per_s": 30000.0},
                       "litellm": {"cpu_us_per_token": 450.0, "tokens_per_s": 2000.0}},
        "merge": {"full_speed": {"probe": {"cpu_max_ms": 12.5}}},
        "disconnect": {"chorus-9": {"streaming": {"max": 1.5, "never_closed": 0},
                                    "backlogged": {"max": 2.0, "never_closed": 1}}},
        "memory": {"chorus": {"idle_kb": 54272, "kb_per_stream": 59.0}}}
    rows = {name: (target, value, met) for name, target, value, met in report.targets(r)}
    assert rows["added TTFT p50, 50 streams (minus floor)"] == ("≤ 1.0 ms", 0.2, True)
    assert rows["added latency per chunk p50, 50 streams (minus floor)"] == ("≤ 0.3 ms", 0.2,
                                                                             True)
    assert rows["added latency per chunk p99, 50 streams (minus floor)"] == ("≤ 1.0 ms", 1.3,
                                                                             False)
    assert rows["throughput vs LiteLLM at saturation (times)"] == ("≥ 10", 15.0, True)
    assert rows["CPU per relayed upstream chunk at saturation"] == ("≤ 60 µs", 30.0, True)
    name = "longest merge-loop wait behind producers (9 slots, full speed; CPU time)"
    assert rows[name] == ("≤ 10 ms", 12.5, False)
    name = "disconnect → every upstream closed (mid-answer, 9 slots), max"
    assert rows[name] == ("≤ 5 ms", 1.5, True)
    # A stream never closed is no figure at all, and a target missed.
    name = "disconnect → every upstream closed (while behind, 9 slots), max"
    assert rows[name] == ("≤ 5 ms", "1 never closed", False)
    assert rows["9-slot wall time minus slowest slot alone"] == ("≤ 5 ms", None, None)  # not run
    assert rows["RSS idle"] == ("≤ 60 MB", 53.0, True)


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[procs.Proc]:
    proc = procs.upstream_proc(procs.cpus()[1], tmp_path / "upstream.log").start()
    try:
        yield proc
    finally:
        proc.stop()


async def test_the_bare_relay_streams_and_lets_go_of_the_upstream(
        upstream: procs.Proc, tmp_path: Path) -> None:
    """The comparison's bare stack relays whole answers, and a client that leaves closes the
    upstream answer (or a cut saturation stream would go on using the server's core)."""
    direct = await run_stream(Target("direct", upstream.port, "direct"), model_name(0, 30, 1),
                              "direct-whole")
    assert direct.complete, direct.error  # the fake upstream's answer ends as it should
    assert direct.tokens == 30
    relay = procs.relay_proc(upstream.port, procs.cpus()[0], tmp_path).start()
    try:
        target = Target("relay", relay.port, "relay")
        whole = await run_stream(target, model_name(0, 30, 1), "relay-whole")
        assert whole.complete, whole.error
        assert whole.tokens == 30
        cut = await run_stream(target, model_name(0, 100_000, 5), "relay-cut",
                               stop_after_tokens=3)
        assert cut.tokens >= 3  # one read may bring more than the tokens asked for
        assert not cut.complete
        ctx = Ctx(Plan.quick(), upstream, tmp_path)
        with trio.fail_after(5):
            while await scenarios.open_upstream_answers(ctx.upstream.port):  # noqa: ASYNC110
                await trio.sleep(0.02)
        mem = await scenarios.memory(ctx, Server("relay", target, relay), 5)
        assert mem["streams_open"] == 5
        assert mem["kb_per_stream"] is not None
    finally:
        relay.stop()


def test_page_only_writes_the_committed_page_from_the_committed_figures(
        tmp_path: Path) -> None:
    """The page is made from bench/benchmarks.json and bench/findings.md alone: laid out as
    in the repository, the two give back docs/benchmarks.md as it is committed (so an edit
    to the findings that did not reach the page fails here)."""
    from bench.__main__ import main

    (tmp_path / "bench").mkdir()
    figures = tmp_path / "bench" / "benchmarks.json"
    figures.write_bytes((procs.ROOT / "bench" / "benchmarks.json").read_bytes())
    committed = (procs.ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    others = committed.split(report.KEPT)[1]
    (tmp_path / "docs").mkdir()
    # The page as it would be with someone's edit above the kept sections: rewritten.
    (tmp_path / "docs" / "benchmarks.md").write_text("stale\n" + report.KEPT + others)
    assert main(["--page-only", "--json", str(figures),
                        "--out", str(tmp_path / "docs")]) == 0
    written = (tmp_path / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert written == committed
    assert "## Worker agents" in others  # the sections other commands write are kept


def test_page_only_without_figures_says_so_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.__main__ import main

    assert main(["--page-only", "--json", str(tmp_path / "none.json"),
                 "--out", str(tmp_path)]) == 2
    assert "cannot read the raw figures" in capsys.readouterr().err
    assert not (tmp_path / "benchmarks.md").exists()
    with pytest.raises(SystemExit) as refused:
        main(["--page-only", "--quick"])  # it would measure nothing the flag asks for
    assert refused.value.code == 2
    assert "--page-only measures nothing" in capsys.readouterr().err
