"""What a body may carry: bounded nesting, finite 64-bit numbers, output tokens within
reason. Each excess is a 400 that says the bound, and the server serves on."""

from __future__ import annotations

import pytest

from app.api.bodies import MAX_OUTPUT_TOKENS
from app.api.decoding import MAX_DEPTH, parse_json
from app.api.errors import ApiError

from ..conftest import Server
from .conftest import ASK

JSON = {"Content-Type": "application/json"}
PATHS = ("/v1/streams", "/v1/chat/completions")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100_000])
async def test_a_deeply_nested_body_is_a_400(server: Server, path: str, depth: int) -> None:
    body = b'{"models": ["demo/instant"], "x": ' + b"[" * depth + b"]" * depth + b"}"
    async with server.client() as client:
        r = await client.post(path, content=body, headers=JSON)
        assert r.status_code == 400
        error = r.json()["error"]
        assert (error["type"], error["message"]) == (
            "invalid_request",
            f"the body nests arrays and objects more than {MAX_DEPTH} levels deep")
        ok = await client.post("/v1/chat/completions", json={"model": "demo/instant", **ASK})
        assert ok.status_code == 200  # and everyone else is still served


def test_nesting_up_to_the_bound_is_accepted() -> None:
    text = "[" * (MAX_DEPTH - 1) + "{}" + "]" * (MAX_DEPTH - 1)
    value = parse_json(text.encode())
    for _ in range(MAX_DEPTH - 1):  # every level is there, down to the innermost object
        assert isinstance(value, list)
        assert len(value) == 1
        value = value[0]
    assert value == {}


@pytest.mark.parametrize("number", [
    "1" + "0" * 400, "-" + "9" * 25, str(2**63), str(-(2**63) - 1), "1e400", "-1e999",
    "NaN", "Infinity", "-Infinity",
])
def test_a_number_must_be_finite_and_64_bit(number: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_json(f'{{"params": {{"seed": {number}}}}}'.encode())
    assert caught.value.status == 400
    assert "numbers must be finite, and integers between -2**63 and 2**63-1" in \
        caught.value.message


@pytest.mark.parametrize("number", [str(2**63 - 1), str(-(2**63)), "1.5e300", "-0.0", "0"])
def test_numbers_within_64_bits_pass(number: str) -> None:
    assert parse_json(f"[{number}]".encode()) == [float(number) if "." in number or "e"
                                                  in number else int(number)]


@pytest.mark.parametrize(("path", "body", "param"), [
    ("/v1/streams", {"models": ["demo/instant"], "params": {"max_tokens": 10**400}}, None),
    ("/v1/chat/completions", {"model": "demo/instant", "max_tokens": 10**400}, None),
    ("/v1/streams", {"models": ["demo/instant"], "params": {"max_tokens": 10**7}},
     "params.max_tokens"),
    ("/v1/chat/completions", {"model": "demo/instant", "max_completion_tokens": 0},
     "max_completion_tokens"),
    ("/v1/streams", {"models": ["demo/instant"], "params": {"temperature": 1e308}},
     "params.temperature"),
])
async def test_huge_numbers_in_params_are_refused_with_the_bound(
    server: Server, path: str, body: dict[str, object], param: str | None,
) -> None:
    async with server.client() as client:
        r = await client.post(path, json={**body, **ASK})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "invalid_request"
    assert error.get("param") == param
    if param is None:
        assert "out of range" in error["message"]
    elif "tokens" in param:
        assert f"must be an integer from 1 to {MAX_OUTPUT_TOKENS}" in error["message"]
    else:
        assert "must be a number from 0 to 2" in error["message"]
