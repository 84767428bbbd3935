"""One Redis client that is replaced after any failure.

coredis 6.9 drops a connection closed while checked out (a command cancelled in flight, a
timeout, a Redis restart) without giving its pool slot back; after ``max_connections``
of them every command waits for a slot forever. Chorus never cancels a command in normal
operation, and when one fails anyway it stops using that client: the next commands go to
a fresh client (a fresh pool), opened before the old one is closed. Public API only.
"""

from __future__ import annotations

import logging
from typing import Any

import coredis
import trio

log = logging.getLogger("chorus.state")

CONNECT_TIMEOUT = 2.0  # seconds to open a connection to Redis
POOL_TIMEOUT = 2.0  # seconds a command waits for a free connection, then fails
RETRY = (0.1, 2.0)  # seconds between attempts to open a client: first, at most
# Seconds a replaced client stays open for the commands still in flight on it: every
# command Chorus sends ends within this (a request's own wait is 2 s; a follower's blocked
# read, ``BLOCK``, 1 s).
RETIRE_GRACE = 5.0

# What a failing Redis raises through coredis (or the socket below it).
FAILURES: tuple[type[BaseException], ...] = (
    coredis.exceptions.RedisError, OSError, TimeoutError, trio.BrokenResourceError)


class Unreachable(Exception):
    """No working Redis client at the moment."""


# Everything that means "Redis is not answering now", ``Unreachable`` included. coredis
# raises some failures grouped (from its task group); a group of plain exceptions (never
# one holding a cancellation) is taken as one.
DOWN: tuple[type[BaseException], ...] = (*FAILURES, Unreachable, ExceptionGroup)
_CHECK_FAILURES: tuple[type[BaseException], ...] = (*FAILURES, trio.TooSlowError)


class RedisLink:
    """A coredis client kept open by ``run``, renewed on ``failed``."""

    def __init__(self, url: str, *, name: str, max_connections: int = 64,
                 stream_timeout: float = 5.0) -> None:
        self.url = url
        self.name = name
        self._options: dict[str, Any] = {
            "max_connections": max_connections, "pool_timeout": POOL_TIMEOUT,
            "stream_timeout": stream_timeout, "connect_timeout": CONNECT_TIMEOUT,
        }
        self._client: coredis.Redis[bytes] | None = None
        self._renew = trio.Event()
        self.renewals = 0  # clients replaced after a failure, for metrics and tests

    @property
    def client(self) -> coredis.Redis[bytes]:
        if self._client is None:
            raise Unreachable(f"Redis at {self.url} is not reachable")
        return self._client

    def failed(self, exc: BaseException) -> None:
        """A command on the current client failed: use a fresh client from now on. (No
        client open, ``Unreachable``: there is nothing to renew.)"""
        if isinstance(exc, Unreachable):
            return
        if self._client is not None and not self._renew.is_set():
            log.warning("redis.failed", extra={"fields": {"link": self.name,
                                                          "error": repr(exc)}})
            self._renew.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Hold a client open until cancelled, renewing it after each failure. Reports
        started after the first attempt to open one, whether it worked or not: until a
        client is open, commands raise ``Unreachable``.

        A renewal opens the new client before it lets the old one go (make before break):
        commands asked for meanwhile still have a client, and those in flight on the old
        one get ``RETIRE_GRACE`` to end before its pool closes under them. Only when no new
        client can be opened (Redis is gone) do commands find none, and fail at once."""
        delay = RETRY[0]
        started = False
        retire_old: trio.Event | None = None
        async with trio.open_nursery() as nursery:
            while True:
                client = coredis.Redis.from_url(self.url, decode_responses=False,
                                                **self._options)
                retire: trio.Event | None = None
                try:
                    retire = await nursery.start(self._hold, client)
                except* FAILURES as group:  # the client's own task group raises them grouped
                    log.warning("redis.unreachable", extra={"fields": {
                        "link": self.name, "error": repr(group.exceptions[0])}})
                # The old client goes either way: replaced, or with nothing to replace it.
                if retire_old is not None:
                    retire_old.set()
                retire_old = retire
                self._client = None if retire is None else client
                if not started:
                    started = True
                    task_status.started()
                if retire is None:
                    await trio.sleep(delay)
                    delay = min(delay * 2, RETRY[1])
                    continue
                self._renew, delay = trio.Event(), RETRY[0]
                await self._renew.wait()
                self.renewals += 1

    async def _hold(self, client: coredis.Redis[bytes], *,
                    task_status: trio.TaskStatus[trio.Event]) -> None:
        """Keep ``client`` open until told to retire it (and ``RETIRE_GRACE`` after). A
        failure to open it is the starter's to see; a failure later is logged, and the
        link moves to a fresh client if this one was still in use."""
        retire = trio.Event()
        opened = False
        try:
            async with client:
                await client.ping()
                opened = True
                task_status.started(retire)
                await retire.wait()
                await trio.sleep(RETIRE_GRACE)
        except* FAILURES as group:
            if not opened:
                raise
            log.warning("redis.client_failed", extra={"fields": {
                "link": self.name, "error": repr(group.exceptions[0])}})
            if self._client is client:
                self._renew.set()
        finally:
            if self._client is client:
                self._client = None


CHECK_WAIT = 3.0  # seconds ``check`` gives Redis to answer


async def check(url: str) -> str | None:
    """``None`` if Redis at ``url`` answers a PING within ``CHECK_WAIT``; else why not."""
    client = coredis.Redis.from_url(url, decode_responses=False,
                                    connect_timeout=CHECK_WAIT, stream_timeout=CHECK_WAIT)
    why: list[BaseException] = []
    try:
        with trio.fail_after(CHECK_WAIT + 1):
            async with client:
                await client.ping()
    except* _CHECK_FAILURES as group:
        why = list(group.exceptions)
    if not why:
        return None
    return f"{type(why[0]).__name__}: {why[0]}" if str(why[0]) else type(why[0]).__name__
