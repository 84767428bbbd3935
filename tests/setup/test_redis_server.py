"""The ``redis_server`` fixture: a real Redis that answers, restarts empty on its port, and
can be frozen."""

from __future__ import annotations

import coredis
import pytest
import trio

from ..support.redis import RedisServer, answers_ping


async def test_it_answers_and_restarts_empty_on_the_same_port(redis_server: RedisServer) -> None:
    with trio.fail_after(10):
        async with coredis.Redis.from_url(redis_server.url, decode_responses=True) as client:
            assert await client.ping() == "PONG"
            await client.set("kept", "no")
    port = redis_server.port
    redis_server.restart()
    assert redis_server.port == port
    assert redis_server.url == f"redis://127.0.0.1:{port}/0"
    with trio.fail_after(10):
        async with coredis.Redis.from_url(redis_server.url, decode_responses=True) as client:
            assert await client.ping() == "PONG"
            assert await client.get("kept") is None


def test_a_frozen_redis_does_not_answer_until_thawed(redis_server: RedisServer) -> None:
    redis_server.freeze()
    assert not answers_ping(redis_server.port, timeout=0.3)
    redis_server.thaw()
    assert answers_ping(redis_server.port, timeout=5)


def test_stop_and_kill_end_it(redis_server: RedisServer) -> None:
    redis_server.stop()
    assert not answers_ping(redis_server.port)
    redis_server.start()
    assert answers_ping(redis_server.port)
    redis_server.kill()
    assert not answers_ping(redis_server.port)


def test_without_redis_server_installed_the_fixture_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(Exception, match="apt-get install -y redis-server"):
        RedisServer()
