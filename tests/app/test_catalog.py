"""The catalog's names: aliases and groups resolve in one place, and a name no provider
serves says what would make it work."""

from __future__ import annotations

import tomllib

import pytest

from app.catalog import Catalog, UnknownModel
from app.config import build_config
from providers import Message

NAMES = """
[server]
demo = "always"
[aliases]
"gpt-4o" = "demo/instant"
[groups]
panel = ["demo/fast", "gpt-4o"]
"""


@pytest.fixture
def catalog() -> Catalog:
    return Catalog(build_config(tomllib.loads(NAMES), {}))


def test_resolve_maps_an_alias_and_leaves_a_ref(catalog: Catalog) -> None:
    assert catalog.resolve("gpt-4o") == "demo/instant"
    assert catalog.resolve("demo/fast") == "demo/fast"


def test_group_gives_its_members_as_refs_with_or_without_the_prefix(catalog: Catalog) -> None:
    assert catalog.group("group:panel") == ("demo/fast", "demo/instant")
    assert catalog.group("panel") == ("demo/fast", "demo/instant")
    assert catalog.is_group("group:panel")
    assert not catalog.is_group("panel")
    with pytest.raises(UnknownModel, match=r"no group named 'pane' is configured \(did you "
                                           r"mean 'panel'\?\) \(groups: panel\)"):
        catalog.group("group:pane")


def test_route_resolves_aliases_in_the_target_and_its_fallbacks(catalog: Catalog) -> None:
    routes = catalog.route("gpt-4o", [Message("user", "hi")], {}, ["gpt-4o", "demo/slow"])
    assert [r.ref for r in routes] == ["demo/instant", "demo/instant", "demo/slow"]
    assert routes[0].request.model == "instant"


def test_a_group_is_not_a_model(catalog: Catalog) -> None:
    with pytest.raises(UnknownModel, match="names a group of models"):
        catalog.split("group:panel")
