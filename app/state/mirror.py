"""The running instance's side: its streams' events written to Redis as they are logged.

Local readers read the log in memory and never wait for Redis. One task writes every
stream's new entries in one pipeline per round: while a round trip is out, the entries
logged meanwhile (by any stream) gather for the next one, so a busy instance sends fewer,
larger pipelines, never one per token. A failed round (Redis gone, restarted, slow) is
retried with a fresh client; first it asks Redis how far each stream got (a restarted
Redis may have lost everything) and goes on from there, rewriting the record too. A stream
that Redis says is done while it still runs here was ended by another instance (this one
stalled past its lease): it is let go, and its owner told, never written on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio
from coredis.tokens import PureToken

from app.engine.log import MemoryEventLog

from .keys import entry_id, event_id, events_key, ids_taken, record_key
from .link import DOWN, RedisLink

log = logging.getLogger("chorus.state")

MAX_ROUND = 4096  # entries written per stream per round, at most
MAX_ENTRIES = 100_000  # a stream's Redis Stream is trimmed (approximately) past this
RUNNING_TTL = 24 * 3600.0  # a running stream's keys live this long from its first write (set once)
RETRY = 0.5  # seconds before a failed round is tried again
# A round costs the client about 0.6 ms of CPU whatever it carries (coredis 6.9 under
# trio), so changes are gathered this long before one starts: at a few tokens per stream a
# second that is a handful of rounds a second instead of one per token, for readers on
# other instances a few milliseconds later (``bench.scale``). Local readers never wait.
GATHER = 0.005


@dataclass(slots=True)
class Mirrored:
    stream_id: str
    log: MemoryEventLog
    record: dict[str, str]  # the stream's record, for a rewrite after a Redis restart
    written: int = 0  # entries known to be in Redis
    finished: bool = False  # every entry written and the record says done
    forgotten: bool = False  # the hub let it go: drop it once finished
    expiring: bool = False  # its keys' running expiry is set (once, not every round)


class Mirror:
    def __init__(self, link: RedisLink, retention: float,
                 taken_over: Callable[[str], None]) -> None:
        """``taken_over(stream_id)``: another instance ended a stream running here."""
        self._link = link
        self._taken_over = taken_over
        self._retention = retention
        self._tracked: dict[str, Mirrored] = {}
        self._dirty: dict[str, Mirrored] = {}  # ordered: the oldest change first
        self._changed = trio.Event()
        self._resync = False
        self.rounds = 0  # pipelines sent, for metrics and tests
        self._idle = trio.Event()
        self._idle.set()

    @property
    def tracked(self) -> int:
        """Streams whose logs are being, or were, written here and are not yet let go."""
        return len(self._tracked)

    def track(self, stream_id: str, event_log: MemoryEventLog, record: dict[str, str],
              written: int = 0) -> None:
        self._tracked[stream_id] = Mirrored(stream_id, event_log, record, written)
        if event_log.last_id > written or event_log.closed:
            self.touched(stream_id)

    def touched(self, stream_id: str) -> None:
        """The stream's log has new entries (or closed): write them in the next round."""
        m = self._tracked.get(stream_id)
        if m is not None and not m.finished:
            self._dirty[stream_id] = m
            if self._idle.is_set():
                self._idle = trio.Event()
            self._changed.set()

    def untrack(self, stream_id: str) -> None:
        """The stream is forgotten here: write what is left, then let it go."""
        m = self._tracked.get(stream_id)
        if m is not None:
            m.forgotten = True
            if m.finished:
                self._drop(m)

    async def flush(self) -> None:
        """Until every change so far is written (or Redis is gone: bounded by the caller)."""
        await self._idle.wait()

    async def run(self) -> None:
        while True:
            await self._changed.wait()
            await trio.sleep(GATHER)
            self._changed = trio.Event()
            batch, self._dirty = self._dirty, {}
            try:
                if self._resync:
                    await self._sync(list(self._tracked.values()))
                    self._resync = False
                await self._round(list(batch.values()))
            except DOWN as exc:
                if not ids_taken(exc):  # a refused id is no fault of the client's
                    self._link.failed(exc)
                self._resync = True
                self._dirty = {**batch, **self._dirty}
                await trio.sleep(RETRY)
                self._changed.set()
                continue
            if not self._dirty:
                self._idle.set()

    async def _round(self, batch: list[Mirrored]) -> None:
        """One pipeline: each stream's new entries, its expiry, its record when done."""
        work = []
        async with self._link.client.pipeline(transaction=False) as p:
            for m in batch:
                wires = m.log.wires_since(m.written, MAX_ROUND)
                key = events_key(m.stream_id)
                for n, wire in enumerate(wires, start=m.written + 1):
                    p.xadd(key, {"w": wire}, identifier=entry_id(n),
                           trim_strategy=PureToken.MAXLEN, threshold=MAX_ENTRIES,
                           trim_operator=PureToken.APPROXIMATELY)
                upto = m.written + len(wires)
                ending = m.log.closed and upto == m.log.last_id
                if ending:
                    p.hset(record_key(m.stream_id), {"state": "done"})
                if ending or not m.expiring:  # running: a day; ended: its retention
                    ttl = int((self._retention if ending else RUNNING_TTL) * 1000)
                    for k in (key, record_key(m.stream_id)):
                        p.pexpire(k, max(ttl, 1))
                work.append((m, upto, ending))
        self.rounds += 1
        for m, upto, ending in work:
            m.written, m.expiring = upto, True
            if ending:
                m.finished = True
                if m.forgotten:
                    self._drop(m)
            elif upto < m.log.last_id:
                self._dirty[m.stream_id] = m  # more than one round's worth: go on
                self._changed.set()

    async def _sync(self, tracked: list[Mirrored]) -> None:
        """After a failure: how far each stream got in Redis; its record written again,
        unless another instance ended the stream meanwhile."""
        client = self._link.client
        async with client.pipeline(transaction=False) as p:
            for m in tracked:
                p.xrevrange(events_key(m.stream_id), "+", "-", count=1)
                p.hget(record_key(m.stream_id), "state")
        found: tuple[Any, ...] = tuple(p.results or ())
        ours = []
        for m, top, state in zip(tracked, found[0::2], found[1::2], strict=False):
            if state == b"done" and not m.log.closed:
                self._drop(m)
                self._taken_over(m.stream_id)
                continue
            m.written = event_id(top[0].identifier) if top else 0
            m.finished = m.expiring = False
            self._dirty[m.stream_id] = m
            ours.append(m)
        if ours:
            async with client.pipeline(transaction=False) as p:
                for m in ours:
                    p.hset(record_key(m.stream_id), m.record)
        log.info("redis.resynced", extra={"fields": {"streams": len(ours),
                                                      "ended_elsewhere": len(tracked) - len(ours)}})

    def _drop(self, m: Mirrored) -> None:
        self._tracked.pop(m.stream_id, None)
        self._dirty.pop(m.stream_id, None)
