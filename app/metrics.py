"""Prometheus metrics, in a registry of the app's own (so two apps in one process, as in the
tests, never share a counter), served at ``GET /metrics``.

``Metrics`` is an engine observer: it counts at stream and slot boundaries (a slot's
terminal event carries its usage and timing), never per delta, so streaming costs nothing
extra. Labels are the provider's configured name, the model and small fixed sets (outcome,
error type); never a key, a stream id or a request id. Model names come from requests, so
after ``MAX_MODELS`` distinct ones per provider further ones are counted as ``other``.
"""

from __future__ import annotations

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from app.engine import Hub, SlotState, Stream
from app.engine.events import Counts, ModelError, ModelRetry, ModelStopped, Terminal

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

MAX_MODELS = 50

TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)
DURATION_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0)
STOP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self, hub: Hub) -> None:
        r = self.registry = CollectorRegistry()
        Gauge("chorus_streams_active", "Streams running now", registry=r).set_function(
            lambda: hub.active)
        Gauge("chorus_retained_log_bytes",
              "Bytes of the logs of ended streams kept for a resume (at most "
              "[server] retained_bytes)", registry=r).set_function(lambda: hub.retained_bytes)
        Gauge("chorus_streams_forgotten_early",
              "Ended streams forgotten before their retention, to keep within "
              "retained_bytes", registry=r).set_function(lambda: hub.forgotten_early)
        if hub.shared is not None:
            self._shared_state(hub.shared, r)
        self.streams = Counter("chorus_streams", "Streams started", registry=r)
        model = ["provider", "model"]
        self.slots = Counter("chorus_slots", "Slots ended, by outcome (done, error, stopped)",
                             [*model, "outcome"], registry=r)
        self.ttft = Histogram("chorus_slot_ttft_seconds",
                              "Time from the upstream request to the first token", model,
                              buckets=TTFT_BUCKETS, registry=r)
        self.duration = Histogram("chorus_slot_duration_seconds",
                                  "Time from the upstream request to the slot's end", model,
                                  buckets=DURATION_BUCKETS, registry=r)
        self.tokens = Counter("chorus_tokens", "Tokens in (prompt) and out (answer)",
                              [*model, "direction"], registry=r)
        self.upstream_errors = Counter(
            "chorus_upstream_errors", "Failed upstream attempts, retried or final, by type",
            ["provider", "type"], registry=r)
        self.retries = Counter("chorus_slot_retries", "Retries and fallbacks", ["provider"],
                               registry=r)
        self.stop_latency = Histogram(
            "chorus_stop_latency_seconds",
            "Time from a stop (user, disconnect, shutdown) to the slot's model.stopped",
            ["reason"], buckets=STOP_BUCKETS, registry=r)
        self.readers_cut = Counter("chorus_readers_cut",
                                   "Readers cut off for not taking their events", registry=r)
        self.rejected = Counter("chorus_requests_rejected",
                                "Requests refused by a limit, by which", ["reason"],
                                registry=r)
        self.http = Counter("chorus_http_requests", "HTTP requests by route and status",
                            ["method", "route", "status"], registry=r)
        # Worker agents (``app.agents``), by the agent provider's name.
        self.agents = Gauge("chorus_agents_connected", "Agents connected now", ["provider"],
                            registry=r)
        self.agent_jobs = Gauge("chorus_agent_jobs", "Jobs running on agents now",
                                ["provider"], registry=r)
        self.agent_capacity = Gauge("chorus_agent_capacity",
                                    "Jobs the connected agents take at once", ["provider"],
                                    registry=r)
        self.agent_frames = Counter("chorus_agent_frames",
                                    "Frames of events received from agents", ["provider"],
                                    registry=r)
        self.agent_events = Counter("chorus_agent_events",
                                    "Events (tokens, usage, finish) those frames carried",
                                    ["provider"], registry=r)
        self._models: dict[str, set[str]] = {}

    @staticmethod
    def _shared_state(shared: object, r: CollectorRegistry) -> None:
        """The Redis backend's own gauges (``app/state``), when it is on."""
        from app.state import RedisState

        if not isinstance(shared, RedisState):
            return
        Gauge("chorus_state_followed_streams", "Other instances' streams read here now "
              "(one Redis follower each)", registry=r).set_function(lambda: len(shared.followed))
        Gauge("chorus_state_mirrored_streams", "This instance's streams whose events are "
              "written to Redis", registry=r).set_function(lambda: shared.mirror.tracked)
        Gauge("chorus_state_write_rounds", "Pipelines of events written to Redis so far",
              registry=r).set_function(lambda: shared.mirror.rounds)
        Gauge("chorus_state_redis_renewals", "Redis clients replaced after a failed "
              "command so far", registry=r).set_function(
            lambda: shared.link.renewals + shared.reads.renewals)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def _labels(self, ref: str) -> tuple[str, str]:
        provider, _, model = ref.partition("/")
        seen = self._models.setdefault(provider, set())
        if model not in seen:
            if len(seen) >= MAX_MODELS:
                return provider, "other"
            seen.add(model)
        return provider, model

    # -- the engine observer --------------------------------------------------------------

    def stream_started(self, stream: Stream) -> None:
        self.streams.inc()

    def slot_event(self, stream: Stream, state: SlotState, event: ModelRetry | Terminal
                   ) -> None:
        provider, model = self._labels(state.model)
        if isinstance(event, ModelRetry):
            self.retries.labels(provider).inc()
            self.upstream_errors.labels(provider, event.reason).inc()
            return
        self.slots.labels(provider, model, event.outcome).inc()
        if isinstance(event, ModelError):
            self.upstream_errors.labels(provider, event.error.type).inc()
        elif isinstance(event, ModelStopped):
            asked = stream.stop_asked.get(state.slot)
            if asked is not None:
                self.stop_latency.labels(event.reason).observe(
                    max(0.0, trio.current_time() - asked))
        timing, usage = event.timing, event.usage
        if timing.ttft_ms is not None:
            self.ttft.labels(provider, model).observe(timing.ttft_ms / 1000)
        self.duration.labels(provider, model).observe(timing.duration_ms / 1000)
        if usage.input_tokens:
            self.tokens.labels(provider, model, "in").inc(usage.input_tokens)
        if usage.output_tokens:
            self.tokens.labels(provider, model, "out").inc(usage.output_tokens)

    def stream_ended(self, stream: Stream, counts: Counts) -> None:
        return None

    def reader_cut(self, stream: Stream, stalled_for: float) -> None:
        self.readers_cut.inc()

