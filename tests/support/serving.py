"""Hypercorn's trio worker on loopback, for tests that need a real server."""

from __future__ import annotations

from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve


def loopback_config(**settings: Any) -> HypercornConfig:
    """Hypercorn's settings for a free port on 127.0.0.1, no access or error log, and
    ``settings`` on top."""
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = config.errorlog = None
    for name, value in settings.items():
        setattr(config, name, value)
    return config


async def start_serving(nursery: trio.Nursery, app: Any, config: HypercornConfig,
                        ) -> tuple[str, trio.Event, trio.Event]:
    """Serve ``app`` in ``nursery``: its address, an event that shuts it down, and one set
    once it has."""
    stop, stopped = trio.Event(), trio.Event()

    async def run(*, task_status: trio.TaskStatus[list[str]]) -> None:
        try:
            await serve(app, config, shutdown_trigger=stop.wait, task_status=task_status)
        finally:
            stopped.set()

    binds = await nursery.start(run)
    return binds[0], stop, stopped
