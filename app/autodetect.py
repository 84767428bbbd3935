"""Finding a local Ollama at start-up, the one provider that needs no key to be useful.

Run once by ``chorus serve`` (not by ``create_app``, which does no I/O): a quick
``GET /api/tags`` at ``$OLLAMA_HOST`` (Ollama's own variable) or ``127.0.0.1:11434``. If it
answers, an ``ollama`` provider is added, and the demo provider, when it was only there
because nothing else was, makes way for it.
"""

from __future__ import annotations

import dataclasses

import httpx

from app.config import Config
from providers import ProviderConfig

DEFAULT_OLLAMA = "http://127.0.0.1:11434"
PROBE_TIMEOUT = 0.5


def ollama_url(env: dict[str, str] | None) -> str:
    host = (env or {}).get("OLLAMA_HOST", "").strip()
    if not host:
        return DEFAULT_OLLAMA
    if not host.startswith(("http://", "https://")):
        host = "http://" + host
    return host.rstrip("/")


def with_local_ollama(config: Config, env: dict[str, str]) -> Config:
    """``config`` plus a reachable local Ollama, unless one is configured already."""
    if any(p.type == "ollama" for p in config.providers.values()):
        return config
    url = ollama_url(env)
    try:
        answer = httpx.get(f"{url}/api/tags", timeout=PROBE_TIMEOUT)
    except httpx.HTTPError:
        return config
    if answer.status_code != 200 or "models" not in answer.text:
        return config
    providers = dict(config.providers)
    demo = providers.get("demo")
    if demo is not None and config.demo_implicit:
        del providers["demo"]
    providers["ollama"] = ProviderConfig(name="ollama", type="ollama", base_url=url)
    return dataclasses.replace(config, providers=providers, demo_implicit=False,
                               demo_left_out=config.demo_left_out or config.demo_implicit)
