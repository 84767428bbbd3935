"""What a provider yields while it streams: small frozen dataclasses, one per kind of news.

Parsers turn upstream bytes into these; the engine turns them into the public SSE events.
Nothing here knows about HTTP, Quart or the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the answer, never repeating text sent before."""

    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A piece of thinking text, kept apart from the answer."""

    text: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as the upstream reported them.

    Either may be ``None`` when the upstream did not say. Later reports replace earlier ones
    (Anthropic and Gemini send running totals, not increments).
    """

    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete tool call, assembled from its fragments by the parser."""

    index: int
    id: str | None
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Finish:
    """The upstream said the answer is complete, and why (``stop``, ``length``, ``tool_calls``…)."""

    reason: str
    tool_calls: tuple[ToolCall, ...] = field(default=())


ProviderEvent = TextDelta | ReasoningDelta | Usage | Finish

__all__ = ["Finish", "ProviderEvent", "ReasoningDelta", "TextDelta", "ToolCall", "Usage"]
