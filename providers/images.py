"""Images in messages, as every wire protocol shares them: which a model may be sent, and
the order a message's parts go in. Each protocol maps one ``ImagePart`` to its own shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import ChatRequest, ImagePart, Message, ProviderConfig
from .errors import BadRequestError


def check_images(config: ProviderConfig, request: ChatRequest, *, links: bool = True) -> None:
    """Refuse (``BadRequestError``, this slot only) images the model cannot be sent: the
    config says it takes none, or (``links=False``) the protocol carries no URLs."""
    images = [image for m in request.messages for image in m.images]
    if not images:
        return
    ref = f"{config.name}/{request.model}"
    if not config.takes_images(request.model):
        raise BadRequestError(f"{ref} does not take images (its provider's 'images' setting)")
    if not links and any(image.inline is None for image in images):
        raise BadRequestError(f"{ref} takes images only as data: URLs (base64), not as links")


def content_parts(
    message: Message, image: Callable[[ImagePart], Any], text: Callable[[str], Any],
) -> list[Any]:
    """A message's images then its text (if any), each in a protocol's part shape: the
    shared order of every protocol that takes a list of parts."""
    parts = [image(one) for one in message.images]
    if message.content:
        parts.append(text(message.content))
    return parts


def text_or_parts(message: Message, image: Callable[[ImagePart], Any]) -> str | list[Any]:
    """Text alone as a string (what every server of the OpenAI and Anthropic shapes takes),
    else ``{"type": "text"}`` and image parts: the shape both protocols share."""
    if not message.images:
        return message.content
    return content_parts(message, image, lambda text: {"type": "text", "text": text})
