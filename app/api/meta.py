"""The small routes: models, health, the OpenAPI document and the browser page."""

from __future__ import annotations

from quart import Blueprint, Response, current_app, jsonify

from app.openapi import document

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
    return jsonify(document())


@bp.get("/")
async def index() -> Response:
    return await current_app.send_static_file("index.html")
