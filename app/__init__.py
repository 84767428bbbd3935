"""Chorus: stream the answers of several LLMs side by side over Server-Sent Events.

``create_app()`` builds the Quart-trio app: the hub (every stream) runs in the app's
lifespan nursery, the catalog holds the providers, the blueprints in ``app.api`` are the
HTTP contract.
"""

from __future__ import annotations

import logging
from typing import Any

import trio
from quart import Response, jsonify
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from app.api import meta, openai_compat, streams
from app.api.context import Chorus
from app.api.errors import ApiError
from app.catalog import Catalog
from app.config import Config, load_config
from app.engine import Hub, StreamSettings

log = logging.getLogger("chorus")

__all__ = ["create_app"]

SHUTDOWN_WAIT = 5.0  # seconds streams get to end after a shutdown stop


def create_app(config: Config | None = None, catalog: Catalog | None = None) -> QuartTrio:
    config = config or load_config()
    s = config.server
    app = QuartTrio(__name__, static_folder="static", static_url_path="/static")
    app.config["RESPONSE_TIMEOUT"] = None  # streams outlive Quart's 60 s default
    app.config["MAX_CONTENT_LENGTH"] = s.max_body
    app.config["JSON_SORT_KEYS"] = False
    hub = Hub(StreamSettings(ping=s.ping, attach_timeout=s.attach_timeout,
                             resume_grace=s.resume_grace, retention=s.retention),
              max_streams=s.max_streams)
    state = Chorus(config=config, catalog=catalog or Catalog(config), hub=hub)
    app.extensions["chorus"] = state

    @app.before_serving
    async def start() -> None:
        await app.nursery.start(hub.run)

    @app.after_serving
    async def stop() -> None:
        with trio.move_on_after(SHUTDOWN_WAIT):
            await hub.shutdown()
        hub.close()
        await state.catalog.aclose()

    app.register_blueprint(streams.bp)
    app.register_blueprint(meta.bp)
    app.register_blueprint(openai_compat.bp)
    _error_handlers(app)
    return app


def _error_handlers(app: QuartTrio) -> None:
    @app.errorhandler(ApiError)
    async def api_error(exc: ApiError) -> Response:
        return exc.response()

    @app.errorhandler(RequestEntityTooLarge)
    async def too_large(exc: RequestEntityTooLarge) -> Response:
        limit = app.config["MAX_CONTENT_LENGTH"]
        error = ApiError(413, "payload_too_large", f"the body is larger than {limit} bytes",
                         headers={"Connection": "close"})
        return error.response()

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        kinds = {404: "not_found", 405: "method_not_allowed"}
        code = exc.code or 500
        response = jsonify({"error": {"type": kinds.get(code, "invalid_request"),
                                      "message": exc.description or exc.name}})
        response.status_code = code
        return response

    @app.errorhandler(Exception)
    async def internal(exc: Exception) -> Any:
        log.exception("unhandled error")
        response = jsonify({"error": {"type": "internal", "message": "internal server error"}})
        response.status_code = 500
        return response
