"""The one place that does HTTP for every wire protocol, and maps httpx errors to ours.

A wire protocol (pure) builds the request and parses the body; ``HttpProvider`` sends it
with one shared ``httpx.AsyncClient`` per provider (connection reuse, HTTP/2 where the
upstream offers it) and streams the body through the parser. Cancelling the caller's scope
while ``stream`` is suspended closes the response, and with it the upstream connection, at
once: httpx does not return a half-read connection to the pool.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
import urllib.request
from collections.abc import AsyncGenerator, AsyncIterator
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
from .transport import MAX_IDLE, Http11Transport

MAX_ERROR_BODY = 64 * 1024
MODELS_TTL = 300.0  # seconds a discovered model list is reused (``options.models_ttl``)
MODELS_TIMEOUT = 10.0
MAX_URLS = 256  # parsed request URLs kept per provider (``_url``)


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
        transport = None
        if client is None:
            if not _proxied(config.base_url):
                transport = Http11Transport(max_idle=_max_idle(config))
            client = make_client(config, transport)
        self._client = client
        # Straight to Chorus's transport when the provider has it: the client's
        # per-request work (URL merging, cookies, auth and redirect hooks) is unused here
        # and cost as much as the transport itself. Otherwise through the client (a proxy
        # from the environment, or a client given by tests or an embedder).
        self._transport = transport
        self._timeouts = client.timeout.as_dict()  # what the client itself would send
        self._urls: dict[str, httpx.URL] = {}
        self._models: list[str] | None = None
        self._models_at = -math.inf
        self._models_lock = trio.Lock()

    async def stream(self, request: ChatRequest) -> AsyncGenerator[ProviderEvent, None]:
        parser = self.wire.parser()
        try:
            # Sent by a call of its own, so that nothing of the request (its body, headers
            # and parsed URL) stays referenced by this frame while the answer streams.
            response = await self._send(request)
            try:
                if response.status_code >= 400:
                    raise await self._status_error(response)
                async for chunk in _body(response):
                    for event in parser.feed(chunk):
                        yield event
                    # An error the upstream sent mid-read is raised after the events before
                    # it, now rather than on the next read.
                    parser.raise_held()
                for event in parser.close():
                    yield event
            finally:
                await response.aclose()
        except ProviderError as exc:
            exc.message = self.redact(exc.message)
            raise
        except httpx.HTTPError as exc:
            raise self.map_error(exc) from exc

    async def _send(self, request: ChatRequest) -> httpx.Response:
        """The wire protocol's request, sent; the answer as it starts."""
        spec = self.wire.build_request(self.config, request)
        url = self._url(spec.url)
        if self._transport is None:
            return await self._client.send(
                httpx.Request(spec.method, url, headers=spec.headers, json=spec.json,
                              extensions={"timeout": self._timeouts}), stream=True)
        headers = [(name.encode("latin-1"), value.encode("latin-1"))
                   for name, value in spec.headers.items()]
        body = b""
        if spec.json is not None:  # as httpx encodes ``json=``
            body = json.dumps(spec.json, ensure_ascii=False, separators=(",", ":"),
                              allow_nan=False).encode("utf-8")
            headers.append((b"Content-Type", b"application/json"))
        return await self._transport.send(spec.method, url, headers, body, self._timeouts)

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
                response = await self._client.request(spec.method, spec.url,
                                                      headers=dict(spec.headers))
        except trio.TooSlowError as exc:
            raise TimeoutError_(f"{self.config.name} did not list its models in time") from exc
        except httpx.HTTPError as exc:
            raise self.map_error(exc) from exc
        if response.status_code >= 400:
            detail = _error_detail(response.content[:MAX_ERROR_BODY])
            message = f"{self.config.name} answered {response.status_code} listing models"
            raise error_for_status(response.status_code,
                                   self.redact(f"{message}: {detail}" if detail else message))
        return self.wire.parse_models(response.content)

    async def aclose(self) -> None:
        await self._client.aclose()

    def map_error(self, exc: httpx.HTTPError) -> ProviderError:
        """httpx's errors, as the engine's types; the one place this mapping lives."""
        where = self.config.name
        if isinstance(exc, httpx.ConnectTimeout):
            return TimeoutError_(f"connecting to {where} timed out")
        if isinstance(exc, httpx.TimeoutException):
            return TimeoutError_(f"{where} did not answer in time")
        if isinstance(exc, httpx.ConnectError):
            return TransportError(f"could not connect to {where}")
        if isinstance(exc, httpx.RemoteProtocolError):
            return TransportError(f"{where} closed the connection mid-stream")
        if isinstance(exc, httpx.DecodingError):
            return ProtocolError(f"{where} sent a body that could not be decoded")
        if isinstance(exc, httpx.TransportError):
            return TransportError(f"the connection to {where} failed")
        if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
            return BadRequestError(f"the base_url of {where} is not a valid URL")
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

    def redact(self, text: str) -> str:
        key = self.config.api_key
        if key and key in text:
            text = text.replace(key, "[redacted]")
        return text


def make_client(config: ProviderConfig,
                transport: Http11Transport | None) -> httpx.AsyncClient:
    """A client for one provider, on Chorus's own HTTP/1.1 transport (``transport.py``, and
    why), or with ``transport=None`` on httpx's own, which is how a proxy from the
    environment (``HTTPS_PROXY``, ``NO_PROXY``...) is honoured: httpx mounts those only
    when it picks the transports itself. Only ``connect`` is an httpx timeout:
    first-token, idle and total are the engine's (httpx's default 5 s read timeout would
    cut slow thinkers)."""
    timeout = httpx.Timeout(None, connect=config.timeouts.connect)
    if transport is None:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=_max_idle(config))
        return httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False)
    return httpx.AsyncClient(timeout=timeout, transport=transport, follow_redirects=False)


def _max_idle(config: ProviderConfig) -> int:
    """Idle connections kept per provider: a busy stream reuses one at once, so a small
    reserve keeps the reuse (``transport.MAX_IDLE``)."""
    return max(1, min(config.max_concurrency, MAX_IDLE))


def _proxied(url: str | None) -> bool:
    """Whether an environment proxy applies to ``url`` (``urllib``'s reading of the
    ``*_PROXY`` and ``NO_PROXY`` variables, which httpx follows too)."""
    if not url:
        return False
    parts = httpx.URL(url)
    proxies = urllib.request.getproxies()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parts.host)


def _body(response: httpx.Response) -> AsyncIterator[bytes]:
    """The response body as it arrives. An uncompressed body (Chorus asks for no
    compression) is read straight from the transport's stream: httpx's own iteration adds
    a decoder, a chunker and two generator layers per upstream read, for nothing."""
    if "content-encoding" in response.headers:
        return response.aiter_bytes()
    return aiter(response.stream)  # type: ignore[arg-type]


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
