"""``python -m bench.scale``, run tiny: a real ``redis-server``, Chorus on the memory backend
and two Chorus instances on Redis, then ``--workers 2`` and one worker; every part gives
sane figures and the page's section shows them. Bounded: a few seconds of load."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from bench import procs
from bench.scale import PATHS, Elsewhere, workers_ratios


def test_a_reader_elsewhere_asks_for_the_events_of_the_stream_made_on_the_other() -> None:
    raw = Elsewhere("b", 8001, "chorus", events_url="/v1/streams/abc/events").request(
        "m_t5_n10_g5", "tag")
    head = raw.decode()
    assert head.startswith("GET /v1/streams/abc/events HTTP/1.1\r\n")
    assert "Host: 127.0.0.1:8001\r\n" in head
    assert "Accept: text/event-stream\r\n" in head
    assert head.endswith("\r\n\r\n")


def test_two_workers_are_read_as_measured_and_by_work_rate() -> None:
    one = {"tokens_per_s": 10_000.0, "tokens_per_server_cpu_s": 10_000}
    two = {"tokens_per_s": 12_000.0, "tokens_per_server_cpu_s": 9_000}
    # As measured: 1.2 times; by work rate: two cores at 9000 tokens per CPU second each
    # against one at 10000.
    assert workers_ratios(one, two) == {"tokens_per_s": 1.2, "work_rate": 1.8}
    assert workers_ratios({"tokens_per_s": 0.0, "tokens_per_server_cpu_s": None}, two) == {
        "tokens_per_s": None, "work_rate": None}


def test_quick_run_measures_every_figure(tmp_path: Path) -> None:
    assert shutil.which("redis-server"), "install redis-server (apt-get install -y redis-server)"
    figures, section = tmp_path / "scale.json", tmp_path / "scale.md"
    done = subprocess.run([sys.executable, "-m", "bench.scale", "--quick", "--json",
                           str(figures), "--md", str(section)], cwd=procs.ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    r = json.loads(figures.read_text())
    assert r["notes"] == []
    assert sorted(r["latency"]) == ["2", "5"]
    for streams, path in ((n, path) for n in ("2", "5") for path in PATHS):
        lat = r["latency"][streams][path]
        assert lat["complete"] > 0, (streams, path, lat)
        # A stream still running when the run is cut is no failure; any other error is.
        assert set(lat["error_kinds"]) <= {"deadline"}, (streams, path, lat)
        assert 0.0 <= lat["ttft_lag_ms"]["p50"] <= lat["ttft_lag_ms"]["p99"], (streams, path)
        assert 0.0 <= lat["chunk_lag_ms"]["p50"] <= lat["chunk_lag_ms"]["p99"], (streams, path)
    cross = r["latency"]["5"]["redis-cross"]
    assert cross["cpu_us_per_token"] > 0  # both instances' CPU read
    assert cross["redis_per_token"]["xread"] > 0  # the other instance followed from Redis
    memory, redis = r["saturation"]["memory"], r["saturation"]["redis"]
    assert memory["tokens_per_s"] > 100, memory
    assert redis["tokens_per_s"] > 100, redis
    assert redis["cpu_us_per_token"] > 0, redis
    assert redis["redis_per_token"]["xadd"] > 0, redis  # its events went through Redis
    assert "xadd" not in memory["redis_per_token"], memory  # and the memory backend's not
    for where in ("memory", "redis-local", "redis-cross"):
        stop = r["stop"][where]
        assert stop["failed"] == 0, (where, stop)
        assert stop["upstream_closed_ms"]["n"] == stop["trials"], (where, stop)
        assert stop["upstream_closed_ms"]["max"] < 1000, (where, stop)
    workers = r["workers"]
    assert len(workers["1"]["worker_cpu_s"]) == 1
    assert len(workers["2"]["worker_cpu_s"]) == 2  # the supervisor's two workers, read apart
    for label in ("1", "2", "2, burst"):
        assert workers[label]["tokens_per_s"] > 100, (label, workers)
        assert workers[label]["tokens_per_server_cpu_s"] > 0, (label, workers)
        # The load side (the upstream, Redis, the load generator) is pinned to its cores:
        # its CPU cannot exceed theirs (it would, counting the servers it started).
        load_cores = len(procs.cpus()[1])
        assert 0 < workers[label]["load_side_cpu_s"] <= workers[label]["wall_s"] * load_cores, (
            label, workers)
    assert workers["ratio"] == workers_ratios(workers["1"], workers["2"])
    text = section.read_text()
    assert text.startswith("## Redis backend and workers\n")
    assert "python -m bench.scale --quick" in text
    assert "**Latency, 5 streams**" in text
    assert "**Latency, 2 streams**" in text
    assert "Redis, reader on the other instance" in text
    assert text in done.stdout
