"""The running server's parts (config, catalog, hub, metrics, rate limiter), as handlers
reach them; and who is calling (``owner``), checked once per request."""

from __future__ import annotations

from dataclasses import dataclass

from quart import current_app, g, request

from app.catalog import Catalog
from app.config import Config
from app.engine import Hub
from app.limits import RateLimiter
from app.metrics import Metrics

from .auth import owner_of_request
from .decoding import parse_json
from .errors import ApiError


@dataclass(slots=True)
class Chorus:
    config: Config
    catalog: Catalog
    hub: Hub
    metrics: Metrics
    rate: RateLimiter


def chorus() -> Chorus:
    state: Chorus = current_app.extensions["chorus"]
    return state


def owner() -> str:
    """The caller's owner id (401 without a valid key), worked out once per request."""
    who: str | None = g.get("chorus_owner")
    if who is None:
        who = g.chorus_owner = owner_of_request(chorus().config.api_keys)
    return who


def admit() -> None:
    """Before an API request: a valid key (401), and a token from its rate bucket (429)."""
    ch = chorus()
    try:
        ch.rate.check(owner())
    except ApiError as exc:
        ch.metrics.rejected.labels("unauthorized" if exc.status == 401 else "rate").inc()
        raise


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
