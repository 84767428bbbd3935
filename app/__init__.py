"""Chorus: stream the answers of several LLMs side by side over Server-Sent Events.

``create_app()`` builds the Quart-trio app: the hub (every stream) runs in the app's
lifespan nursery, the catalog holds the providers, the blueprints in ``app.api`` are the
HTTP contract. Every request gets a request id (``X-Request-ID`` in and out); every
``/v1/`` request is checked for its key and its rate before its handler runs; metrics
(``GET /metrics``) and the INFO log lines watch the hub.
"""

from __future__ import annotations

import logging
from typing import Any

import trio
from quart import Response, jsonify, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from app import agents
from app.api import meta, openai_compat, streams
from app.api.context import Chorus, admit
from app.api.errors import ApiError
from app.catalog import Catalog
from app.config import Config, load_config
from app.engine import Hub, SlotState, Stream, StreamSettings
from app.engine.events import Counts, ModelRetry, Terminal
from app.engine.hub import SharedState
from app.limits import RateLimiter
from app.logs import LogObserver, new_request_id, request_id
from app.metrics import CONTENT_TYPE_LATEST, Metrics

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
                             resume_grace=s.resume_grace, retention=s.retention,
                             retained_bytes=s.retained_bytes,
                             stall_timeout=s.stall_timeout),
              max_streams=s.max_streams, max_per_owner=s.max_streams_per_key,
              shared=_shared_state(config))
    metrics = Metrics(hub)
    hub.observer = _Observers(metrics, LogObserver())
    state = Chorus(config=config, catalog=catalog or Catalog(config), hub=hub,
                   metrics=metrics, rate=RateLimiter(s.rate_limit, s.rate_burst))
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
    app.register_blueprint(agents.bp)
    agents.watch(state)
    _request_hooks(app, state)
    _error_handlers(app)
    return app


def _shared_state(config: Config) -> SharedState | None:
    """The Redis backend when ``[state] backend = "redis"``; else streams live here alone."""
    if config.state.backend != "redis":
        return None
    from app.state import RedisState

    return RedisState(config.state.redis_url, lease=config.state.lease,
                      retention=config.server.retention)


def _request_hooks(app: QuartTrio, state: Chorus) -> None:
    @app.before_request
    async def identify() -> None:
        # Set in the request's own context: the tasks it starts (a stream's) inherit it.
        request_id.set(new_request_id(request.headers.get("X-Request-ID")))
        if request.path.startswith("/v1/"):
            admit()

    @app.after_request
    async def tag(response: Response) -> Response:
        response.headers["X-Request-ID"] = request_id.get()
        if response.status_code >= 400 and _has_body():
            # Refused before its body was read (a wrong key, a rate limit, an unknown
            # stream): the next request on this keep-alive connection could then hang
            # (seen with Hypercorn 0.18, STACK-NOTES), so the client gets a fresh one.
            response.headers["Connection"] = "close"
        # Labels from a bounded set: the route's pattern, never the path a client sent.
        rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
        method = request.method if request.method in _METHODS else "other"
        state.metrics.http.labels(method, rule, str(response.status_code)).inc()
        return response

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(state.metrics.exposition(), content_type=CONTENT_TYPE_LATEST)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _has_body() -> bool:
    length = request.headers.get("Content-Length", "0")
    return length != "0" or "chunked" in request.headers.get("Transfer-Encoding", "").lower()


class _Observers:
    """Both engine observers (metrics, then logs) as the one the hub takes."""

    def __init__(self, *observers: Any) -> None:
        self.observers = observers

    def stream_started(self, stream: Stream) -> None:
        for o in self.observers:
            o.stream_started(stream)

    def slot_event(self, stream: Stream, state: SlotState, event: ModelRetry | Terminal
                   ) -> None:
        for o in self.observers:
            o.slot_event(stream, state, event)

    def stream_ended(self, stream: Stream, counts: Counts) -> None:
        for o in self.observers:
            o.stream_ended(stream, counts)

    def reader_cut(self, stream: Stream, stalled_for: float) -> None:
        for o in self.observers:
            o.reader_cut(stream, stalled_for)


def _error_handlers(app: QuartTrio) -> None:
    @app.errorhandler(ApiError)
    async def api_error(exc: ApiError) -> Response:
        return exc.response()

    @app.errorhandler(RequestEntityTooLarge)
    async def too_large(exc: RequestEntityTooLarge) -> Response:
        limit = app.config["MAX_CONTENT_LENGTH"]
        app.extensions["chorus"].metrics.rejected.labels("body_size").inc()
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
