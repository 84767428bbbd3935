"""The catalog: the configured providers, and how a model name resolves to one of them.

A ref is ``provider/model``; the provider name is the config's ``[providers.NAME]`` and the
rest (which may itself hold slashes, as OpenRouter's ``meta-llama/llama-3.3-70b``) is the
model's name inside it. A bare name is looked up in ``[aliases]`` first (``resolve``), and
``group:NAME`` stands for the members of ``[groups] NAME`` (``group``): this is the one
place where either happens, so every API takes the same names.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import trio

from app.autodetect import ollama_url
from app.config import GROUP_PREFIX, WELL_KNOWN, Config, did_you_mean
from app.engine import Route
from providers import ChatRequest, Message, Provider, ProviderError, create
from providers.demo import DemoProvider, parse_spec

log = logging.getLogger("chorus.catalog")


def _details(provider: Provider, model: str) -> dict[str, Any]:
    """Whether the model takes images, and its price, context length and description as
    the provider's config states them (null when it does not)."""
    price = provider.config.prices.get(model)
    info = provider.config.model_info.get(model)
    return {
        "images": provider.config.takes_images(model),
        "pricing": {"input": price.input, "output": price.output} if price else None,
        "context_length": info.context if info else None,
        "description": info.description if info else None,
    }


class UnknownModel(Exception):
    def __init__(self, ref: str, why: str) -> None:
        super().__init__(why)
        self.ref = ref


def group_members(config: Config, name: str) -> tuple[str, ...]:
    """The model refs of ``[groups] NAME`` (``name`` with or without ``group:``), each
    alias resolved, in the config's order; ``UnknownModel`` for a group not defined."""
    bare = name.removeprefix(GROUP_PREFIX)
    members = config.groups.get(bare)
    if members is None:
        raise UnknownModel(name, no_such_group(bare, config.groups))
    return tuple(config.aliases.get(member, member) for member in members)


def no_such_group(bare: str, groups: Mapping[str, object]) -> str:
    known = ", ".join(sorted(groups)) or "none"
    return f"no group named {bare!r} is configured{did_you_mean(bare, groups)} (groups: {known})"


class Catalog:
    def __init__(self, config: Config, providers: Mapping[str, Provider] | None = None) -> None:
        self.config = config
        self.providers: dict[str, Provider] = dict(providers or {})
        for name, pc in config.providers.items():
            if name not in self.providers:
                self.providers[name] = create(pc)
        self.limiters = {name: trio.CapacityLimiter(p.config.max_concurrency)
                         for name, p in self.providers.items()}

    def resolve(self, name: str) -> str:
        """The model ref ``name`` stands for: its ``[aliases]`` target, else ``name``."""
        return self.config.aliases.get(name, name)

    @staticmethod
    def is_group(name: str) -> bool:
        return name.startswith(GROUP_PREFIX)

    def group(self, name: str) -> tuple[str, ...]:
        return group_members(self.config, name)

    def split(self, name: str) -> tuple[Provider, str]:
        """The provider and model-within-it of a ref or an alias; ``UnknownModel`` saying
        what to do when no provider serves it."""
        ref = self.resolve(name)
        provider_name, sep, model = ref.partition("/")
        if self.is_group(name):
            raise UnknownModel(name, f"{name!r} names a group of models: send it alone, as "
                                     f"\"models\": \"{name}\" to POST /v1/streams or as "
                                     "\"model\" to POST /v1/chat/completions")
        if not sep or not model:
            raise UnknownModel(name, f"{name!r} is not a model ref or an alias: write it as "
                                     f"'provider/model'{did_you_mean(name, self.config.aliases)}"
                                     " or name it in [aliases]")
        provider = self.providers.get(provider_name)
        if provider is None:
            raise UnknownModel(name, self._missing(provider_name))
        if isinstance(provider, DemoProvider):
            try:
                parse_spec(model, provider.presets)
            except ProviderError as exc:
                raise UnknownModel(ref, exc.message) from exc
        elif provider.config.models and model not in provider.config.models:
            raise UnknownModel(ref, f"provider {provider_name!r} does not serve model "
                                    f"{model!r}")
        return provider, model

    def _missing(self, name: str) -> str:
        """Why no provider ``name`` is here, and what would bring it."""
        known = ", ".join(sorted(self.providers)) or "none"
        why = f"no provider named {name!r} is configured"
        if name in WELL_KNOWN:
            why += f": set {WELL_KNOWN[name][1]} in Chorus's environment to enable it"
        elif name == "ollama":
            why += (f": no Ollama answered at {ollama_url(dict(os.environ))} when Chorus "
                    "started (start it, or set OLLAMA_HOST, then restart Chorus)")
        elif name == "demo" and self.config.demo_left_out:
            why += ": demo models are left out once other providers are set ([server] demo "
            why += "= \"always\" keeps them)"
        else:
            why += did_you_mean(name, self.providers)
        return f"{why} (configured: {known})"

    def route(
        self, ref: str, messages: Sequence[Message], params: Mapping[str, Any],
        fallbacks: Sequence[str] = (),
    ) -> tuple[Route, ...]:
        """The model's route, then one per fallback (the request's, else the config's);
        aliases resolved, so each route's ``ref`` is a ``provider/model`` ref."""
        provider, model = self.split(ref)
        refs = [ref, *(fallbacks or provider.config.fallbacks.get(model, ()))]
        routes = []
        for one in refs:
            p, m = self.split(one)
            routes.append(Route(
                ref=self.resolve(one), provider=p,
                request=ChatRequest(m, tuple(messages), dict(params)),
                limiter=self.limiters[p.config.name], timeouts=p.config.timeouts,
                retries=p.config.retries,
            ))
        return tuple(routes)

    async def list_models(self) -> list[dict[str, Any]]:
        """OpenAI's list shape, plus ``provider``, ``simulated`` and what a person choosing
        a model wants to know (``_details``); then each alias whose
        provider is configured, as an entry whose ``id`` is the alias and ``alias_of`` the
        ref it stands for.

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
                    "simulated": provider.simulated, **_details(provider, model),
                })
        for alias, ref in self.config.aliases.items():
            target = self.providers.get(ref.partition("/")[0])
            if target is not None:
                out.append({
                    "id": alias, "object": "model", "created": 0,
                    "owned_by": target.config.type, "provider": target.config.name,
                    "simulated": target.simulated, "alias_of": ref,
                    **_details(target, ref.partition("/")[2]),
                })
        return out

    def groups(self) -> dict[str, list[str]]:
        """Every ``[groups]`` entry with its members resolved to refs."""
        return {name: list(self.group(name)) for name in self.config.groups}

    def notes(self) -> list[str]:
        """What a user listing models should know about what is missing, one line each."""
        if self.config.demo_left_out:
            return ["demo models are left out because other providers are configured; "
                    "set [server] demo = \"always\" (or CHORUS_DEMO=1) to keep them"]
        return []

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()
