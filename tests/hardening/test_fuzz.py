"""Property-based fuzzing of the JSON API: whatever the body, never a 5xx, always the error
shape; and Schemathesis checks the server against its own ``/openapi.json``.

Both run synchronously against a Chorus in a thread of its own (``threaded_chorus``),
bounded in examples and derandomized, so CI is fast and repeatable. The SSE and NDJSON
decoders are fuzzed in tests/providers (split-invariance over arbitrary bytes).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import threaded_chorus

CONFIG = ("[server]\nrate_limit = 0.0\nmax_streams = 100000\nmax_streams_per_key = 100000\n"
          "retention = 1.0\nattach_timeout = 1.0\nresume_grace = 0.0\nmax_body = 200000\n")

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))

FLOATS = st.floats(allow_nan=False, allow_infinity=False)  # what JSON can carry
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | FLOATS | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=16)

# Near-valid bodies reach the deeper checks; refs that end at once keep the server idle.
REFS = st.sampled_from(["demo/instant", "demo/ttft=0,rate=0,tokens=3", "demo/nope", "demo/",
                        "/x", "nope/x", "", " ", "demo/ttft=-1", "demo/tokens=1e999"])
ROLES = st.sampled_from(["system", "user", "assistant", "tool", "developer", "wizard", ""])
CONTENT = st.text(max_size=30) | st.lists(st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image_url"]), "text": st.text(max_size=10)}),
    max_size=3) | JSON
MESSAGES = st.lists(st.fixed_dictionaries({"role": ROLES, "content": CONTENT}), max_size=4) | JSON
PARAM_VALUES = st.integers(-5, 5000) | FLOATS | st.text(max_size=5) | JSON
PARAMS = st.dictionaries(st.sampled_from(["temperature", "top_p", "max_tokens", "seed", "stop",
                                          "n", "stream", "model", "frequency_penalty", "x"]),
                         PARAM_VALUES, max_size=3) | JSON
TARGET = REFS | st.fixed_dictionaries(
    {"model": REFS}, optional={"label": st.text(max_size=5) | JSON, "messages": MESSAGES,
                               "params": PARAMS, "fallbacks": st.lists(REFS, max_size=2) | JSON,
                               "extra": JSON})
# A ``mode`` that is not a string is left out until test_a_mode_that_is_not_a_string_is_a_400
# passes (it is a 500 today).
STREAM_BODY = st.fixed_dictionaries(
    {}, optional={"models": st.lists(TARGET, max_size=10) | JSON, "messages": MESSAGES,
                  "params": PARAMS, "mode": st.sampled_from(["parallel", "conversation"])
                  | st.none() | st.integers() | st.text(max_size=5)})
CHAT_BODY = st.fixed_dictionaries(
    {}, optional={"model": REFS | JSON, "messages": MESSAGES, "stream": st.booleans() | JSON,
                  "stream_options": JSON, "n": st.integers(-1, 12) | JSON,
                  "temperature": PARAM_VALUES, "max_tokens": PARAM_VALUES})


@pytest.fixture(scope="module")
def chorus_url() -> Iterator[str]:
    with threaded_chorus(CONFIG) as url:
        yield url


@pytest.fixture(scope="module")
def http(chorus_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=chorus_url, timeout=10) as client:
        yield client


def assert_error_shape(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["type"], str)
        assert error["type"]
        assert isinstance(error["message"], str)
        assert "Traceback" not in error["message"]


@FUZZ
@given(body=STREAM_BODY | JSON)
def test_any_stream_body_gets_a_4xx_or_a_stream(http: httpx.Client, body: Any) -> None:
    r = http.post("/v1/streams", json=body)
    assert_error_shape(r)
    if r.status_code < 400:
        assert r.status_code == 201
        http.post(r.json()["stop_url"])


@pytest.mark.parametrize("mode", [[], {}, ["parallel"]])
def test_a_mode_that_is_not_a_string_is_a_400(http: httpx.Client, mode: Any) -> None:
    r = http.post("/v1/streams", json={"models": ["demo/instant"], "mode": mode,
                                       "messages": [{"role": "user", "content": "hi"}]})
    assert (r.status_code, r.json()["error"]["param"]) == (400, "mode")


@FUZZ
@given(body=CHAT_BODY | JSON)
def test_any_chat_body_gets_a_4xx_or_an_answer(http: httpx.Client, body: Any) -> None:
    r = http.post("/v1/chat/completions", json=body)
    assert_error_shape(r)


@settings(FUZZ, max_examples=60)
@given(body=st.binary(max_size=300) | JSON.map(lambda v: json.dumps(v).encode()),
       ctype=st.sampled_from(["application/json", "text/plain", "", "application/x+json",
                              "multipart/form-data; boundary=x"]),
       path=st.sampled_from(["/v1/streams", "/v1/chat/completions", "/v1/streams/x/stop"]))
def test_any_bytes_get_a_4xx(http: httpx.Client, body: bytes, ctype: str, path: str) -> None:
    assert_error_shape(http.post(path, content=body, headers={"Content-Type": ctype}))


@settings(FUZZ, max_examples=60)
@given(body=JSON | st.fixed_dictionaries({"slots": st.lists(st.integers(-3, 3)) | JSON}))
def test_any_stop_body_gets_a_4xx_or_the_states(http: httpx.Client, body: Any) -> None:
    created = http.post("/v1/streams", json={
        "models": ["demo/hang", "demo/instant"],
        "messages": [{"role": "user", "content": "hi"}]}).json()
    r = http.post(created["stop_url"], json=body)
    assert_error_shape(r)
    if r.status_code == 200:
        assert len(r.json()["slots"]) == 2
    http.post(created["stop_url"])


def test_the_server_matches_its_openapi_document(chorus_url: str) -> None:
    """Every JSON operation, with bodies generated from the document itself. The SSE
    follow route is left out: a generated id is never a live stream's."""
    schemathesis = pytest.importorskip("schemathesis")
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi import checks

    used = [not_a_server_error, checks.status_code_conformance,
            checks.content_type_conformance, checks.response_headers_conformance,
            checks.response_schema_conformance]
    schema = schemathesis.openapi.from_url(f"{chorus_url}/openapi.json").exclude(
        path="/v1/streams/{id}/events")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 6
    for operation in operations:

        @settings(FUZZ, max_examples=25)
        @given(case=operation.as_strategy())
        def conforms(case: Any) -> None:
            case.call_and_validate(base_url=chorus_url, checks=used, timeout=10)

        conforms()
