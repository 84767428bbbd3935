"""The planner on its own: given a catalog and the ``[server]`` limits (no app), a checked
body becomes slot plans, or the ``ApiError`` the API answers with."""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.api.bodies import parse_stream_body
from app.api.errors import ApiError
from app.api.planning import MANAGER_PARAMS, plan_stream
from app.catalog import Catalog
from app.config import Config, build_config
from app.engine import ConversationPlan, SlotPlan

TOML = '[providers.demo]\ntype = "demo"\n[server]\nmax_tokens = {ceiling}\nmax_messages = 2\n'


def config(ceiling: int = 100) -> Config:
    return build_config(tomllib.loads(TOML.format(ceiling=ceiling)), {})


@pytest.fixture
async def catalog() -> AsyncIterator[Catalog]:
    c = Catalog(config())
    try:
        yield c
    finally:
        await c.aclose()


def plan(catalog: Catalog, data: dict[str, Any], ceiling: int = 100
         ) -> tuple[list[SlotPlan], ConversationPlan | None]:
    limits = config(ceiling).server
    return plan_stream(parse_stream_body(data, limits.max_slots, catalog.group), catalog,
                       limits)


HI = [{"role": "user", "content": "hi"}]


async def test_labels_number_repeats_unless_a_label_is_given(catalog: Catalog) -> None:
    plans, conversation = plan(catalog, {"models": [
        "demo/fast", "demo/fast", {"model": "demo/fast", "label": "third"}, "demo/slow",
    ], "messages": HI})
    assert conversation is None
    assert [p.label for p in plans] == ["demo/fast", "demo/fast #2", "third", "demo/slow"]


@pytest.mark.parametrize(("ceiling", "asked", "sent"), [
    (100, {"max_tokens": 5000}, {"max_tokens": 100}),
    (100, {}, {"max_tokens": 100}),
    (0, {"max_tokens": 5000}, {"max_tokens": 5000}),  # 0: no ceiling
    (0, {}, {}),
])
async def test_every_route_asks_at_most_the_ceiling(
    catalog: Catalog, ceiling: int, asked: dict[str, Any], sent: dict[str, Any],
) -> None:
    plans, _ = plan(catalog, {"models": ["demo/fast"], "messages": HI, "params": asked},
                    ceiling)
    assert {k: v for k, v in plans[0].routes[0].request.params.items()
            if k in ("max_tokens", "max_completion_tokens")} == sent


async def test_a_conversation_plans_its_speakers_and_caps_its_manager(
    catalog: Catalog,
) -> None:
    plans, talk = plan(catalog, {"mode": "conversation", "messages": HI, "participants": [
        {"model": "demo/fast", "name": "Al", "system": "be brief"}, {"model": "demo/slow"},
    ], "manager": {"model": "demo/fast"}, "params": {"max_tokens": 5000}})
    assert talk is not None
    assert [s.plan for s in talk.speakers] == plans
    assert [s.system for s in talk.speakers] == ["be brief", None]
    assert [p.label for p in plans] == ["Al", "demo/slow"]
    assert talk.manager is not None
    assert talk.manager.routes[0].request.params["max_tokens"] == MANAGER_PARAMS["max_tokens"]


@pytest.mark.parametrize(("data", "status", "kind", "param"), [
    ({"models": ["nope/x"], "messages": HI}, 400, "unknown_model", "models[0]"),
    ({"mode": "conversation", "messages": HI, "participants": [{"model": "nope/x"}]},
     400, "unknown_model", "participants[0]"),
    ({"mode": "conversation", "messages": HI, "participants": [{"model": "demo/fast"}],
      "manager": {"model": "nope/x"}}, 400, "unknown_model", "manager.model"),
    ({"models": ["demo/fast"], "messages": HI * 3}, 400, "invalid_request", "messages"),
    ({"models": ["demo/fast"], "messages": [{"role": "tool", "content": "x"}]},
     400, "invalid_request", "models[0]"),
])
async def test_a_refusal_names_the_field(catalog: Catalog, data: dict[str, Any], status: int,
                                         kind: str, param: str) -> None:
    with pytest.raises(ApiError) as caught:
        plan(catalog, data)
    assert (caught.value.status, caught.value.type, caught.value.param) == (status, kind,
                                                                           param)
