"""Chorus providers: one module per upstream wire protocol, pure parsers beside a thin
HTTP shell. Nothing here imports the server or the engine."""

from .base import (
    ChatRequest,
    HttpRequest,
    ImagePart,
    Message,
    Provider,
    ProviderConfig,
    Timeouts,
)
from .errors import ProviderError
from .events import Finish, ProviderEvent, ReasoningDelta, TextDelta, ToolCall, Usage
from .registry import create, known_types, register

__all__ = [
    "ChatRequest",
    "Finish",
    "HttpRequest",
    "ImagePart",
    "Message",
    "Provider",
    "ProviderConfig",
    "ProviderError",
    "ProviderEvent",
    "ReasoningDelta",
    "TextDelta",
    "Timeouts",
    "ToolCall",
    "Usage",
    "create",
    "known_types",
    "register",
]
