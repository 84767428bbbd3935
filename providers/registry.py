"""Where provider types are found: built-ins and plug-ins come in through the same door.

A provider type is a factory ``(ProviderConfig) -> Provider`` registered under its ``type``
name, either by calling ``register()`` or through the ``chorus.providers`` entry-point
group of an installed package. The built-ins are listed below in that same form.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points

from .base import Provider, ProviderConfig

Factory = Callable[[ProviderConfig], Provider]

BUILTIN: dict[str, str] = {
    "demo": "providers.factories:demo",
    "openai": "providers.factories:openai",
    "anthropic": "providers.factories:anthropic",
    "gemini": "providers.factories:gemini",
    "ollama": "providers.factories:ollama",
    "agent": "providers.agent.pool:AgentPool",
}

_registered: dict[str, Factory] = {}


def register(type_name: str, factory: Factory) -> None:
    _registered[type_name] = factory


def known_types() -> list[str]:
    names = set(BUILTIN) | set(_registered)
    names |= {ep.name for ep in entry_points(group="chorus.providers")}
    return sorted(names)


def factory_for(type_name: str) -> Factory:
    """The factory for a type; ``KeyError`` if nothing provides it."""
    if type_name in _registered:
        return _registered[type_name]
    target = BUILTIN.get(type_name)
    if target is None:
        for ep in entry_points(group="chorus.providers", name=type_name):
            target = ep.value
            break
    if target is None:
        raise KeyError(type_name)
    module, _, attr = target.partition(":")
    factory: Factory = getattr(importlib.import_module(module), attr)
    _registered[type_name] = factory
    return factory


def create(config: ProviderConfig) -> Provider:
    return factory_for(config.type)(config)
