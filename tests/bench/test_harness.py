"""The benchmark harness, run small: every part measures something sane, and the report
is written. Bounded: a few seconds of load against a real Chorus and the fake upstream."""

from __future__ import annotations

import json
import os
import random
from array import array
from collections.abc import Iterator
from pathlib import Path

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


def test_only_names_known_parts() -> None:
    """``python -m bench --only`` takes a comma list of parts and refuses unknown ones."""
    import argparse

    from bench.__main__ import _parts

    assert _parts("wall, memory") == {"wall", "memory"}
    with pytest.raises(argparse.ArgumentTypeError, match=r"unknown part.*walls"):
        _parts("walls,memory")
    ctx = Ctx(Plan.quick(), None, Path("."), only=frozenset({"wall"}))  # type: ignore[arg-type]
    assert ctx.wants("wall")
    assert not ctx.wants("latency")
    assert Ctx(Plan.quick(), None, Path(".")).wants("latency")  # type: ignore[arg-type]


def test_model_name_round_trips() -> None:
    spec = Spec.parse("fake/" + model_name(20, 50, 5, stamped=False, chars=3, max_s=9))
    assert spec == Spec(ttft=0.02, tokens=50, gap=0.005, stamped=False, chars=3, max_seconds=9)


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


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[procs.Proc, procs.Proc,
                                                                       Path]]:
    work = tmp_path_factory.mktemp("bench")
    server_cores, load_cores = procs.cpus()
    upstream = procs.upstream_proc(load_cores, work / "upstream.log").start()
    chorus = procs.chorus_proc(upstream.port, server_cores, work, retention=0.1,
                               env={"CHORUS_MERGE_PROBE": str(work / "probe.jsonl")})
    try:
        chorus.start()
        yield upstream, chorus, work
    finally:
        chorus.stop()
        upstream.stop()


async def test_every_part_measures(running: tuple[procs.Proc, procs.Proc, Path]) -> None:
    upstream, chorus, work = running
    ctx = Ctx(Plan.quick(), upstream, work)
    direct = Server("direct", Target("direct", upstream.port, "direct"), None)
    one = Server("chorus-1", Target("chorus-1", chorus.port, "chorus"), chorus)
    nine = Server("chorus-9", Target("chorus-9", chorus.port, "chorus"), chorus, 9)

    single = await run_stream(one.target, model_name(0, 30, 1), "smoke")
    assert single.complete
    assert single.tokens == 30
    assert min(single.lags_us) >= 0

    results: dict = {"latency": {}, "machine": {
        "cpu": "test", "cores": 2, "memory_gb": 1, "os": "test", "load_average_at_start": None,
        "versions": {"python": "3", "trio": "0", "h11": "0", "httpx": "0"}},
        "plan": {**Plan.quick().__dict__}, "command": "pytest", "seconds": 0, "notes": []}
    # No round counts as quiet (at most -1 % stolen): Chorus, named, runs its one extra round.
    pooled = await scenarios.latency(ctx, [direct, one], 5, rounds=2, spare=1,
                                     quiet_for=frozenset({"chorus-1"}), quiet_pct=-1.0, extra=1)
    for s, run in ((direct, 3), (one, 4)):
        results["latency"][s.name] = {"5": pooled[s.name]}
        assert pooled[s.name]["rounds"] == 2
        assert pooled[s.name]["rounds_run"] == run
        assert pooled[s.name]["tokens"] > 0
        assert pooled[s.name]["errors"] == 0
        assert 0.0 <= pooled[s.name]["steal_pct"] <= 100.0
        assert len(pooled[s.name]["left_out_steal_pct"]) == run - 2
        assert pooled[s.name]["all_rounds"]["streams"] > pooled[s.name]["streams"]
    results["saturation"] = {"chorus-1": await scenarios.saturation(ctx, one)}
    assert results["saturation"]["chorus-1"]["tokens_per_s"] > 100

    stop = await scenarios.stop_latency(ctx, one)
    assert stop["failed"] == 0
    assert stop["upstream_closed_ms"]["max"] < 1000
    results["stop"] = {"idle": stop}

    gone = await scenarios.disconnect(ctx, nine, healthz=True)
    for mode in ("streaming", "before_first_token", "backlogged"):
        assert gone[mode]["never_closed"] == 0, mode
    assert gone["backlogged"]["healthz_ms"]["n"] > 0
    results["disconnect"] = {"chorus-9": gone}

    wire = await scenarios.wire_bytes(ctx, one)
    ratios = [x["per_text_byte"] for x in wire.values()]
    assert all(x["complete"] for x in wire.values())
    assert ratios[-1] <= ratios[0]  # fixed overhead shrinks; nothing grows with length
    results["wire"] = {"chorus-1": wire}

    merge = await scenarios.merge_wait(ctx, nine, work / "probe.jsonl")
    assert merge["full_speed"]["probe"] is not None
    assert merge["full_speed"]["probe"]["wakeups"] > 0
    results["merge"] = merge

    out = work / "docs"
    report.write(results, out, work / "raw.json")
    page = (out / "benchmarks.md").read_text()
    assert "## Targets" in page
    assert "python -m bench" in page
    assert "| steal % |" in page
    assert "The rounds left out" in page
    json.dumps(results, default=str)


async def test_more_rounds_are_wanted_until_enough_were_quiet() -> None:
    def run(steal: int | None) -> Sample:
        ticks = procs.CpuTicks() if steal is None else procs.CpuTicks(1000, steal)
        return Sample([], wall=1.0, cpu=0.1, ticks=ticks)

    rounds = [run(50), run(5), run(None), run(20)]  # 5 %, 0.5 %, nothing counted, 2 %
    assert scenarios.short_of_quiet(rounds, 2, 1.0)  # one quiet round of the two wanted
    assert not scenarios.short_of_quiet(rounds, 2, 2.0)
    assert not scenarios.short_of_quiet(rounds, 1, 0.5)
    assert scenarios.short_of_quiet([], 1, 100.0)


async def test_the_bare_relay_streams_and_lets_go_of_the_upstream(
        running: tuple[procs.Proc, procs.Proc, Path], tmp_path: Path) -> None:
    """The comparison's bare stack relays whole answers, and a client that leaves closes the
    upstream answer (or a cut saturation stream would go on using the server's core)."""
    upstream, _, work = running
    relay = procs.relay_proc(upstream.port, procs.cpus()[0], tmp_path).start()
    try:
        target = Target("relay", relay.port, "relay")
        whole = await run_stream(target, model_name(0, 30, 1), "relay-whole")
        assert whole.complete, whole.error
        assert whole.tokens == 30
        cut = await run_stream(target, model_name(0, 100_000, 5), "relay-cut",
                               stop_after_tokens=3)
        assert cut.tokens == 3
        ctx = Ctx(Plan.quick(), upstream, work)
        with trio.fail_after(5):
            while await scenarios.open_upstream_answers(ctx):  # noqa: ASYNC110
                await trio.sleep(0.02)
        mem = await scenarios.memory(ctx, Server("relay", target, relay), 5)
        assert mem["streams_open"] == 5
        assert mem["kb_per_stream"] is not None
    finally:
        relay.stop()


def test_the_page_sets_chorus_beside_the_bare_relay() -> None:
    def lat(ttft: float, chunk: float, cpu: float | None) -> dict:
        return {"50": {"ttft_lag_ms": {"p50": ttft, "p99": ttft * 4},
                       "chunk_lag_ms": {"p50": chunk, "p99": chunk * 5},
                       "cpu_us_per_token": cpu, "steal_pct": 0.5}}

    r = {"plan": {"target_concurrency": 50},
         "latency": {"direct": lat(0.25, 0.25, None), "chorus-1": lat(0.5, 0.5, 330.0),
                     "relay": lat(1.0, 0.75, 456.0)},
         "saturation": {"chorus-1": {"cpu_us_per_token": 30.5, "tokens_per_s": 30000.0},
                        "relay": {"cpu_us_per_token": 125.5, "tokens_per_s": 7844.0}},
         "memory": {"chorus": {"idle_kb": 54272}, "relay": {"idle_kb": 40960}}}
    page = "\n".join(report._bare_section(r))
    assert "| figure | Chorus, 1 slot | bare relay (Quart-trio, Hypercorn, httpx) |" in page
    assert "| added TTFT p50 / p99, 50 streams (ms) | 0.25 / 1.00 | 0.75 / 3.00 |" in page
    assert "| added latency per chunk p50 / p99, 50 streams (ms) | 0.25 / 1.25 | 0.50 / 2.50 |" \
        in page
    assert "| server CPU per token, 50 streams (µs) | 330 | 456 |" in page
    assert "| time stolen by the hypervisor in those rounds (%) | 0.5 | 0.5 |" in page
    assert "| CPU per upstream chunk at saturation (µs) | 30.5 | 125.5 |" in page
    assert "| RSS idle (MB) | 53.0 | 40.0 |" in page
    del r["latency"]["relay"]
    assert report._bare_section(r) == []  # no relay in the run: no section


def test_page_only_writes_the_committed_page_from_the_committed_figures(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page is made from bench/benchmarks.json and bench/findings.md alone: laid out as
    in the repository, the two give back docs/benchmarks.md as it is committed (so an edit
    to the findings that did not reach the page fails here)."""
    import bench.__main__ as runner

    monkeypatch.setattr(runner, "ensure_matplotlib", lambda log: None)  # no install in tests
    (tmp_path / "bench").mkdir()
    figures = tmp_path / "bench" / "benchmarks.json"
    figures.write_bytes((procs.ROOT / "bench" / "benchmarks.json").read_bytes())
    assert runner.main(["--page-only", "--json", str(figures),
                        "--out", str(tmp_path / "docs")]) == 0

    def text(page: Path) -> list[str]:  # the plots' links are there only with matplotlib
        return [line for line in page.read_text(encoding="utf-8").splitlines()
                if not line.startswith("![")]

    assert text(tmp_path / "docs" / "benchmarks.md") == text(procs.ROOT / "docs" / "benchmarks.md")


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


def test_ab_refuses_a_directory_that_is_not_chorus(tmp_path: Path) -> None:
    from bench import ab

    with pytest.raises(SystemExit) as exit_:
        ab.main([str(tmp_path)])
    assert exit_.value.code == 2


def test_ab_compares_two_trees_in_alternating_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import ab

    assert ab.main([str(procs.ROOT), "--rounds", "2", "--streams", "2", "--seconds", "0.3"]) == 0
    out = capsys.readouterr().out
    runs = [line.split(":")[0] for line in out.splitlines() if line.startswith("run ")]
    assert runs == ["run 1 A", "run 1 B", "run 2 B", "run 2 A"]
    assert ", 0 errors" in out
    assert "% of the CPU time stolen" in out
    summary = [line for line in out.splitlines() if line.startswith(("A (", "B ("))]
    assert len(summary) == 2


def test_instruction_counts_are_read_from_callgrind_output() -> None:
    from bench.instructions import total_instructions

    dump = (b"# callgrind format\nversion: 1\ncreator: callgrind-3.19.0\npid: 7\n"
            b"events: Ir\nsummary: 664240812\n\nfl=(1) x.c\nfn=(1) main\n3 5\n"
            b"totals: 664240812\n")
    assert total_instructions(dump) == 664240812
    with pytest.raises(ValueError, match="not a callgrind output"):
        total_instructions(b"events: Ir\ntotals: 5\n")
