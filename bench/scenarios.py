"""The measurements. Each takes the running processes and returns plain figures (dicts).

Every load is bounded twice: by a count (streams, trials, tokens) and by a deadline.
Lags are client receive time minus the upstream's send stamp, on one monotonic clock.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from .client import STAMP, Response, Target, get_json, open_response, run_stream
from .load import Load, Sample, collect, pooled, run_load
from .procs import Proc
from .stats import median, summary
from .upstream import model_name

_tags = itertools.count()
PLAIN_TOKEN = re.compile(rb"(?<![\d.~])\d{3} ")


def tag(prefix: str) -> str:
    return f"{prefix}{next(_tags)}-{time.monotonic_ns()}"


@dataclass(frozen=True)
class Plan:
    """How big each measurement is; ``quick()`` is the smoke test's size."""

    concurrency: tuple[int, ...] = (1, 50, 200)
    latency_seconds: float = 6.0
    latency_grace: float = 4.0
    latency_model: str = model_name(20, 50, 40)  # 50 tokens at 25/s after 20 ms
    # The concurrency the targets are read at runs this many rounds, each server in turn
    # per round, pooled: one round's p99 moves by 10-20 % from one minute to the next here.
    # On a shared virtual machine the largest moves come from time the hypervisor gives to
    # other guests (a round with a fifth of the cores stolen had ten times the p99 of one
    # with none), so each server runs ``target_spare_rounds`` more, and the rounds with the
    # least stolen time are the ones pooled; the page shows what the others measured.
    target_concurrency: int = 50
    target_rounds: int = 3
    target_spare_rounds: int = 2
    # Stolen time comes in spells of seconds to minutes. When the floor or Chorus with one
    # slot (the servers the targets are read from) has had fewer than ``target_rounds``
    # rounds with at most ``quiet_steal_pct`` stolen, those two run up to this many more
    # rounds each, for a quiet spell to fall in; it costs nothing on a quiet machine.
    quiet_steal_pct: float = 1.0
    quiet_extra_rounds: int = 2
    saturation_streams: int = 8
    saturation_seconds: float = 5.0
    stop_trials: int = 30
    disconnect_trials: int = 10
    backlog_streams: int = 4
    backlog_seconds: float = 1.5
    rss_streams: int = 1000
    wire_lengths: tuple[int, ...] = (100, 1000, 4000)
    wall_repeats: int = 9  # each run differs by a few ms (the upstream too): a median of 9
    merge_tokens: int = 20000

    @classmethod
    def quick(cls) -> Plan:
        return cls(concurrency=(1, 5), latency_seconds=1.0, latency_grace=1.0,
                   latency_model=model_name(5, 10, 5), saturation_streams=2,
                   saturation_seconds=1.0, stop_trials=3, disconnect_trials=2,
                   target_rounds=1, target_spare_rounds=0, quiet_extra_rounds=0,
                   backlog_streams=2,
                   backlog_seconds=0.5, rss_streams=20,
                   wire_lengths=(20, 200), wall_repeats=1,
                   merge_tokens=500)


@dataclass
class Server:
    """One server under test: how to reach it and its process (``None`` for the floor)."""

    name: str
    target: Target
    proc: Proc | None
    slots: int = 1


@dataclass
class Ctx:
    plan: Plan
    upstream: Proc
    workdir: Path
    notes: list[str] = field(default_factory=list)
    profile: bool = False
    only: frozenset[str] | None = None

    def wants(self, part: str) -> bool:
        """Whether this run measures ``part`` (all parts unless ``--only`` named some)."""
        return self.only is None or part in self.only


async def upstream_records(ctx: Ctx, tags: list[str]) -> dict[str, list[dict[str, Any]]]:
    query = "&".join(f"tag={t}" for t in tags)
    _, data, _ = await get_json(ctx.upstream.port, f"/_bench/records?{query}")
    assert isinstance(data, dict)
    return data["records"]


async def open_upstream_answers(ctx: Ctx) -> int:
    _, data, _ = await get_json(ctx.upstream.port, "/_bench/records")
    assert isinstance(data, dict)
    return int(data["open"])


# -- latency under load -------------------------------------------------------------------

def _latency_load(ctx: Ctx, server: Server, concurrency: int) -> Load:
    """``concurrency`` upstream answers in flight: streams of ``server.slots`` slots each."""
    p = ctx.plan
    streams = max(1, round(concurrency / server.slots))
    return Load(streams, server.slots, p.latency_model, p.latency_seconds, p.latency_grace,
                stagger=1.0)


async def latency(ctx: Ctx, servers: list[Server], concurrency: int, rounds: int = 1,
                  spare: int = 0, *, quiet_for: frozenset[str] = frozenset(),
                  quiet_pct: float = 0.0, extra: int = 0) -> dict[str, dict[str, Any]]:
    """Each server under the same load, ``rounds + spare`` times in turn; then the servers
    named in ``quiet_for`` that have had fewer than ``rounds`` quiet rounds (``short_of_quiet``)
    run more, in turn, up to ``extra`` each. Per server, the ``rounds`` runs with the least
    stolen CPU time are pooled (``least_stolen``), and all of them pooled as well, under
    ``all_rounds``, when some were left out."""
    loads = {s.name: _latency_load(ctx, s, concurrency) for s in servers}
    samples: dict[str, list[Sample]] = {s.name: [] for s in servers}
    for _ in range(rounds + spare):
        for s in servers:
            samples[s.name].append(await collect(s.target, loads[s.name], s.proc))
    for _ in range(extra):
        short = [s for s in servers if s.name in quiet_for
                 and short_of_quiet(samples[s.name], rounds, quiet_pct)]
        if not short:
            break
        for s in short:
            samples[s.name].append(await collect(s.target, loads[s.name], s.proc))
    out = {}
    for s in servers:
        load = loads[s.name]
        kept, left_out = least_stolen(samples[s.name], rounds)
        out[s.name] = pooled(kept) | {
            "rounds": len(kept), "client_streams": load.streams,
            "upstream_answers": load.streams * load.slots,
            "rounds_run": len(samples[s.name])}
        if left_out:
            out[s.name]["left_out_steal_pct"] = [x.ticks.steal_pct for x in left_out]
            out[s.name]["all_rounds"] = pooled(samples[s.name])
    return out


def short_of_quiet(samples: list[Sample], rounds: int, quiet_pct: float) -> bool:
    """Whether fewer than ``rounds`` of the samples had at most ``quiet_pct`` of the cores'
    time stolen (a sample with no ticks counted is not known to be quiet)."""
    quiet = [x for x in samples
             if x.ticks.steal_pct is not None and x.ticks.steal_pct <= quiet_pct]
    return len(quiet) < rounds


def least_stolen(samples: list[Sample], keep: int) -> tuple[list[Sample], list[Sample]]:
    """The ``keep`` samples with the smallest share of stolen time, in the order they ran,
    and the rest. The choice looks at the machine, never at the figures measured."""
    ranked = sorted(range(len(samples)), key=lambda i: (samples[i].ticks.steal_pct or 0.0, i))
    chosen = set(ranked[:keep])
    return ([x for i, x in enumerate(samples) if i in chosen],
            [x for i, x in enumerate(samples) if i not in chosen])


# -- saturation -----------------------------------------------------------------------------

async def saturation(ctx: Ctx, server: Server) -> dict[str, Any]:
    """Upstreams as fast as the socket takes tokens; streams cut at the deadline."""
    p = ctx.plan
    model = model_name(0, 10_000_000, 0, max_s=p.saturation_seconds + 5)
    # Each client opens one stream (started within the first 0.5 s), cut at the deadline.
    load = Load(p.saturation_streams, server.slots, model, 0.5, p.saturation_seconds,
                stagger=0.0)
    out = await run_load(server.target, load, server.proc)
    return out


# -- the merge loop under 9 full-speed slots -----------------------------------------------

async def merge_wait(ctx: Ctx, server: Server, probe_file: Path) -> dict[str, Any]:
    """9 slots of one stream at full speed (and at 1000 tokens/s each): how long the merge
    loop ever let an item wait (the in-process probe), and the worst token lag outside."""
    p = ctx.plan
    out: dict[str, Any] = {}
    for label, model in (("full_speed", model_name(0, p.merge_tokens, 0, max_s=30)),
                         ("1000_per_s", model_name(0, min(p.merge_tokens, 3000), 1, max_s=30))):
        probe_file.write_text("")  # noqa: ASYNC240 - a tiny local file, between runs
        with trio.move_on_after(60):
            result = await run_stream(server.target, model, tag("M"), 9)
        await trio.sleep(0.2)
        text = probe_file.read_text()  # noqa: ASYNC240
        lines = [json.loads(x) for x in text.splitlines() if x.strip()]
        out[label] = {
            "tokens": result.tokens,
            "complete": result.complete,
            "probe": lines[-1] if lines else None,
            "max_token_lag_ms": round(result.max_lag_us / 1000, 3),
            "token_lag_ms": summary(list(result.lags_us), 1e-3),
        }
    return out


# -- wall time: 9 slots at once vs the slowest alone vs one after another ------------------

NINE = [model_name(20 + 10 * i, 20 + 5 * i, 10) for i in range(9)]


async def wall_time(ctx: Ctx, direct: Server, chorus: Server) -> dict[str, Any]:
    reps = ctx.plan.wall_repeats
    slowest, parallel, sequential, fan_out = [], [], [], []
    arrivals: list[list[float]] = []
    tails: list[float] = []
    for _ in range(reps):
        r = await run_stream(direct.target, NINE[-1], tag("W"))
        slowest.append((r.end_ns - r.sent_ns) / 1e6)
        started = time.monotonic_ns()
        async with trio.open_nursery() as nursery:
            for model in NINE:
                nursery.start_soon(run_stream, direct.target, model, tag("W"))
        fan_out.append((time.monotonic_ns() - started) / 1e6)
        t = tag("W")
        r = await _nine(chorus, t)
        parallel.append((r.end_ns - r.sent_ns) / 1e6)
        # Where Chorus's extra time goes: when each upstream request arrived, and how long
        # after the slowest model's last token the stream ended at the client.
        recs = sorted((await upstream_records(ctx, [t]))[t], key=lambda x: x["received_ns"])
        arrivals.append([round((x["received_ns"] - r.sent_ns) / 1e6, 2) for x in recs])
        tails.append(round((r.end_ns - max(x["last_send_ns"] or 0 for x in recs)) / 1e6, 2))
        started = time.monotonic_ns()
        for model in NINE:
            await run_stream(direct.target, model, tag("W"))
        sequential.append((time.monotonic_ns() - started) / 1e6)
    s, p, q, f = median(slowest), median(parallel), median(sequential), median(fan_out)
    assert s is not None
    assert p is not None
    assert q is not None
    assert f is not None
    return {
        "models": NINE,
        "slowest_alone_ms": round(s, 2), "chorus_9_slots_ms": round(p, 2),
        "sequential_ms": round(q, 2), "direct_parallel_ms": round(f, 2),
        "chorus_overhead_ms": round(p - s, 2),
        "upstream_requests_arrived_ms": arrivals[len(arrivals) // 2],
        "last_token_to_stream_end_ms": median(tails),
        "runs": {"slowest_alone": slowest, "chorus": parallel, "sequential": sequential,
                 "direct_parallel": fan_out},
    }


async def _nine(chorus: Server, label: str) -> Any:
    """One Chorus stream with the nine different models."""
    t = chorus.target
    body = json.dumps({"models": [f"fake/{m}" for m in NINE],
                       "messages": [{"role": "user", "content": label}]}).encode()
    raw = (f"POST /v1/streams HTTP/1.1\r\nHost: {t.host}:{t.port}\r\n"
           "Accept: text/event-stream\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    class Done:
        sent_ns = 0
        end_ns = 0

    done = Done()
    response = await open_response(t, raw)
    done.sent_ns = response.sent_ns
    try:
        while await response.read() is not None:
            pass
        done.end_ns = time.monotonic_ns()
    finally:
        await response.aclose()
    return done


# -- stop and disconnect --------------------------------------------------------------------

async def _read_tokens(response: Response, want: int) -> int:
    got = 0
    while got < want:
        item = await response.read()
        if item is None:
            break
        got += len(STAMP.findall(item[1]))
    return got


async def _closed_after(ctx: Ctx, tags: list[str], t0: int, within: float,
                        expect: int = 1) -> list[float | None]:
    """Milliseconds from ``t0`` until the upstream saw each answer closed (``None``: not
    within ``within`` seconds, or the answer finished instead). The upstream is another
    process: it is asked over HTTP every 5 ms."""
    deadline = time.monotonic() + within
    while True:
        records = await upstream_records(ctx, tags)
        closes: list[float | None] = []
        pending = False
        for t in tags:
            recs = records.get(t, [])
            if len(recs) < expect:
                pending = True
            for r in recs:
                if r["closed_ns"] is not None:
                    closes.append((r["closed_ns"] - t0) / 1e6)
                elif r["finished"]:
                    closes.append(None)
                else:
                    pending = True
        if not pending or time.monotonic() > deadline:
            missing = sum(max(0, expect - len(records.get(t, []))) for t in tags)
            n_open = sum(1 for t in tags for r in records.get(t, [])
                         if r["closed_ns"] is None and not r["finished"])
            return closes + [None] * (missing + n_open)
        await trio.sleep(0.005)


async def _wait_request(ctx: Ctx, t: str, count: int = 1, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if len((await upstream_records(ctx, [t])).get(t, [])) >= count:
            return
        await trio.sleep(0.005)


async def stop_latency(ctx: Ctx, chorus: Server, background: Server | None = None) -> dict:
    """``POST /v1/streams/{id}/stop`` → the upstream connection closed, over N trials
    (with ``background`` given, while 20 other streams run)."""
    p = ctx.plan
    lags: list[float] = []
    answered: list[float] = []
    failed = 0
    model = model_name(5, 100_000, 10, max_s=30)

    async def trials() -> None:
        nonlocal failed
        for _ in range(p.stop_trials):
            t = tag("S")
            try:
                response = await open_response(chorus.target, chorus.target.request(model, t))
            except (OSError, trio.TooSlowError):
                failed += 1
                continue
            try:
                stream_id = response.headers.get("x-chorus-stream-id", "")
                with trio.move_on_after(5):
                    await _read_tokens(response, 3)
                t0 = time.monotonic_ns()
                status, _, seconds = await get_json(chorus.target.port,
                                                    f"/v1/streams/{stream_id}/stop", "POST", {})
                answered.append(seconds * 1000)
                closes = await _closed_after(ctx, [t], t0, 3.0)
                if status != 200 or closes[0] is None:
                    failed += 1
                else:
                    lags.append(closes[0])
            finally:
                await response.aclose()

    if background is None:
        await trials()
    else:
        async with trio.open_nursery() as nursery:
            bg = Load(20, 1, ctx.plan.latency_model, 1e9, 0.0, stagger=1.0)
            nursery.start_soon(run_load, background.target, bg, None)
            await trio.sleep(1.0)
            await trials()
            nursery.cancel_scope.cancel()
    return {"trials": p.stop_trials, "failed": failed,
            "upstream_closed_ms": summary(lags), "stop_answered_ms": summary(answered)}


async def disconnect(ctx: Ctx, server: Server, healthz: bool = False) -> dict[str, Any]:
    """Client closes → every upstream answer of the stream closed, in three situations."""
    p = ctx.plan
    slots = server.slots
    out: dict[str, Any] = {}

    # 1. Mid-answer, keeping up: after 3 tokens of a 100/s answer.
    # 2. Before the first token (the model is still "thinking": nothing is being written).
    for mode, model in (("streaming", model_name(5, 100_000, 10, max_s=30)),
                        ("before_first_token", model_name(20_000, 10, 10, max_s=30))):
        lags: list[float | None] = []
        for _ in range(p.disconnect_trials):
            t = tag("D")
            raw = server.target.request(model, t, slots)
            try:
                if mode == "streaming":
                    response = await open_response(server.target, raw)
                    conn = response.stream
                    with trio.move_on_after(5):
                        await _read_tokens(response, 3)
                else:
                    # Some servers send no response head before the first token (an OpenAI
                    # front door that still can answer an error with a status): don't wait.
                    conn = await trio.open_tcp_stream(server.target.host, server.target.port)
                    await conn.send_all(raw)
                    await _wait_request(ctx, t, slots)
                    await trio.sleep(0.05)
            except (OSError, trio.TooSlowError):
                lags.append(None)
                continue
            t0 = time.monotonic_ns()
            with trio.CancelScope(shield=True):
                await conn.aclose()
            lags.append(_worst(await _closed_after(ctx, [t], t0, 3.0, slots)))
        out[mode] = _lag_summary(lags)

    # 3. Behind: clients that stopped reading (small receive windows, so the server is
    #    behind them within kilobytes) while their upstreams go on, 1000 tokens/s in all;
    #    then they all leave at once. 4. The same with upstreams at full speed: the
    #    server's core is saturated too (and so is the upstream's, which then notices late).
    answers = p.backlog_streams * slots
    out["backlogged"] = await _backlogged(ctx, server, healthz, gap_ms=answers)
    out["backlogged_full_speed"] = await _backlogged(ctx, server, healthz, gap_ms=0)
    return out


async def _backlogged(ctx: Ctx, server: Server, healthz: bool, gap_ms: float) -> dict[str, Any]:
    p = ctx.plan
    path = server.target.health_path
    idle: list[float] = []
    for _ in range(10 if healthz else 0):  # the same check with nothing running: the floor
        _, _, seconds = await get_json(server.target.port, path)
        idle.append(seconds * 1000)
        await trio.sleep(0.02)
    tags = [tag("B") for _ in range(p.backlog_streams)]
    model = model_name(0, 10_000_000, gap_ms, max_s=p.backlog_seconds + 6)
    responses = []
    for t in tags:
        try:
            responses.append(await open_response(server.target, server.target.request(
                model, t, server.slots), rcvbuf=4096))
        except (OSError, trio.TooSlowError):
            continue
    for r in responses:
        with trio.move_on_after(2):
            await r.read()  # one read, then no more: the server falls behind
    health: list[float] = []
    end = time.monotonic() + p.backlog_seconds
    while time.monotonic() < end:
        if healthz:
            _, _, seconds = await get_json(server.target.port, path)
            health.append(seconds * 1000)
        await trio.sleep(0.05)
    records = await upstream_records(ctx, tags)
    sent_before = sum(r["tokens_sent"] for t in tags for r in records.get(t, []))
    read = sum(r.wire_bytes for r in responses)
    # One client leaves at a time (the others keep the server behind): each trial is the
    # time until every upstream answer of that client's stream was closed.
    per_client: list[float | None] = []
    for t, r in zip(tags, responses, strict=False):
        t0 = time.monotonic_ns()
        await r.aclose()
        per_client.append(_worst(await _closed_after(ctx, [t], t0, 3.0, server.slots)))
        await trio.sleep(0.1)
    out: dict[str, Any] = _lag_summary(per_client)
    out["streams"] = len(tags)
    out["upstream_tokens_sent_while_behind"] = sent_before
    out["client_bytes_read"] = read
    if healthz:
        out["healthz_ms"] = summary(health)
        out["healthz_idle_ms"] = summary(idle)
    return out


def _worst(values: list[float | None]) -> float | None:
    if not values or any(v is None for v in values):
        return None
    return max(v for v in values if v is not None)


def _lag_summary(values: list[float | None]) -> dict[str, Any]:
    closed = [v for v in values if v is not None]
    out = summary(closed)
    out["trials"] = len(values)
    out["never_closed"] = len(values) - len(closed)
    return out


# -- memory ---------------------------------------------------------------------------------

async def memory(ctx: Ctx, server: Server, streams: int) -> dict[str, Any]:
    """RSS idle, after one stream, and with ``streams`` slow streams open."""
    assert server.proc is not None
    proc = server.proc
    await get_json(server.target.port, server.target.health_path)
    idle = proc.rss_kb()
    await run_stream(server.target, model_name(1, 20, 0), tag("R"))
    warm = proc.rss_kb()
    ready = 0
    model = model_name(100, 100, 10_000, max_s=60)
    held: list[Response] = []
    t_open = time.monotonic()
    limiter = trio.CapacityLimiter(50)  # connects in waves, within the listen backlog

    async def hold() -> None:
        nonlocal ready
        async with limiter:
            try:
                response = await open_response(server.target,
                                               server.target.request(model, tag("H")))
            except (OSError, trio.TooSlowError):
                return
            held.append(response)
            if response.status == 200:
                ready += 1

    with trio.move_on_after(30):
        async with trio.open_nursery() as nursery:
            for _ in range(streams):
                nursery.start_soon(hold)
    opened_s = time.monotonic() - t_open
    # Until every upstream answer has begun (Chorus opens them right after the request).
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and await open_upstream_answers(ctx) < ready:  # noqa: ASYNC110
        await trio.sleep(0.1)
    await trio.sleep(0.5)
    upstream_open = await open_upstream_answers(ctx)
    loaded = proc.rss_kb()
    t0 = time.monotonic()
    for response in held:
        await response.aclose()
    while time.monotonic() - t0 < 10 and await open_upstream_answers(ctx) > 0:  # noqa: ASYNC110
        await trio.sleep(0.02)
    all_closed_s = time.monotonic() - t0
    left = await open_upstream_answers(ctx)
    return {
        "idle_kb": idle, "after_one_stream_kb": warm, "streams_open": ready,
        "upstream_answers_open": upstream_open, "loaded_kb": loaded,
        "kb_per_stream": round((loaded - warm) / ready, 1) if ready else None,
        "open_seconds": round(opened_s, 2),
        "all_upstreams_closed_after_clients_left_s": round(all_closed_s, 3),
        "upstream_answers_left_open": left,
    }


# -- bytes on the wire ----------------------------------------------------------------------

async def wire_bytes(ctx: Ctx, server: Server) -> dict[str, Any]:
    """Bytes received (headers, framing, events) per byte of answer text, by length."""
    out = {}
    for n in ctx.plan.wire_lengths:
        chars = 4
        r = await run_stream(server.target, model_name(0, n, 1, stamped=False, chars=chars),
                             tag("X"), keep_body=True, deadline_ns=time.monotonic_ns() + 30 * 10**9)
        # Every token is three digits and a space (JSON needs no escape for it), so the text
        # that arrived can be counted in the body whatever the framing, coalesced or not.
        text = len(PLAIN_TOKEN.findall(r.body or b"")) * chars
        out[str(n)] = {"wire_bytes": r.wire_bytes, "text_bytes": text, "expected": n * chars,
                       "per_text_byte": round(r.wire_bytes / text, 2) if text else None,
                       "complete": r.complete and text == n * chars}
    return out
