"""The shapes every provider shares: the request, its limits, and the two protocols.

A *wire protocol* (``providers.openai``, ``providers.anthropic``…) is pure: it builds an HTTP
request and parses response bytes into ``providers.events``. A *provider* is what the engine
calls: ``stream()`` yields those events for one model run. ``providers.http`` makes a provider
out of any wire protocol; ``providers.demo`` is a provider with no wire at all.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .events import ProviderEvent


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image in a message, as OpenAI's ``image_url`` part gives it: an ``https://`` URL
    or a ``data:<media type>;base64,<data>`` URL. Each wire protocol maps it to its own
    shape; one that cannot carry it raises ``BadRequestError`` for that slot alone."""

    url: str
    detail: str | None = None  # OpenAI's "low" | "high" | "auto"; others ignore it

    @property
    def inline(self) -> tuple[str, str] | None:
        """``(media_type, base64 data)`` of a data URL; ``None`` for a link."""
        if not self.url.startswith("data:"):
            return None
        head, _, data = self.url[5:].partition(",")
        return head.split(";", 1)[0], data


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of the history. ``content`` is its text; ``images`` come with it (a model
    reads them before the text, the order Anthropic's vision guide advises)."""

    role: str
    content: str
    images: tuple[ImagePart, ...] = ()


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One model run: the model's name *within its provider*, the history, and parameters."""

    model: str
    messages: Sequence[Message]
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds; ``None`` means no limit.

    ``first_token`` counts from the request being sent to the first answer or reasoning text;
    ``idle`` is the longest gap between two upstream events after that; ``total`` bounds the
    whole run. ``connect`` bounds opening the TCP/TLS connection.
    """

    connect: float | None = 10.0
    first_token: float | None = 120.0
    idle: float | None = 60.0
    total: float | None = 900.0


@dataclass(frozen=True, slots=True)
class Price:
    """A model's price in USD per million tokens, as the config states it."""

    input: float
    output: float


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the config says about a model for people choosing one (``model_info``)."""

    context: int | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """One ``[providers.NAME]`` table of the config file, validated."""

    name: str
    type: str
    base_url: str | None = None
    api_key: str | None = None
    models: tuple[str, ...] = ()
    max_concurrency: int = 16
    timeouts: Timeouts = field(default_factory=Timeouts)
    fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    retries: int = 2
    options: Mapping[str, Any] = field(default_factory=dict)
    http2: bool = False  # offer HTTP/2 by ALPN on https (off: see ``providers.http``, why)
    images: bool | tuple[str, ...] = True  # which models take images: all, none, or these
    # What a listing of models shows beside each name; the engine never reads them.
    prices: Mapping[str, Price] = field(default_factory=dict)
    model_info: Mapping[str, ModelInfo] = field(default_factory=dict)

    def takes_images(self, model: str) -> bool:
        return self.images if isinstance(self.images, bool) else model in self.images


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """What a wire protocol asks the HTTP shell to send. ``headers`` may hold secrets."""

    method: str
    url: str
    headers: Mapping[str, str]
    json: Any = None


def with_key(
    config: ProviderConfig, headers: dict[str, str], name: str = "Authorization",
    prefix: str = "Bearer ",
) -> dict[str, str]:
    """``headers`` plus the provider's API key, when it has one, under the header ``name``."""
    if config.api_key:
        headers[name] = prefix + config.api_key
    return headers


class StreamParser(Protocol):
    """Sans-IO: response bytes in, events out.

    ``feed`` may be handed any split of the body (one byte at a time included) and must give
    the same events as for the whole body. ``close`` is called at end of body; it returns any
    last events or raises ``ProtocolError`` if the body stopped mid-message. Errors the
    upstream sends inside the stream are raised as ``ProviderError`` from ``feed``.
    """

    def feed(self, data: bytes) -> list[ProviderEvent]: ...

    def raise_held(self) -> None:
        """Raise now an in-stream error that ``feed`` held back so as to return the events
        before it first; nothing if there is none."""

    def close(self) -> list[ProviderEvent]: ...


class WireProtocol(Protocol):
    """A module or object that speaks one upstream protocol, with no I/O of its own."""

    def build_request(self, config: ProviderConfig, request: ChatRequest) -> HttpRequest: ...

    def parser(self) -> StreamParser: ...

    def models_request(self, config: ProviderConfig) -> HttpRequest: ...

    def parse_models(self, body: bytes) -> list[str]: ...


class Provider(Protocol):
    """What the engine drives. One instance per ``[providers.NAME]``; shared by all streams.

    ``stream`` is an async generator: the engine iterates it inside the slot's cancel scope,
    so cancelling that scope (stop, timeout, disconnect) closes the upstream connection at
    once. It raises only ``ProviderError`` (or ``trio.Cancelled``).
    """

    config: ProviderConfig
    simulated: bool

    def stream(self, request: ChatRequest) -> AsyncGenerator[ProviderEvent, None]: ...

    async def list_models(self) -> list[str]: ...

    async def aclose(self) -> None: ...
