"""The Redis client a process keeps (``RedisLink``), against a real ``redis-server``: after
a failed command it moves to a fresh client without a moment with none, and with Redis
gone it says so at once, then comes back by itself."""

from __future__ import annotations

import pytest
import trio

from app.state.link import RedisLink, Unreachable

from ..support.redis import RedisServer


async def test_a_renewal_opens_the_new_client_before_the_old_one_closes(
    redis_server: RedisServer, nursery: trio.Nursery,
) -> None:
    link = RedisLink(redis_server.url, name="test")
    await nursery.start(link.run)
    old = link.client
    link.failed(TimeoutError("a command took too long"))
    with trio.fail_after(10):
        while link.client is old:
            # Meanwhile every command finds a client, and the old one still works.
            assert await link.client.ping()
            await trio.lowlevel.checkpoint()
    assert await link.client.ping()
    assert await old.ping()  # commands in flight on it get their grace
    assert link.renewals == 1


async def test_with_redis_gone_commands_fail_at_once_then_a_client_comes_back(
    redis_server: RedisServer, nursery: trio.Nursery,
) -> None:
    link = RedisLink(redis_server.url, name="test")
    await nursery.start(link.run)
    await trio.to_thread.run_sync(redis_server.stop)
    with pytest.raises(Exception):  # noqa: B017,PT011 (whatever coredis raises)
        await link.client.ping()
    link.failed(ConnectionError("Redis closed the connection"))
    for _ in range(1000):  # until the link has let the old client go (10 s at most)
        try:
            link.client  # noqa: B018
        except Unreachable:
            break
        await trio.sleep(0.01)
    with pytest.raises(Unreachable, match=redis_server.url):
        link.client  # noqa: B018
    await trio.to_thread.run_sync(redis_server.start)
    with trio.fail_after(15):
        while True:
            try:
                assert await link.client.ping()
                break
            except Unreachable:
                await trio.sleep(0.05)
