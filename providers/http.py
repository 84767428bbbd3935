"""The one place that does HTTP for every wire protocol, and maps httpx errors to ours.

A wire protocol (pure) builds the request and parses the body; ``HttpProvider`` sends it
through one ``httpx.AsyncClient`` per provider, on httpx's own transport (connection reuse,
proxies from the environment, HTTP/2 by ALPN where the provider's ``http2`` allows it), and
streams the body through the parser. Cancelling the caller's scope while ``stream`` is
suspended closes the response at once. On HTTP/1.1 that closes its connection (httpx never
pools a half-read one), so the upstream sees the stop. On HTTP/2 httpx (httpcore 1.0) only
stops reading the stream: it sends no RST_STREAM, and the upstream goes on generating
(``docs/providers.md``), which is why ``http2`` is off unless a provider turns it on.
"""

from __future__ import annotations

import email.utils
import json
import math
import ssl
import time
import traceback
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import trio

from .base import ChatRequest, ProviderConfig, WireProtocol
from .errors import (
    BadRequestError,
    ProtocolError,
    ProviderError,
    TimeoutError_,
    TransportError,
    error_for_status,
)
from .events import ProviderEvent

MAX_ERROR_BODY = 64 * 1024
MODELS_TTL = 300.0  # seconds a discovered model list is reused (``options.models_ttl``)
MODELS_TIMEOUT = 10.0
MAX_URLS = 256  # parsed request URLs kept per provider (``_url``)
SHARD_ANSWERS = 64  # answers in flight on one httpx client (``ClientShards``)
MAX_IDLE = 16  # idle connections kept per provider: a busy stream reuses one at once
KEEPALIVE_EXPIRY = 20.0  # seconds an idle connection is kept

# What httpx raises: its ``HTTPError`` family, and ``InvalidURL`` (not among them) for a URL
# it cannot parse.
HttpxError = httpx.HTTPError | httpx.InvalidURL
HTTPX_ERRORS = (httpx.HTTPError, httpx.InvalidURL)


class HttpProvider:
    simulated = False

    def __init__(
        self,
        config: ProviderConfig,
        wire: WireProtocol,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = config
        self.wire = wire
        if client is not None:
            self._clients = ClientShards(lambda _: client, per_client=None)
        else:
            # One TLS context for all of the provider's clients: loading the CA bundle
            # takes milliseconds, each time.
            tls = httpx.create_ssl_context()
            self._clients = ClientShards(
                lambda index: make_client(config, keep_idle=index == 0, verify=tls))
        self._urls: dict[str, httpx.URL] = {}
        self._models: list[str] | None = None
        self._models_at = -math.inf
        self._models_lock = trio.Lock()

    async def stream(self, request: ChatRequest) -> AsyncGenerator[ProviderEvent, None]:
        parser = self.wire.parser()
        try:
            with self._clients.lease() as client:
                # Sent by a call of its own, so that nothing of the request (its body,
                # headers and parsed URL) stays referenced by this frame while it streams.
                response = await self._send(client, request)
                try:
                    if response.status_code >= 400:
                        raise await self._status_error(response)
                    async for chunk in response.aiter_bytes():
                        for event in parser.feed(chunk):
                            yield event
                        # An error the upstream sent mid-read is raised after the events
                        # before it, now rather than on the next read.
                        parser.raise_held()
                    for event in parser.close():
                        yield event
                finally:
                    await response.aclose()
        except ProviderError as exc:
            exc.message = self.redact(exc.message)
            raise
        except HTTPX_ERRORS as exc:
            raise self.map_error(exc) from self._cause(exc)

    async def _send(self, client: httpx.AsyncClient, request: ChatRequest) -> httpx.Response:
        """The wire protocol's request, sent; the answer as it starts."""
        spec = self.wire.build_request(self.config, request)
        built = client.build_request(spec.method, self._url(spec.url),
                                     headers=spec.headers, json=spec.json)
        return await client.send(built, stream=True)

    def _url(self, url: str) -> httpx.URL:
        """``url`` parsed, once: a provider sends to one URL, or one per model (Gemini).
        httpx's parser checks every character and the host's address, about 60 % of what
        building a request cost (45 of 75 µs, ``bench/findings.md``); a parsed URL is
        immutable, so it is kept (up to ``MAX_URLS``, then the cache starts over)."""
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) >= MAX_URLS:
                self._urls.clear()
            parsed = self._urls[url] = httpx.URL(url)
        return parsed

    async def list_models(self) -> list[str]:
        """The configured models, else the upstream's own list, cached ``models_ttl`` s.

        One discovery runs at a time; callers that arrive meanwhile get its result.
        """
        if self.config.models:
            return list(self.config.models)
        ttl = float(self.config.options.get("models_ttl", MODELS_TTL))
        async with self._models_lock:
            if self._models is None or trio.current_time() - self._models_at > ttl:
                self._models = await self._discover()
                self._models_at = trio.current_time()
            return list(self._models)

    async def _discover(self) -> list[str]:
        spec = self.wire.models_request(self.config)
        try:
            with trio.fail_after(MODELS_TIMEOUT):
                response = await self._clients.first.request(spec.method, spec.url,
                                                      headers=dict(spec.headers))
        except trio.TooSlowError as exc:
            raise TimeoutError_(f"{self.config.name} did not list its models in time") from exc
        except HTTPX_ERRORS as exc:
            raise self.map_error(exc) from self._cause(exc)
        if response.status_code >= 400:
            detail = _error_detail(response.content[:MAX_ERROR_BODY])
            message = f"{self.config.name} answered {response.status_code} listing models"
            raise error_for_status(response.status_code,
                                   self.redact(f"{message}: {detail}" if detail else message))
        return self.wire.parse_models(response.content)

    async def aclose(self) -> None:
        await self._clients.aclose()

    def map_error(self, exc: HttpxError) -> ProviderError:
        """httpx's errors, as the engine's types; the one place this mapping lives."""
        where = self.config.name
        if isinstance(exc, httpx.ConnectTimeout):
            return TimeoutError_(f"connecting to {where} timed out")
        if isinstance(exc, httpx.TimeoutException):
            return TimeoutError_(f"{where} did not answer in time")
        if isinstance(exc, httpx.ConnectError):
            return TransportError(f"could not connect to {where}")
        if isinstance(exc, httpx.RemoteProtocolError):
            return TransportError(f"{where} broke off the answer or the HTTP protocol")
        if isinstance(exc, httpx.LocalProtocolError):
            # Refused before a byte left: a header value HTTP forbids, such as an API key
            # pasted with its line break. Sending it again cannot succeed.
            return BadRequestError(f"the request to {where} has a malformed header "
                                   "(an API key with a line break?)")
        if isinstance(exc, httpx.DecodingError):
            return ProtocolError(f"{where} sent a body that could not be decoded")
        if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
            return BadRequestError(f"the base_url of {where} is not a valid URL")
        if isinstance(exc, httpx.TransportError):
            return TransportError(f"the connection to {where} failed")
        return TransportError(f"request to {where} failed")

    async def _status_error(self, response: httpx.Response) -> ProviderError:
        body = b""
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_ERROR_BODY:
                break
        detail = _error_detail(body)
        message = f"{self.config.name} answered {response.status_code}"
        if detail:
            message += f": {detail}"
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return error_for_status(response.status_code, self.redact(message), retry_after)

    def _cause(self, exc: HttpxError) -> HttpxError | None:
        """``exc``, to chain to the mapped error, unless it or its own causes show the API
        key (httpx quotes a header value it refuses, escaped): a logged traceback prints
        every cause."""
        key = self.config.api_key
        if not key:
            return exc
        shown = "".join(traceback.format_exception(exc))
        forms = (key, repr(key)[1:-1], repr(key.encode("utf-8", "replace"))[2:-1])
        return None if any(form in shown for form in forms) else exc

    def redact(self, text: str) -> str:
        key = self.config.api_key
        if key and key in text:
            text = text.replace(key, "[redacted]")
        return text


class ClientShards:
    """The provider's httpx clients: as many as its answers in flight need, ``per_client``
    answers each.

    httpcore's pool walks every connection it holds on each request and on each answer's
    end (``AsyncConnectionPool._assign_requests_to_connections`` in httpcore 1.0, several
    times over when idle connections are about), so a single client with thousands of
    answers open spends milliseconds on every start and every close: ten thousand clients
    leaving at once would hold their upstreams open for minutes. Clients of at most
    ``SHARD_ANSWERS`` answers keep that walk short. Only the first keeps idle connections
    for reuse: httpcore closes an expired idle connection only when its pool is next used,
    so a client with nothing in flight must hold no socket.
    """

    def __init__(self, make: Callable[[int], httpx.AsyncClient],
                 per_client: int | None = SHARD_ANSWERS) -> None:
        self._make = make
        self._per_client = per_client
        self._clients = [make(0)]
        self._busy = [0]

    @property
    def first(self) -> httpx.AsyncClient:
        return self._clients[0]

    @contextmanager
    def lease(self) -> Iterator[httpx.AsyncClient]:
        """The first client with room for one more answer (a new one if none has), held
        until the answer ends."""
        limit = self._per_client
        index = 0 if limit is None else next(
            (i for i, busy in enumerate(self._busy) if busy < limit), len(self._busy))
        if index == len(self._clients):
            self._clients.append(self._make(index))
            self._busy.append(0)
        self._busy[index] += 1
        try:
            yield self._clients[index]
        finally:
            self._busy[index] -= 1

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


def make_client(config: ProviderConfig, *, keep_idle: bool = True,
                verify: ssl.SSLContext | bool = True) -> httpx.AsyncClient:
    """A client for one provider on httpx's own transport, which also honours a proxy from
    the environment (``HTTPS_PROXY``, ``NO_PROXY``...) and ``SSL_CERT_FILE``.

    Only ``connect`` is an httpx timeout: first-token, idle and total are the engine's, and
    httpx's default 5 s read timeout would cut a model that thinks for a minute. No
    connection limit: ``max_concurrency`` bounds the answers in flight, and each HTTP/1.1
    answer needs a connection of its own. Compression is refused: a compressing server or
    proxy may hold tokens back to fill a block. Without ``keep_idle`` a connection is
    closed when its answer ends (``ClientShards``).
    """
    idle = max(1, min(config.max_concurrency, MAX_IDLE)) if keep_idle else 0
    return httpx.AsyncClient(
        timeout=httpx.Timeout(None, connect=config.timeouts.connect),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=idle,
                            keepalive_expiry=KEEPALIVE_EXPIRY),
        verify=verify,
        http2=config.http2,
        follow_redirects=False,
        headers={"Accept-Encoding": "identity"},
    )


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_detail(body: bytes) -> str:
    """The human part of an upstream error body, short; never the whole body."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data: Any = json.loads(text)
    except ValueError:
        return text[:200]
    if isinstance(data, list) and data:
        data = data[0]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            return str(err.get("message") or err.get("type") or "")[:300]
        if isinstance(err, str):
            return err[:300]
    return ""
