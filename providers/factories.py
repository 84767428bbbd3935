"""The built-in provider types, each one line: a wire protocol inside the HTTP shell."""

from __future__ import annotations

from . import openai as openai_wire
from .base import Provider, ProviderConfig
from .demo import DemoProvider
from .http import HttpProvider


def demo(config: ProviderConfig) -> Provider:
    return DemoProvider(config)


def openai(config: ProviderConfig) -> Provider:
    return HttpProvider(config, openai_wire)
