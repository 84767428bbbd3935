"""Ctrl-C while a command reads a stream, the same for ``chorus ask`` and its conversation.

The first Ctrl-C asks the source to stop every slot (the upstreams close) and gives the
last events ``STOP_WAIT`` seconds to arrive; a second one leaves at once, even while the
stop call itself is still pending.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from .sources import Source

STOP_WAIT = 3.0  # seconds to wait for the stopped slots' last events after Ctrl-C


@dataclass(slots=True)
class Interrupt:
    interrupted: bool = False  # Ctrl-C was pressed: the run ends as stopped (exit 130)


@asynccontextmanager
async def stop_on_ctrl_c(source: Source) -> AsyncIterator[Interrupt]:
    """Read ``source`` inside: Ctrl-C stops it as above. The body is cancelled when the
    wait is over (or at the second Ctrl-C), and the block then ends quietly.

    Signals reach only the main thread, so elsewhere (a command run from a worker thread)
    Ctrl-C is left alone.
    """
    interrupt = Interrupt()
    with trio.CancelScope() as reading:
        async with trio.open_nursery() as nursery:
            if threading.current_thread() is threading.main_thread():
                nursery.start_soon(_watch, source, reading, interrupt)
            yield interrupt
            nursery.cancel_scope.cancel()


async def _watch(source: Source, reading: trio.CancelScope, interrupt: Interrupt) -> None:
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            async for _ in signals:
                if interrupt.interrupted:
                    reading.cancel()
                    return
                interrupt.interrupted = True
                reading.deadline = trio.current_time() + STOP_WAIT
                # In a task of its own: a stop call that hangs must not keep this loop
                # from hearing the second Ctrl-C.
                nursery.start_soon(_stop, source, reading)


async def _stop(source: Source, reading: trio.CancelScope) -> None:
    if not await source.stop():
        reading.cancel()  # no stream yet: leaving closes the request, which is the stop
