"""GET /v1/models over real HTTP: beside each name, what a person choosing a model needs
(whether it takes images, its price, context length and description), for aliases too."""

from __future__ import annotations

from ..conftest import Server, StartServer

LISTED = """
[server]
demo = "always"

[providers.demo]
type = "demo"
images = ["fast"]
prices = { "fast" = { input = 0.15, output = 0.6 } }
model_info = { "fast" = { context = 128000, description = "Quick and short." } }

[aliases]
quick = "demo/fast"
"""


async def listing(server: Server) -> dict[str, dict[str, object]]:
    async with server.client() as client:
        r = await client.get("/v1/models")
    assert r.status_code == 200, r.text
    return {m["id"]: m for m in r.json()["data"]}


async def test_each_model_says_what_the_config_states_about_it(
    start_server: StartServer
) -> None:
    models = await listing(await start_server(LISTED))
    fast = models["demo/fast"]
    assert fast["images"] is True
    assert fast["pricing"] == {"input": 0.15, "output": 0.6}
    assert fast["context_length"] == 128000
    assert fast["description"] == "Quick and short."
    # Unknown is null, not a guess; a model left out of images = [...] takes none.
    slow = models["demo/slow"]
    assert slow["images"] is False
    assert slow["pricing"] is None
    assert slow["context_length"] is None
    assert slow["description"] is None
    # An alias carries its target's details.
    quick = models["quick"]
    assert quick["alias_of"] == "demo/fast"
    assert (quick["images"], quick["pricing"]) == (True, {"input": 0.15, "output": 0.6})


async def test_by_default_every_model_takes_images_and_has_no_price(server: Server) -> None:
    models = await listing(server)
    assert models
    assert all(m["images"] is True and m["pricing"] is None for m in models.values())
