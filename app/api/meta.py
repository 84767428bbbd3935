"""The small routes: models, health, the OpenAPI document and the browser page."""

from __future__ import annotations

from quart import Blueprint, Response, current_app, jsonify, request

from app.openapi import document

from .context import chorus, owner

bp = Blueprint("meta", __name__)


# The page's own policy (also in its <meta>), plus what only a header can say. data: images
# are the thumbnails of images the user attached; model output never makes an <img>.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "
        "require-trusted-types-for 'script'; trusted-types chorus-worker"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@bp.get("/v1/models")
async def models() -> Response:
    owner()
    ch = chorus()
    return jsonify({"object": "list", "data": await ch.catalog.list_models(),
                    "groups": ch.catalog.groups(), "notes": ch.catalog.notes(),
                    "max_slots": ch.config.server.max_slots})


@bp.get("/healthz")
async def healthz() -> Response:
    return jsonify({"status": "ok", "streams": chorus().hub.active})


@bp.get("/openapi.json")
async def openapi() -> Response:
    return jsonify(document())


@bp.get("/")
async def index() -> Response:
    response = await current_app.send_static_file("index.html")
    response.headers.update(PAGE_HEADERS)
    return response


@bp.after_app_request
async def fresh_page_files(response: Response) -> Response:
    """The page and its modules are revalidated on every load, so an upgraded server never
    runs with a browser's stale (or half-stale) copy of the page's modules."""
    path = request.path
    if path == "/" or path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-cache"
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response
