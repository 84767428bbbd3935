"""The small routes: models, health, the OpenAPI document and the browser page."""

from __future__ import annotations

import json
from importlib import resources

from quart import Blueprint, Response, current_app, jsonify

from .context import chorus, owner

bp = Blueprint("meta", __name__)


@bp.get("/v1/models")
async def models() -> Response:
    owner()
    return jsonify({"object": "list", "data": await chorus().catalog.list_models()})


@bp.get("/healthz")
async def healthz() -> Response:
    return jsonify({"status": "ok", "streams": chorus().hub.active})


@bp.get("/openapi.json")
async def openapi() -> Response:
    text = resources.files("app").joinpath("openapi.json").read_text(encoding="utf-8")
    return jsonify(json.loads(text))


@bp.get("/")
async def index() -> Response:
    return await current_app.send_static_file("index.html")
