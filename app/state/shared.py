"""The Redis backend of the hub's shared state: any instance serves any stream.

What each instance does (docs/scaling.md):
- Its own streams: a record (owner, instance, slots, state) written before the stream
  starts, so every instance answers 404, the snapshot and the owner check the same way;
  their events written by the ``Mirror``; its lease renewed while it lives.
- Other instances' streams: found by their record, read through one follower per stream
  (``RemoteStream``), stopped by a message on the stream's control channel, which the
  running instance hears (one pattern subscription per instance) and obeys. Readers here
  are announced there (``attach``/``detach``), so a stream read only on another instance
  is not stopped for want of readers.
- A stream whose instance's lease has lapsed is ended for its readers by whichever
  instance finds it so: ``model.error`` (``connection``) for each unfinished slot, then
  ``stream.done``, written in one transaction with the next ids, so two instances racing
  to end it write it once.

Over 400 lines on purpose: the record, the lease, the control channel and the ending of
an orphaned stream are one protocol between instances, whose keys and transactions must
agree; kept in one module, one reading shows all of it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import coredis
import trio
from coredis.response.types import StreamEntry

from app.engine.events import (
    Counts,
    Event,
    ModelError,
    SlotError,
    SlotTiming,
    SlotUsage,
    StreamDone,
)
from app.engine.hub import Unavailable
from app.engine.log import EventLog, MemoryEventLog
from app.engine.wire import encode_event

from .fold import Fold
from .keys import (
    CONTROL_PATTERN,
    FENCE_ID,
    control_channel,
    entry_id,
    event_id,
    events_key,
    ids_taken,
    instance_key,
    is_stream_id,
    record_key,
    stream_of_channel,
)
from .link import DOWN, RedisLink
from .mirror import Mirror
from .remote import RemoteEntry, RemoteStream

if TYPE_CHECKING:
    from app.engine.hub import Hub
    from app.engine.stream import Stream

log = logging.getLogger("chorus.state")

T = TypeVar("T")
Client = coredis.Redis[bytes]

BLOCK = 1.0  # seconds a follower's XREAD blocks at most, then looks around
READ_COUNT = 1024  # entries one read takes at most
COMMAND_WAIT = 2.0  # seconds a request waits for Redis (its record written, a lookup)
FOLLOWER_CONNECTIONS = 1024  # blocked reads at once: one per followed stream
# Sets a Redis Stream's last id (XSETID, which coredis has no method for).
SET_LAST_ID = "return redis.call('XSETID', KEYS[1], ARGV[1])"
GONE = ("the Chorus instance running this stream stopped answering (its lease lapsed); "
        "this answer ends here")


def _digest(owner: str) -> str:
    return hashlib.sha256(owner.encode()).hexdigest()


class RedisState:
    def __init__(self, url: str, *, lease: float, retention: float) -> None:
        self.instance = secrets.token_hex(8)
        self.lease = lease
        # Timed so that a dead instance's streams end within ``lease``: its key lapses at
        # most lease/2 after its last renewal, a follower looks every lease/6, and waits
        # in a read at most lease/4 (a second at most).
        self._renew_every = lease / 6
        self._key_ttl_ms = int(lease / 2 * 1000)
        self._block_ms = int(min(BLOCK, lease / 4) * 1000)
        self.retention = retention
        self.link = RedisLink(url, name="commands")
        self.reads = RedisLink(url, name="follow", max_connections=FOLLOWER_CONNECTIONS,
                               stream_timeout=BLOCK + 5)
        self.mirror = Mirror(self.link, retention, self._taken_over)
        self.followed: dict[str, RemoteStream] = {}
        self._hub: Hub | None = None
        self._nursery: trio.Nursery | None = None
        self._outbox, self._outgoing = trio.open_memory_channel[tuple[str, bytes]](math.inf)
        # Readers on other instances of this instance's streams: stream -> instance -> when
        # last announced.
        self._remote_readers: dict[str, dict[str, float]] = {}

    # -- the hub's side (``SharedState``) ---------------------------------------------------

    def event_log(self, stream_id: str) -> EventLog:
        return MemoryEventLog(partial(self.mirror.touched, stream_id))

    async def register(self, stream: Stream) -> None:
        record = {
            "owner": _digest(stream.owner), "instance": self.instance,
            "created": str(int(stream.created)), "state": "running",
            "mode": "parallel" if stream.conversation is None else "conversation",
            "slots": json.dumps([{"slot": s.slot, "model": s.model, "label": s.plan.label}
                                 for s in stream.slots]),
        }

        async def write(client: Client) -> None:
            async with client.pipeline(transaction=False) as p:
                p.hset(record_key(stream.id), record)
                p.pexpire(record_key(stream.id), int(self.retention * 1000))

        await self._ask(write, "cannot take a new stream now")
        log_ = stream.log
        assert isinstance(log_, MemoryEventLog)
        self.mirror.track(stream.id, log_, record)

    def forget(self, stream: Stream) -> None:
        self.mirror.untrack(stream.id)
        self._remote_readers.pop(stream.id, None)

    async def flush(self) -> None:
        await self.mirror.flush()

    async def find(self, stream_id: str, owner: str) -> RemoteStream | None:
        if not is_stream_id(stream_id):
            return None
        followed = self.followed.get(stream_id)

        async def look(client: Client) -> tuple[dict[bytes, bytes], Fold, list[RemoteEntry]]:
            record = await client.hgetall(record_key(stream_id))
            if not record or not secrets.compare_digest(record.get(b"owner", b"").decode(),
                                                        _digest(owner)):
                return {}, Fold(), []
            if followed is not None:  # its log is here already
                return record, followed.fold, []
            return (record, *await _read_all(client, stream_id))

        record, fold, entries = await self._ask(look, "is not reachable")
        if not record:
            return None
        if followed is not None:
            return followed
        hub = self._hub
        assert hub is not None
        remote = RemoteStream(self, stream_id, record.get(b"instance", b"").decode(), fold,
                              hub.settings, hub.timers)
        remote.feed(entries)
        if record.get(b"state") == b"running" and not fold.done:
            await self._end_if_gone(remote)
        return remote

    async def snapshot(self, stream_id: str) -> dict[str, object]:
        fold, _ = await self._ask(partial(_read_all, stream_id=stream_id), "is not reachable")
        return fold.snapshot()

    async def _ask(self, work: Callable[[Client], Awaitable[T]], trouble: str) -> T:
        """``work`` done with the commands client on behalf of a request: shielded (a
        client leaving must not cancel a command in flight, which would cost the pool a
        connection) and bounded by its own deadline; any failure is ``Unavailable``."""
        failure: BaseException | None = None
        with trio.CancelScope(shield=True):
            with trio.move_on_after(COMMAND_WAIT) as deadline:
                try:
                    return await work(self.link.client)
                except DOWN as exc:
                    failure = exc
            if deadline.cancelled_caught:
                failure = TimeoutError(f"no answer from Redis within {COMMAND_WAIT} s")
        assert failure is not None
        self.link.failed(failure)
        raise Unavailable(f"the shared state (Redis) {trouble} ({failure}); try again "
                          "shortly") from failure

    # -- background work --------------------------------------------------------------------

    async def run(self, hub: Hub, *, task_status: trio.TaskStatus[None]) -> None:
        self._hub = hub
        async with trio.open_nursery() as nursery:
            await nursery.start(self.link.run)
            await nursery.start(self.reads.run)
            self._nursery = nursery
            nursery.start_soon(_kept, self.mirror.run)
            await nursery.start(self._renew_lease)
            nursery.start_soon(_kept, self._listen)
            nursery.start_soon(_kept, self._publish)
            task_status.started()

    def start_following(self, remote: RemoteStream) -> None:
        if remote.following or remote.done.is_set() or self._nursery is None:
            return
        self.followed[remote.id] = remote
        remote.following = True
        remote.watches.start()
        self._nursery.start_soon(self._follow, remote)

    def send_control(self, stream_id: str, message: dict[str, Any]) -> None:
        """Publish ``message`` on the stream's control channel, from the publisher task
        (a caller's cancellation never reaches a command in flight)."""
        body = json.dumps({**message, "from": self.instance}).encode()
        self._outbox.send_nowait((control_channel(stream_id), body))

    async def _follow(self, remote: RemoteStream) -> None:
        """Read the stream's new entries into ``remote`` while anyone here wants them."""
        announced = False
        checked = trio.current_time()
        try:
            while remote.wanted and not remote.done.is_set():
                readers = remote.watches.readers > 0
                if readers != announced or (readers and trio.current_time() - checked
                                            > self._renew_every):
                    self.send_control(remote.id, {"op": "attach" if readers else "detach"})
                    announced = readers
                try:
                    got = await self.reads.client.xread(
                        {events_key(remote.id): entry_id(remote.log.last_id)},
                        count=READ_COUNT, block=self._block_ms)
                except DOWN as exc:
                    self.reads.failed(exc)
                    await trio.sleep(0.5)
                    continue
                if got:
                    remote.feed([_entry(e) for entries in got.values() for e in entries])
                if trio.current_time() - checked > self._renew_every:
                    checked = trio.current_time()
                    await self._end_if_gone(remote)
        finally:
            if announced:
                self.send_control(remote.id, {"op": "detach"})
            remote.following = False
            remote.watches.stop()
            if self.followed.get(remote.id) is remote:
                del self.followed[remote.id]

    async def _renew_lease(self, *, task_status: trio.TaskStatus[None]) -> None:
        """Keep this instance's lease while it lives (taken before the first stream), and
        drop announcements of readers on instances that have not renewed theirs."""
        first = True
        while True:
            try:
                await self.link.client.set(instance_key(self.instance), b"1",
                                           px=self._key_ttl_ms)
                pause = self._renew_every
            except DOWN as exc:
                self.link.failed(exc)
                pause = min(self.lease / 20, 0.5)  # the lease is short of time: try soon
            self._expire_remote_readers()
            if first:
                first = False
                task_status.started()
            await trio.sleep(pause)

    async def _listen(self) -> None:
        """Hear every stream's control channel; obey what concerns this instance's."""
        while True:
            try:
                async with self.link.client.pubsub(
                        patterns=[CONTROL_PATTERN], ignore_subscribe_messages=True) as ps:
                    while True:
                        message = await ps.get_message()
                        if message is not None and message.get("type") == "pmessage":
                            channel, data = message["channel"], message["data"]
                            if isinstance(channel, bytes) and isinstance(data, bytes):
                                self._obey(channel.decode(), data)
            except DOWN as exc:
                self.link.failed(exc)
                await trio.sleep(0.5)

    async def _publish(self) -> None:
        async for channel, body in self._outgoing:
            try:
                await self.link.client.publish(channel, body)
            except DOWN as exc:
                self.link.failed(exc)

    def _obey(self, name: str, data: bytes) -> None:
        hub = self._hub
        stream = None if hub is None else hub.local(stream_of_channel(name))
        if stream is None:
            return  # another instance's stream
        try:
            message = json.loads(data)
            op, sender = message["op"], str(message["from"])
        except (ValueError, KeyError, TypeError):
            log.warning("control.bad_message", extra={"fields": {"channel": name}})
            return
        if op == "stop":
            slots = message.get("slots")
            if slots is None or all(isinstance(s, int) and 0 <= s < len(stream.slots)
                                    for s in slots):
                stream.stop(slots, "user")
        elif op == "skip":
            stream.skip()
        elif op in ("attach", "detach") and sender != self.instance:
            readers = self._remote_readers.setdefault(stream.id, {})
            if op == "attach":
                if sender not in readers:
                    stream.watches.attach()
                readers[sender] = trio.current_time()
            elif readers.pop(sender, None) is not None:
                stream.watches.detach()

    def _expire_remote_readers(self) -> None:
        hub, now = self._hub, trio.current_time()
        for stream_id, readers in list(self._remote_readers.items()):
            stream = None if hub is None else hub.local(stream_id)
            for sender, seen in list(readers.items()):
                if now - seen > self.lease:  # that instance stopped announcing: gone
                    del readers[sender]
                    if stream is not None:
                        stream.watches.detach()

    def _taken_over(self, stream_id: str) -> None:
        """Another instance ended this instance's running stream: its lease lapsed while
        it ran here (stalled longer than ``lease/2``). The deployment has ended it for its
        readers, so it stops here too and its upstreams are closed."""
        log.warning("stream.taken_over", extra={"fields": {"stream": stream_id}})
        stream = None if self._hub is None else self._hub.local(stream_id)
        if stream is not None:
            stream.stop(reason="shutdown")

    # -- reading and ending others' streams ---------------------------------------------------

    async def _end_if_gone(self, remote: RemoteStream) -> None:
        """If the instance running ``remote`` has lost its lease, end the stream for its
        readers. Written as one transaction at the next ids: of instances racing to do
        it, only the first one's entries go in. The stream's last id is then fenced, so
        the instance, if it was only stalled, can write nothing after the end (it sees
        the refusal and stops the stream: ``Mirror``)."""
        fold = remote.fold
        key, record = events_key(remote.id), record_key(remote.id)

        async def end(client: Client) -> bool:
            if fold.done or await client.exists([instance_key(remote.instance)]):
                return False
            events = _orphan_end(fold)
            try:
                async with client.pipeline(transaction=True) as p:
                    for n, event in enumerate(events, start=fold.last_id + 1):
                        p.xadd(key, {"w": encode_event(n, event)}, identifier=entry_id(n))
                    p.eval(SET_LAST_ID, [key], [FENCE_ID])
                    p.hset(record, {"state": "done"})
                    for k in (key, record):
                        p.pexpire(k, int(self.retention * 1000))
            except DOWN as exc:
                if ids_taken(exc):  # another instance ended it first: not a failure
                    return False
                raise
            return True

        # Called by followers and lookups alike, neither of which can do better than to
        # try again at the next look: trouble asking is logged (and the client renewed)
        # by ``_ask``, and never ends the caller.
        with contextlib.suppress(Unavailable):
            if await self._ask(end, "is not reachable"):
                log.warning("stream.orphan_ended", extra={"fields": {
                    "stream": remote.id, "instance": remote.instance}})



def _orphan_end(fold: Fold) -> list[Event]:
    """What ends a stream whose instance is gone: a ``connection`` error for each slot
    (or the current turn) still running, then ``stream.done`` with the counts."""
    error = SlotError("connection", GONE, retryable=False)
    turn = len(fold.turns) - 1 if fold.conversation else None
    unfinished = fold.unfinished()
    events: list[Event] = [ModelError(view.slot, error, SlotUsage(None, 0, True),
                                      SlotTiming(None, 0.0, None), turn)
                           for view in unfinished]
    states = [("error" if any(view is u for u in unfinished) else view.state)
              for view in (fold.turns if fold.conversation else fold.slots)]
    events.append(StreamDone(
        Counts(states.count("done"), states.count("error"), states.count("stopped")),
        round((time.time() - fold.created) * 1000, 1)))
    return events


async def _kept(task: Callable[[], Awaitable[None]]) -> None:
    """Run ``task`` again after any failure of its own: the shared state's trouble is
    logged, and never ends the hub's nursery (and every stream with it)."""
    while True:
        try:
            await task()
        except Exception:
            log.exception("state task %s failed; it starts again", task.__qualname__)
            await trio.sleep(1.0)


def _entry(entry: StreamEntry) -> RemoteEntry:
    wire = entry.field_values[b"w"]
    return RemoteEntry(event_id(entry.identifier),
                       wire if isinstance(wire, bytes) else wire.encode())


async def _read_all(client: Client, stream_id: str) -> tuple[Fold, list[RemoteEntry]]:
    """A stream's whole log in Redis, and what it says."""
    entries = [_entry(e) for e in await client.xrange(events_key(stream_id), "-", "+")]
    fold = Fold()
    for entry in entries:
        fold.feed_wire(entry.id, entry.wire)
    return fold, entries
