"""The running server's parts (config, catalog, hub), as handlers reach them."""

from __future__ import annotations

from dataclasses import dataclass

from quart import current_app, request

from app.catalog import Catalog
from app.config import Config
from app.engine import Hub

from .auth import owner_of_request
from .bodies import parse_json
from .errors import ApiError


@dataclass(slots=True)
class Chorus:
    config: Config
    catalog: Catalog
    hub: Hub


def chorus() -> Chorus:
    state: Chorus = current_app.extensions["chorus"]
    return state


def owner() -> str:
    return owner_of_request(chorus().config.api_keys)


async def json_body(*, empty: object = None) -> object:
    """The request's JSON body; ``empty`` when there is none. 415 for a non-JSON type."""
    ctype = request.headers.get("Content-Type", "")
    raw = await request.get_data(cache=False, as_text=False)
    if not raw.strip():
        return empty
    mime = ctype.split(";", 1)[0].strip().lower()
    if mime and mime != "application/json" and not mime.endswith("+json"):
        raise ApiError(415, "unsupported_media_type",
                       f"the body must be JSON (Content-Type: application/json), not {mime}")
    return parse_json(raw if isinstance(raw, bytes) else raw.encode())
