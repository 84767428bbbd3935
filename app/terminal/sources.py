"""Where ``chorus ask`` gets its events: a running server, or the engine in this process.

Both give the same ``(id, type, data)`` events as the SSE contract, and both ``stop()``
every slot (reason ``user``) so that the upstreams close and the last events still arrive.

    SourceError            the request cannot go on (exit 1)
    └── RequestRefused     the server or the catalog refused it as given (exit 2)
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import trio

from app.config import GROUP_PREFIX, Config
from providers import Message
from providers.sse import SSEDecoder

if TYPE_CHECKING:
    from app.engine import Stream

Event = tuple[int, str, dict[str, Any]]

STOP_TIMEOUT = 3.0  # seconds a stop request may take


class SourceError(Exception):
    """The events cannot be had: the server is unreachable or the stream broke off."""


class RequestRefused(SourceError):
    """The request was refused as given (unknown model, bad parameter, wrong key)."""


class Source(Protocol):
    def events(self) -> AsyncIterator[Event]: ...

    async def stop(self) -> bool:
        """Stop every slot; ``False`` if there is nothing to stop yet (no stream)."""
        ...


@dataclass(frozen=True, slots=True)
class Target:
    """One slot to run: a model ref and the messages it is sent (its own history)."""

    model: str
    messages: tuple[Message, ...]


def targets(models: Sequence[str], messages: Sequence[Message]) -> list[Target]:
    """The same messages for every model."""
    return [Target(model, tuple(messages)) for model in models]


def stream_body(slots: Sequence[Target], params: dict[str, Any]) -> dict[str, Any]:
    """The ``POST /v1/streams`` body: the messages once when every model is sent the same,
    else each target with its own. One ``group:NAME`` is sent as the group, which the
    server (or the planner here) expands to its members."""
    def wire(messages: Sequence[Message]) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.content} for m in messages]

    if len(slots) == 1 and slots[0].model.startswith(GROUP_PREFIX):
        return {"models": slots[0].model, "messages": wire(slots[0].messages),
                "params": params}
    if len({t.messages for t in slots}) == 1:
        return {"models": [t.model for t in slots], "messages": wire(slots[0].messages),
                "params": params}
    return {"models": [{"model": t.model, "messages": wire(t.messages)} for t in slots],
            "params": params}


def server_client(url: str, key: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    # No read timeout: a model may think for minutes, and the server pings meanwhile.
    return httpx.AsyncClient(base_url=url.rstrip("/"), headers=headers,
                             timeout=httpx.Timeout(10, read=None))


def refusal(response: httpx.Response) -> SourceError:
    """The error a non-2xx answer stands for, with the server's message."""
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:200] or response.reason_phrase
    kind = RequestRefused if 400 <= response.status_code < 500 else SourceError
    return kind(f"the server answered {response.status_code}: {message}")


async def server_models(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The server's ``GET /v1/models`` list."""
    data: list[dict[str, Any]] = (await _models_page(client))["data"]
    return data


async def _models_page(client: httpx.AsyncClient) -> dict[str, Any]:
    try:
        response = await client.get("/v1/models")
    except httpx.HTTPError as exc:
        raise SourceError(f"cannot reach {client.base_url}: {exc}") from exc
    if response.status_code != 200:
        raise refusal(response)
    page: dict[str, Any] = response.json()
    return page


async def expand_groups(where: Where, models: Sequence[str]) -> list[str]:
    """Each ``group:NAME`` in ``models`` as its members, from the server's ``[groups]``
    or, in this process, the config's. For a caller that keeps something per model (a
    chat keeps each model's history), so one ref must be one slot. ``RequestRefused``
    for a group that is not defined."""
    from app.catalog import group_members, no_such_group

    if not any(m.startswith(GROUP_PREFIX) for m in models):
        return list(models)
    if where.url:
        async with server_client(where.url, where.key) as client:
            groups: dict[str, list[str]] = (await _models_page(client)).get("groups", {})
    else:
        groups = {name: list(group_members(where.config, name)) for name in where.config.groups}
    refs = []
    for name in models:
        bare = name.removeprefix(GROUP_PREFIX)
        if name == bare:
            refs.append(name)
        elif bare in groups:
            refs += groups[bare]
        else:
            raise RequestRefused(no_such_group(bare, groups))
    return refs


class ServerSource:
    """A stream on a running Chorus, read as SSE; ``stop`` calls its stop URL."""

    def __init__(self, client: httpx.AsyncClient, body: dict[str, Any]) -> None:
        self.client = client
        self.body = body
        self.stream_id: str | None = None

    async def events(self) -> AsyncIterator[Event]:
        try:
            async with self.client.stream("POST", "/v1/streams", json=self.body,
                                          headers={"Accept": "text/event-stream"}) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise refusal(response)
                self.stream_id = response.headers.get("X-Chorus-Stream-Id")
                decoder = SSEDecoder()
                async for chunk in response.aiter_bytes():
                    for event in decoder.feed(chunk):
                        yield int(event.id or 0), event.event, json.loads(event.data)
        except httpx.HTTPError as exc:
            raise SourceError(f"cannot read from {self.client.base_url}: {exc}") from exc

    async def stop(self) -> bool:
        if self.stream_id is None:
            return False
        try:
            with trio.move_on_after(STOP_TIMEOUT):
                await self.client.post(f"/v1/streams/{self.stream_id}/stop", json={})
        except httpx.HTTPError:
            pass  # the stream is read to its end or cut off either way
        return True


class LocalSource:
    """A stream run by a hub in this process, with the local config's providers."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream

    async def events(self) -> AsyncIterator[Event]:
        async for batch in self.stream.entries(0, attached=True):
            for entry in batch:
                yield entry.id, entry.type, entry.data

    async def stop(self) -> bool:
        self.stream.stop(None, "user")
        return True


@asynccontextmanager
async def local_stream(config: Config, body: dict[str, Any]) -> AsyncIterator[LocalSource]:
    """The stream a ``POST /v1/streams`` body asks for, run by a hub in this process.

    The body is checked and planned by the server's own code (``app.api.planning``: the
    same routes, fallbacks, limits and labels), and a refusal is ``RequestRefused`` with the
    server's message. The hub and the providers close on the way out.
    """
    from app.api.errors import ApiError
    from app.api.planning import plan_body
    from app.catalog import Catalog
    from app.engine import Hub, StreamSettings

    catalog = Catalog(config)
    try:
        try:
            plans, conversation = plan_body(body, catalog, config.server)
        except ApiError as exc:
            raise RequestRefused(exc.message) from exc
        hub = Hub(StreamSettings(ping=3600.0), max_streams=1)
        async with trio.open_nursery() as nursery:
            await nursery.start(hub.run)
            stream = await hub.open("local", plans, reader=True, conversation=conversation)
            yield LocalSource(stream)
            hub.close()
    finally:
        with trio.CancelScope(shield=True):
            await catalog.aclose()


@dataclass(frozen=True, slots=True)
class Where:
    """Where the models run: a server at ``url`` (with its ``key``), else in this process
    with ``config``."""

    config: Config
    url: str | None = None
    key: str | None = None


@asynccontextmanager
async def open_source(where: Where, slots: Sequence[Target],
                      params: dict[str, Any]) -> AsyncIterator[Source]:
    """A stream of ``slots`` on a server or in this process, closed on the way out."""
    async with open_stream(where, stream_body(slots, params)) as source:
        yield source


@asynccontextmanager
async def open_stream(where: Where, body: dict[str, Any]) -> AsyncIterator[Source]:
    """The stream a ``POST /v1/streams`` body asks for (parallel or a conversation), on a
    server or in this process: the same body either way."""
    if where.url:
        async with server_client(where.url, where.key) as client:
            yield ServerSource(client, body)
    else:
        async with local_stream(where.config, body) as source:
            yield source
