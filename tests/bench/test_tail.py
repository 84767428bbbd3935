"""The tail's attribution: a token's wait laid over the server's steps and collections."""

from __future__ import annotations

from array import array

from app.engine.probe import Timeline

from bench import tail
from bench.tail import GC, OUTSIDE, PREEMPTED, Attribution, Step
from bench.upstream import model_name

# One thread's timeline, in ns: a slot step, a gap, a merge step that a collection of 300
# fell in, and a slot step that ran 200 of CPU in 700 of wall time (preempted 500).
STEPS = [Step(0, 100, "run_slot", gc=0, cpu=100),
         Step(300, 800, "_life", gc=300, cpu=500),
         Step(800, 1500, "run_slot", gc=0, cpu=200)]
PAUSES = [(400, 700, 0)]


def test_an_interval_is_split_by_what_filled_it() -> None:
    at = Attribution(STEPS, PAUSES)
    assert at.spent(0, 1500) == {"run_slot": 300, "_life": 200, GC: 300, PREEMPTED: 500,
                                 OUTSIDE: 200}
    # Half of the merge step: half of each of its parts.
    assert at.spent(550, 800) == {"_life": 100, GC: 150, PREEMPTED: 0, OUTSIDE: 0}


def test_a_wait_held_a_collection_when_they_overlap() -> None:
    at = Attribution(STEPS, PAUSES)
    assert at.collecting(0, 450)
    assert at.collecting(650, 2000)
    assert not at.collecting(0, 400)
    assert not at.collecting(700, 2000)


def test_a_wait_is_put_down_to_its_longest_stall() -> None:
    at = Attribution(STEPS, PAUSES)
    assert at.cause(0, 1500) == (PREEMPTED, 500)
    assert at.cause(0, 800) == (GC, 300)
    assert at.cause(50, 320) == (OUTSIDE, 200)
    assert at.cause(0, 120) == ("run_slot", 100)
    assert at.cause(1600, 1900) == (OUTSIDE, 300)  # after the last step


def test_analyse_puts_the_slowest_tokens_behind_the_stall_they_waited_for() -> None:
    names = ["run_slot", "_life"]
    steps = array("q")
    for i in range(100):  # a short step every 100 us for 10 ms ...
        steps.extend((i * 100_000, i * 100_000 + 20_000, i % 2, 0, 20_000))
    steps.extend((10_000_000, 14_000_000, 0, 0, 1_000_000))  # ... then 3 ms preempted
    arrivals = array("q")
    for i in range(98):  # tokens that waited 50 us, then two behind the preempted step
        arrivals.extend((i * 100_000, i * 100_000 + 50_000))
    arrivals.extend((10_500_000, 14_100_000, 10_600_000, 14_200_000))
    figures = tail.analyse(arrivals, Timeline(names, steps, array("q")), (0, 15_000_000))
    assert figures["tokens"] == 100
    assert figures["lag_ms"]["max"] == 3.6
    assert figures["preempted_ms"] == 3.0
    assert figures["tokens_waiting_on_gc_pct"] == 0
    assert figures["tail_causes"] == {PREEMPTED: {"tokens": 2, "mean_stall_ms": 3.0}}
    assert figures["steps_cpu_us"]["run_slot"]["max"] == 1000.0


def test_a_real_run_lays_tokens_over_chorus_s_steps() -> None:
    figures = tail.measure(tail.procs.ROOT, streams=5, seconds=1.0,
                           model=model_name(5, 10, 5))
    assert figures["tokens"] >= 5 * 9
    assert {"run_slot", "_life"} <= set(figures["steps_cpu_us"])
    assert 0 < figures["busy_pct"] < 100
    assert sum(c["tokens"] for c in figures["tail_causes"].values()) >= 1
    assert figures["bands"]["median (p45-p55)"]["mean_ms_by_what"]["run_slot"] > 0
    assert "tail tokens" in tail.render(figures)
