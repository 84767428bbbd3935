"""``/metrics`` and the logs: what they count and say, at what cost, and in what shape."""

from __future__ import annotations

import io
import logging
import re
import time

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from app.engine import Hub, StreamSettings
from app.logs import KeyValueFormatter, fields, new_request_id, request_id
from app.metrics import MAX_MODELS

from ..conftest import Server, StartServer, read_events
from ..support.engine import collect, plans
from .conftest import ASK, SSE

LINE = re.compile(r'^ts=\S+Z level=(debug|info|warning|error|critical) logger=\S+ '
                  r'request_id=\S+ (event|msg)=(\S+|"([^"\\]|\\.)*")( \w+=(\S+|"([^"\\]|\\.)*"))*$')


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(all_samples, name: str, **labels: str) -> float:
    return all_samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(server: Server) -> dict:
    async with server.client() as client:
        r = await client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    return samples(r.text)


async def test_metrics_count_streams_slots_errors_tokens_and_stops(
    start_server: StartServer,
) -> None:
    server = await start_server("[server]\nresume_grace = 0.0\n")
    async with server.client() as client:
        async with client.stream("POST", "/v1/streams", headers=SSE, json={
                "models": ["demo/instant", "demo/error-500"], **ASK}) as r:
            assert [e async for e in read_events(r)][-1][1] == "stream.done"
        created = (await client.post("/v1/streams", json={"models": ["demo/hang"], **ASK})
                   ).json()
        before = await scrape(server)
        assert value(before, "chorus_streams_active") == 1
        await client.post(created["stop_url"])
    m = await scrape(server)
    assert value(m, "chorus_streams_total") == 2
    assert value(m, "chorus_streams_active") == 0
    assert value(m, "chorus_slots_total", provider="demo", model="instant", outcome="done") == 1
    assert value(m, "chorus_slots_total", provider="demo", model="error-500",
                 outcome="error") == 1
    assert value(m, "chorus_slots_total", provider="demo", model="hang", outcome="stopped") == 1
    # A 500 is retried twice: three failed attempts, two retries.
    assert value(m, "chorus_upstream_errors_total", provider="demo", type="upstream") == 3
    assert value(m, "chorus_slot_retries_total", provider="demo") == 2
    assert value(m, "chorus_slot_ttft_seconds_count", provider="demo", model="instant") == 1
    assert value(m, "chorus_slot_duration_seconds_count", provider="demo", model="hang") == 1
    assert value(m, "chorus_tokens_total", provider="demo", model="instant",
                 direction="out") == 200
    assert value(m, "chorus_stop_latency_seconds_count", reason="user") == 1
    assert value(m, "chorus_stop_latency_seconds_sum", reason="user") < 0.5
    assert value(m, "chorus_http_requests_total", method="POST", route="/v1/streams",
                 status="201") == 1
    assert value(m, "chorus_http_requests_total", method="POST",
                 route="/v1/streams/<stream_id>/stop", status="200") == 1


async def test_each_app_has_its_own_registry(start_server: StartServer) -> None:
    busy, idle = await start_server(), await start_server()
    async with busy.client() as client:
        await client.post("/v1/streams", json={"models": ["demo/instant"], **ASK})
    assert value(await scrape(busy), "chorus_streams_total") == 1
    assert value(await scrape(idle), "chorus_streams_total") == 0


async def test_model_labels_are_bounded(start_server: StartServer) -> None:
    server = await start_server("[server]\nrate_limit = 0.0\n")
    async with server.client() as client:
        for n in range(MAX_MODELS + 10):
            async with client.stream("POST", "/v1/streams", headers=SSE, json={
                    "models": [f"demo/ttft=0,rate=0,tokens={n + 1}"], **ASK}) as r:
                await r.aread()
    m = await scrape(server)
    models = {dict(labels)["model"] for (name, labels) in m if name == "chorus_slots_total"}
    assert len(models) == MAX_MODELS + 1
    assert value(m, "chorus_slots_total", provider="demo", model="other", outcome="done") == 10


async def test_observers_hear_of_slot_ends_not_of_deltas(autojump_clock) -> None:
    calls: list[str] = []

    class Counting:
        def stream_started(self, stream):
            calls.append("stream_started")

        def slot_event(self, stream, state, event):
            calls.append(event.type)

        def stream_ended(self, stream, counts):
            calls.append("stream_ended")

        def reader_cut(self, stream, stalled_for):
            calls.append("reader_cut")

    hub = Hub(StreamSettings(resume_grace=0), observer=Counting())
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        stream = await hub.open("o", plans("ttft=0,rate=1000,tokens=500", "flaky"), reader=True)
        events = await collect(stream, attached=True)
        hub.close()
    assert sum(e.type == "delta" for e in events) > 100
    assert calls == ["stream_started", "model.done", "model.error", "stream_ended"] or \
        calls == ["stream_started", "model.error", "model.done", "stream_ended"]


async def test_a_failing_observer_never_reaches_a_slot(autojump_clock) -> None:
    class Broken:
        def __getattr__(self, name):
            raise RuntimeError("observer bug")

    hub = Hub(StreamSettings(resume_grace=0), observer=Broken())
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        stream = await hub.open("o", plans("instant"), reader=True)
        events = await collect(stream, attached=True)
        hub.close()
    assert [e.type for e in events][-2:] == ["model.done", "stream.done"]


async def test_log_lines_one_per_slot_and_stream_with_request_ids(
    start_server: StartServer, log_lines: io.StringIO,
) -> None:
    server = await start_server("[server]\nresume_grace = 0.0\n")
    async with server.client() as client:
        async with client.stream("POST", "/v1/streams",
                                 headers={**SSE, "X-Request-ID": "req-42.a"}, json={
                                     "models": ["demo/ttft=0,rate=0,tokens=400"] * 3, **ASK}) as r:
            assert r.headers["x-request-id"] == "req-42.a"
            events = [e async for e in read_events(r)]
        bad = await client.get("/healthz", headers={"X-Request-ID": "no spaces allowed"})
        given = bad.headers["x-request-id"]
        assert given != "no spaces allowed"
        assert re.fullmatch(r"[0-9a-f]{16}", given)
        assert (await client.get("/healthz")).headers["x-request-id"] != given
    assert sum(t == "delta" for _, t, _ in events) >= 3
    lines = log_lines.getvalue().splitlines()
    for line in lines:
        assert LINE.match(line), line
    info = [line for line in lines if " level=info " in line]
    assert len(info) == 4, info  # three slot.end and one stream.end, nothing per delta
    assert sum("event=slot.end" in line for line in info) == 3
    assert sum("event=stream.end" in line for line in info) == 1
    for line in info:
        assert "request_id=req-42.a" in line
        assert f"stream={events[0][2]['stream_id']}" in line
    assert "outcome=done finish=stop" in info[0]
    assert "tokens_out=400" in info[0]


def test_a_record_is_always_one_parseable_line() -> None:
    formatter = KeyValueFormatter()
    log = logging.getLogger("chorus.test")
    token = request_id.set("r1")
    try:
        record = log.makeRecord("chorus.test", logging.INFO, __file__, 1, "slot.end", (),
                                None, extra=fields(model="a b", note='say "hi"\nthen=go',
                                                   empty="", none=None, ms=1.23456,
                                                   n=7, ok=True))
        line = formatter.format(record)
        try:
            raise ValueError("boom\nwith a second line")
        except ValueError:
            import sys

            failed = log.makeRecord("chorus.test", logging.ERROR, __file__, 1,
                                    "it failed: %s", ("x",), sys.exc_info())
        error_line = formatter.format(failed)
    finally:
        request_id.reset(token)
    assert line == ('ts=' + line.split()[0][3:] + ' level=info logger=chorus.test request_id=r1'
                    ' event=slot.end model="a b" note="say \\"hi\\"\\nthen=go" empty="" '
                    'none=- ms=1.235 n=7 ok=True')
    second = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    assert line.startswith(f"ts={second}.{int(record.msecs):03d}Z ")
    assert "\n" not in error_line
    assert LINE.match(error_line)
    assert 'msg="it failed: x"' in error_line
    assert "ValueError: boom\\nwith a second line" in error_line


def test_records_skip_the_lookups_no_line_prints(log_lines) -> None:
    # The caller's file, line and function, the thread and the process are looked up for
    # every record unless logging is told not to: most of a record's cost, never printed.
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep()
    logging.getLogger().addHandler(keep)
    try:
        logging.getLogger("chorus.test").info("slot.end", extra=fields(n=1))
    finally:
        logging.getLogger().removeHandler(keep)
    [record] = records
    assert (record.funcName, record.lineno) == ("(unknown function)", 0)
    assert (record.thread, record.process, record.processName) == (None, None, None)
    assert "event=slot.end n=1" in log_lines.getvalue()


@pytest.mark.parametrize(("given", "kept"), [
    ("abc-123", True), ("a" * 128, True), ("a" * 129, False), ("", False), (None, False),
    ("x y", False), ("é", False), ("id\r\nSet-Cookie: a=b", False),
])
def test_request_ids_from_clients_are_checked(given, kept) -> None:
    assert (new_request_id(given) == given) is kept
