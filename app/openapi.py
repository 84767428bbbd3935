"""The OpenAPI 3.1 description of the HTTP API, served at ``/openapi.json``.

Built from small schema pieces so each shape is written once; the tests check that every
route the app serves is described here and that responses match.
"""

from __future__ import annotations

from typing import Any

JSON = "application/json"
SSE = "text/event-stream"


def _obj(props: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props, **extra}
    if required:
        out["required"] = required
    return out


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "Invalid request", 401: "Missing or wrong API key", 404: "No such stream",
            413: "Body too large", 415: "Body is not JSON",
            429: "Too many streams, or requests, for now (see Retry-After)",
            503: "Shutting down (see Retry-After)"}
    return {str(c): _json(_ref("Error"), text[c]) for c in codes}


_STREAM_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}

SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": _obj({
        "type": {"type": "string"}, "message": {"type": "string"},
        # null in /v1/chat/completions' OpenAI-shaped errors when no field is at fault
        "param": {"type": ["string", "null"]}}, ["type", "message"])}, ["error"]),
    "Message": _obj({
        "role": {"type": "string", "enum": ["system", "user", "assistant", "developer", "tool"]},
        "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"oneOf": [
            _obj({"type": {"const": "text"}, "text": {"type": "string"}}, ["type", "text"]),
            _ref("ImagePart")]}}]},
    }, ["role", "content"]),
    "ImagePart": _obj({
        "type": {"const": "image_url"},
        "image_url": _obj({
            "url": {"type": "string", "description": "https://… or data:image/<type>;base64,…"
                                                     " (user messages only)"},
            "detail": {"type": "string", "enum": ["low", "high", "auto"]}}, ["url"]),
    }, ["type", "image_url"]),
    "Params": _obj({
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
        "max_completion_tokens": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
        "seed": {"type": "integer"},
        "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    }, additionalProperties=True),
    "Target": {"oneOf": [
        {"type": "string", "description": "a model ref (provider/model) or an alias",
         "minLength": 1},
        _obj({"model": {"type": "string", "minLength": 1}, "label": {"type": "string"},
              "messages": {"type": "array", "items": _ref("Message")},
              "params": _ref("Params"),
              "fallbacks": {"type": "array", "items": {"type": "string"}}},
             ["model"], additionalProperties=False),
    ]},
    "StreamRequest": _obj({
        "models": {"oneOf": [
            {"type": "array", "items": _ref("Target"), "minItems": 1},
            {"type": "string", "pattern": "^group:",
             "description": "group:NAME, the members of [groups] NAME"}]},
        "messages": {"type": "array", "items": _ref("Message")},
        "params": _ref("Params"),
        "mode": {"type": "string", "enum": ["parallel"]},
    }, ["models"], additionalProperties=False),
    "Participant": _obj({"model": {"type": "string", "minLength": 1},
                         "name": {"type": "string", "minLength": 1, "maxLength": 200},
                         "system": {"type": "string"}, "params": _ref("Params")},
                        ["model"], additionalProperties=False),
    "ConversationRequest": _obj({
        "mode": {"const": "conversation"},
        "participants": {"type": "array", "items": _ref("Participant"), "minItems": 1},
        "messages": {"type": "array", "items": _ref("Message"), "minItems": 1},
        "params": _ref("Params"),
        "rounds": {"type": "integer", "minimum": 1,
                   "description": "at most [server] max_rounds (20)"},
        "turn_order": {"type": "array", "items": {"type": "integer", "minimum": 0},
                       "description": "a permutation of the participants' indexes"},
        "manager": _obj({"model": {"type": "string", "minLength": 1},
                         "system": {"type": "string"}}, ["model"], additionalProperties=False),
        "on_error": {"type": "string", "enum": ["continue", "stop"]},
    }, ["mode", "participants", "messages"], additionalProperties=False),
    "SlotRef": _obj({"slot": {"type": "integer"}, "model": {"type": "string"},
                     "label": {"type": "string"}}, ["slot", "model", "label"]),
    "SlotState": _obj({"slot": {"type": "integer"}, "model": {"type": "string"},
                       "state": {"type": "string", "enum": [
                           "queued", "running", "done", "error", "stopped"]}},
                      ["slot", "model", "state"]),
    "StreamCreated": _obj({"id": {"type": "string"}, "events_url": {"type": "string"},
                           "stop_url": {"type": "string"},
                           "slots": {"type": "array", "items": _ref("SlotRef")}},
                          ["id", "events_url", "stop_url", "slots"]),
    "StopRequest": _obj({"slots": {"type": "array", "items": {"type": "integer"}},
                         "skip": {"type": "boolean",
                                  "description": "a conversation: end the current turn"}},
                        additionalProperties=False),
    "StopResult": _obj({"id": {"type": "string"},
                        "slots": {"type": "array", "items": _ref("SlotState")}},
                       ["id", "slots"]),
    "Snapshot": _obj({"id": {"type": "string"}, "created": {"type": "integer"},
                      "state": {"type": "string", "enum": ["running", "done"]},
                      "last_event_id": {"type": "integer"},
                      "slots": {"type": "array", "items": _obj({
                          "slot": {"type": "integer"}, "model": {"type": "string"},
                          "label": {"type": "string"}, "state": {"type": "string"},
                          "text": {"type": "string"}, "reasoning": {"type": "string"},
                          "usage": {"type": ["object", "null"]},
                          "timing": {"type": ["object", "null"]}},
                          ["slot", "model", "state", "text"])}},
                     ["id", "state", "slots"]),
    "ModelList": _obj({"object": {"const": "list"}, "data": {"type": "array", "items": _obj({
        "id": {"type": "string"}, "object": {"const": "model"}, "created": {"type": "integer"},
        "owned_by": {"type": "string"}, "provider": {"type": "string"},
        "simulated": {"type": "boolean"},
        "alias_of": {"type": "string", "description": "for an alias: the ref it stands for"},
        "images": {"type": "boolean", "description": "whether the model is sent images"},
        "pricing": {"oneOf": [{"type": "null"}, _obj({
            "input": {"type": "number"}, "output": {"type": "number"}}, ["input", "output"])],
            "description": "USD per million tokens ([providers.NAME] prices); null: unknown"},
        "context_length": {"type": ["integer", "null"],
                           "description": "tokens ([providers.NAME] model_info)"},
        "description": {"type": ["string", "null"]}},
        ["id", "object", "provider"])},
        "groups": {"type": "object", "description": "[groups]: name -> member refs",
                   "additionalProperties": {"type": "array", "items": {"type": "string"}}},
        "notes": {"type": "array", "items": {"type": "string"},
                  "description": "what is left out and how to bring it back"},
        "max_slots": {"type": "integer", "description": "targets one stream may have"}},
        ["object", "data"]),
}

_EVENTS = ("Server-Sent Events: stream.start, model.start, delta, reasoning, model.retry, "
           "model.done, model.error, model.stopped, stream.done (a conversation adds "
           "manager.pick and turn.start); each with an integer id.")

PATHS: dict[str, Any] = {
    "/v1/streams": {"post": {
        "summary": "Start a stream of one or more model slots",
        "description": "With `Accept: text/event-stream` the events stream in this response; "
                       "otherwise 201 and generation starts.",
        "requestBody": {"required": True,
                        "content": {JSON: {"schema": {"oneOf": [
                            _ref("StreamRequest"), _ref("ConversationRequest")]}}}},
        "responses": {"201": _json(_ref("StreamCreated"), "Stream created"),
                      "200": {"description": _EVENTS, "content": {SSE: {
                          "schema": {"type": "string"}}}},
                      **_errors(400, 401, 413, 415, 429, 503)},
    }},
    "/v1/streams/{id}/events": {"get": {
        "summary": "Follow a stream: replay after Last-Event-ID, then live",
        "parameters": [_STREAM_ID,
                       {"name": "Last-Event-ID", "in": "header", "required": False,
                        "schema": {"type": "integer", "minimum": 0}},
                       {"name": "last_event_id", "in": "query", "required": False,
                        "schema": {"type": "integer", "minimum": 0}}],
        "responses": {"200": {"description": _EVENTS, "content": {SSE: {
            "schema": {"type": "string"}}}}, **_errors(400, 401, 404, 429)},
    }},
    "/v1/streams/{id}/stop": {"post": {
        "summary": "Stop every slot ({}) or some ({\"slots\": [1]}); idempotent",
        "parameters": [_STREAM_ID],
        "requestBody": {"required": False, "content": {JSON: {"schema": _ref("StopRequest")}}},
        "responses": {"200": _json(_ref("StopResult"), "The slots' states"),
                      **_errors(400, 401, 404, 415, 429)},
    }},
    "/v1/streams/{id}": {"get": {
        "summary": "A stream's state, text so far, usage and timings",
        "parameters": [_STREAM_ID],
        "responses": {"200": _json(_ref("Snapshot"), "Snapshot"),
                      **_errors(401, 404, 429)},
    }},
    "/v1/models": {"get": {
        "summary": "Configured models and aliases (OpenAI list shape plus provider)",
        "responses": {"200": _json(_ref("ModelList"), "Models"), **_errors(401, 429)},
    }},
    "/v1/chat/completions": {"post": {
        "summary": "OpenAI-compatible chat completions through the same engine",
        "description": "Stream (SSE chat.completion.chunk, data: [DONE]) or not; `n` runs n "
                       "slots of the model. See docs/openai-compatibility.md.",
        "requestBody": {"required": True, "content": {JSON: {"schema": _obj({
            "model": {"type": "string", "minLength": 1},
            "messages": {"type": "array", "items": _ref("Message"), "minItems": 1},
            "stream": {"type": "boolean"},
            "stream_options": _obj({"include_usage": {"type": "boolean"}}),
            "n": {"type": "integer", "minimum": 1},
        }, ["model", "messages"], additionalProperties=True)}}},
        "responses": {
            "200": {"description": "A chat.completion object, or chat.completion.chunk "
                                   "events when streaming",
                    "content": {JSON: {"schema": {"type": "object"}},
                                SSE: {"schema": {"type": "string"}}}},
            **_errors(400, 401, 413, 415, 429),
            "502": _json(_ref("Error"), "The upstream failed before the first token"),
            "504": _json(_ref("Error"), "The upstream timed out before the first token"),
        },
    }},
    "/healthz": {"get": {
        "summary": "Liveness",
        "responses": {"200": _json(_obj({"status": {"const": "ok"},
                                         "streams": {"type": "integer"}}), "Alive")},
    }},
    "/metrics": {"get": {
        "summary": "Prometheus metrics (see docs/operations.md)",
        "security": [{}],
        "responses": {"200": {"description": "Prometheus text exposition format",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}},
    }},
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Chorus", "version": "0.1.0",
                 "description": "Stream the answers of several LLMs side by side over SSE."},
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}, {}],
        "paths": PATHS,
    }
