"""Every built-in type resolves, through the registry, to the wire protocol it names."""

from __future__ import annotations

import pytest

from providers import anthropic, create, gemini, ollama, openai
from providers.base import ProviderConfig
from providers.demo import DemoProvider
from providers.http import HttpProvider


@pytest.mark.parametrize(
    ("type_name", "wire"),
    [("openai", openai), ("anthropic", anthropic), ("gemini", gemini), ("ollama", ollama)],
)
async def test_http_types(type_name: str, wire: object) -> None:
    provider = create(ProviderConfig(name=f"my-{type_name}", type=type_name))
    assert isinstance(provider, HttpProvider)
    assert provider.wire is wire
    assert not provider.simulated
    await provider.aclose()


def test_demo_type() -> None:
    assert isinstance(create(ProviderConfig(name="demo", type="demo")), DemoProvider)
