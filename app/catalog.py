"""The catalog: the configured providers, and how a model ref resolves to one of them.

A ref is ``provider/model``; the provider name is the config's ``[providers.NAME]`` and the
rest (which may itself hold slashes, as OpenRouter's ``meta-llama/llama-3.3-70b``) is the
model's name inside it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import trio

from app.config import Config
from app.engine import Route
from providers import ChatRequest, Message, Provider, ProviderError, create
from providers.demo import DemoProvider, parse_spec

log = logging.getLogger("chorus.catalog")


class UnknownModel(Exception):
    def __init__(self, ref: str, why: str) -> None:
        super().__init__(why)
        self.ref = ref


class Catalog:
    def __init__(self, config: Config, providers: Mapping[str, Provider] | None = None) -> None:
        self.config = config
        self.providers: dict[str, Provider] = dict(providers or {})
        for name, pc in config.providers.items():
            if name not in self.providers:
                self.providers[name] = create(pc)
        self.limiters = {name: trio.CapacityLimiter(p.config.max_concurrency)
                         for name, p in self.providers.items()}

    def split(self, ref: str) -> tuple[Provider, str]:
        name, sep, model = ref.partition("/")
        if not sep or not model:
            raise UnknownModel(ref, f"{ref!r} is not a model ref: write it as 'provider/model'")
        provider = self.providers.get(name)
        if provider is None:
            known = ", ".join(sorted(self.providers)) or "none"
            raise UnknownModel(ref, f"no provider named {name!r} is configured "
                                    f"(configured: {known})")
        if isinstance(provider, DemoProvider):
            try:
                parse_spec(model, provider.presets)
            except ProviderError as exc:
                raise UnknownModel(ref, exc.message) from exc
        elif provider.config.models and model not in provider.config.models:
            raise UnknownModel(ref, f"provider {name!r} does not serve model {model!r}")
        return provider, model

    def route(
        self, ref: str, messages: Sequence[Message], params: Mapping[str, Any],
        fallbacks: Sequence[str] = (),
    ) -> tuple[Route, ...]:
        """The model's route, then one per fallback (the request's, else the config's)."""
        provider, model = self.split(ref)
        refs = [ref, *(fallbacks or provider.config.fallbacks.get(model, ()))]
        routes = []
        for one in refs:
            p, m = self.split(one)
            routes.append(Route(
                ref=one, provider=p, request=ChatRequest(m, tuple(messages), dict(params)),
                limiter=self.limiters[p.config.name], timeouts=p.config.timeouts,
                retries=p.config.retries,
            ))
        return tuple(routes)

    async def list_models(self) -> list[dict[str, Any]]:
        """OpenAI's list shape, plus ``provider`` and ``simulated``.

        Providers are asked at once; one that cannot list its models (down, no key) is
        left out and logged, so it never hides the others.
        """
        found: dict[str, list[str]] = {}

        async def one(name: str, provider: Provider) -> None:
            try:
                found[name] = await provider.list_models()
            except ProviderError as exc:
                log.warning("provider=%s cannot list models: %s", name, exc.message)

        async with trio.open_nursery() as nursery:
            for name, provider in self.providers.items():
                nursery.start_soon(one, name, provider)
        out = []
        for name, provider in self.providers.items():
            for model in found.get(name, ()):
                out.append({
                    "id": f"{name}/{model}", "object": "model", "created": 0,
                    "owned_by": provider.config.type, "provider": name,
                    "simulated": provider.simulated,
                })
        return out

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()
