"""Image parts of a message, as OpenAI's Chat Completions takes them, checked into
``ImagePart``: https://platform.openai.com/docs/guides/images-vision"""

from __future__ import annotations

import binascii
from typing import Any

from providers import ImagePart

from .errors import invalid

_DETAILS = ("low", "high", "auto")


def parse_image(value: Any, where: str) -> ImagePart:
    """An ``https://`` link or a base64 ``data:image/…`` URL (checked: it is decoded once,
    so a model never gets data it would refuse). Its size is bounded by ``max_body``.
    ``value`` is the part's ``image_url``: ``{"url", "detail"?}``, or the URL alone."""
    url: Any = None
    detail: Any = None
    if isinstance(value, str):
        url = value
    elif isinstance(value, dict):
        url, detail = value.get("url"), value.get("detail")
    if detail is not None and detail not in _DETAILS:
        raise invalid(f"{where}.detail must be one of {', '.join(_DETAILS)}", f"{where}.detail")
    if not isinstance(url, str):
        raise invalid(f"{where}.url must be a string", f"{where}.url")
    if url.startswith("data:"):
        image = ImagePart(url, detail)
        media_type, data = image.inline or ("", "")
        head = url[5:].partition(",")[0]
        if not media_type.startswith("image/") or not head.endswith(";base64"):
            raise invalid(f"{where}.url must be a data URL 'data:image/<type>;base64,<data>'",
                          f"{where}.url")
        try:
            binascii.a2b_base64(data, strict_mode=True)
        except binascii.Error as exc:
            raise invalid(f"{where}.url holds data that is not valid base64",
                          f"{where}.url") from exc
        return image
    if not url.startswith("https://") or len(url) > 8192:
        raise invalid(f"{where}.url must be an https:// URL (at most 8192 characters) or "
                      "a base64 data: URL", f"{where}.url")
    return ImagePart(url, detail)
