"""The built-in provider types, each one line: a wire protocol inside the HTTP shell."""

from __future__ import annotations

from . import anthropic as anthropic_wire
from . import gemini as gemini_wire
from . import ollama as ollama_wire
from . import openai as openai_wire
from .base import Provider, ProviderConfig
from .demo import DemoProvider
from .http import HttpProvider


def demo(config: ProviderConfig) -> Provider:
    return DemoProvider(config)


def openai(config: ProviderConfig) -> Provider:
    return HttpProvider(config, openai_wire)


def anthropic(config: ProviderConfig) -> Provider:
    return HttpProvider(config, anthropic_wire)


def gemini(config: ProviderConfig) -> Provider:
    return HttpProvider(config, gemini_wire)


def ollama(config: ProviderConfig) -> Provider:
    return HttpProvider(config, ollama_wire)
