"""Configuration: a TOML file plus environment variables, validated into frozen dataclasses.

With no file and no keys in the environment, Chorus serves the ``demo`` provider. Each
well-known key present (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, ``GEMINI_API_KEY``,
``OPENROUTER_API_KEY``) adds its provider, unless the file already names one of that name;
``[server] demo`` says whether the demo models stay then. ``[aliases]`` and ``[groups]``
give OpenAI clients plain names. Errors say which file, which line and what is wrong, and
suggest the name a typo was meant to be (``ConfigError``).

Over 400 lines on purpose: it is the whole file format in one place, every section's
parser beside the line finding and suggestions its errors share, so a key documented in
docs/operations.md has exactly one place that reads it.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from providers import ProviderConfig, Timeouts, known_types
from providers.base import ModelInfo, Price


class ConfigError(Exception):
    def __init__(self, message: str, path: Path | None = None, line: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.line = line


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys_env: str = "CHORUS_API_KEYS"
    max_slots: int = 9
    max_rounds: int = 20  # rounds one conversation may ask for
    max_streams: int = 1000
    max_body: int = 8 * 1024 * 1024
    ping: float = 15.0
    attach_timeout: float = 30.0
    resume_grace: float = 5.0
    retention: float = 600.0
    retained_bytes: int = 256 * 1024 * 1024  # ended streams' logs kept for a resume, at most
    log_level: str = "info"
    demo: str = "auto"  # demo models: "auto" (only when nothing else is set), "always", "never"
    # Hardening limits (docs/operations.md). 0 turns off the ones marked "0 = off". The
    # per-key ones (marked "per key") are off when no API keys are set and the file does
    # not set them: one local user is not a crowd to share the server among.
    max_streams_per_key: int = 100  # per key: concurrent streams of one API key
    max_messages: int = 1000  # messages in one request's history (shared or a target's own)
    max_message_chars: int = 1_000_000  # characters in one message's content
    max_tokens: int = 0  # ceiling on the output tokens a slot asks for; larger asks are clamped
    rate_limit: float = 20.0  # per key: requests per second, refilled continuously; 0 = off
    rate_burst: int = 100  # per key: requests at once before rate_limit applies
    stall_timeout: float = 30.0  # a client that takes nothing for this long is cut off; 0 = off
    agent_heartbeat: float = 10.0  # seconds between pings to and from worker agents


@dataclass(frozen=True, slots=True)
class CliConfig:
    """``[cli]``: the terminal client's settings (``chorus ask``, ``chorus chat``)."""

    log: bool = True  # keep every exchange in the local log database
    default_models: tuple[str, ...] = ()  # the models used when no ``-m`` is given


STATE_BACKENDS = ("memory", "redis")


@dataclass(frozen=True, slots=True)
class StateConfig:
    """``[state]``: where streams' event logs and stop signals live.

    ``memory`` (the default) keeps them in this process; ``redis`` shares them with every
    instance on the same Redis, so any instance serves any stream's events, stop and
    snapshot (docs/scaling.md). ``$CHORUS_REDIS_URL`` overrides ``redis_url``.
    """

    backend: str = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    lease: float = 10.0  # seconds after an instance dies until its streams end for readers


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    cli: CliConfig = field(default_factory=CliConfig)
    state: StateConfig = field(default_factory=StateConfig)
    providers: Mapping[str, ProviderConfig] = field(default_factory=dict)
    api_keys: tuple[str, ...] = ()
    source: Path | None = None
    demo_implicit: bool = False  # demo is there only because nothing else was configured
    demo_left_out: bool = False  # "auto" left the demo models out: other providers are set
    aliases: Mapping[str, str] = field(default_factory=dict)  # bare name -> model ref
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # name -> refs/aliases


# Provider name -> (type, key variable, base_url) for keys found in the environment.
WELL_KNOWN = {
    "openai": ("openai", "OPENAI_API_KEY", None),
    "anthropic": ("anthropic", "ANTHROPIC_API_KEY", None),
    "gemini": ("gemini", "GEMINI_API_KEY", None),
    "openrouter": ("openai", "OPENROUTER_API_KEY", "https://openrouter.ai/api/v1"),
}

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SECTIONS = ("server", "cli", "state", "providers", "aliases", "groups")
DEMO_MODES = ("auto", "always", "never")
GROUP_PREFIX = "group:"  # "group:NAME" names the members of [groups] NAME


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'X'?)`` for the closest of ``choices``, or nothing."""
    close = difflib.get_close_matches(name, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read the config file (``path``, else ``$CHORUS_CONFIG``, else none) and the env."""
    env = os.environ if env is None else env
    if path is None and env.get("CHORUS_CONFIG"):
        path = env["CHORUS_CONFIG"]
    raw: dict[str, Any] = {}
    text = ""
    source = None
    if path is not None:
        source = Path(path)
        try:
            text = source.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read the config file ({exc.strerror})", source) from exc
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            line = _line_of_decode_error(str(exc))
            raise ConfigError(f"not valid TOML: {exc}", source, line) from exc
    return build_config(raw, env, source, text)


def build_config(
    raw: Mapping[str, Any], env: Mapping[str, str], source: Path | None = None, text: str = ""
) -> Config:
    def fail(message: str, key: str | None = None, section: str | None = None) -> ConfigError:
        return ConfigError(message, source, _line_of(text, key, section) if key else None)

    def in_section(section: str) -> Any:
        return lambda message, key=None: fail(message, key, section)

    unknown = set(raw) - set(_SECTIONS)
    if unknown:
        name = sorted(unknown)[0]
        raise fail(f"unknown section [{name}]{did_you_mean(name, _SECTIONS)} (expected "
                   "[server], [cli], [state], [providers.NAME], [aliases] and [groups])",
                   name)
    server_table = _table(raw.get("server", {}), "server", fail)
    server = _server(server_table, in_section("server"))
    cli = _cli(_table(raw.get("cli", {}), "cli", fail), in_section("cli"))
    state = _state(_table(raw.get("state", {}), "state", fail), env, in_section("state"))
    providers: dict[str, ProviderConfig] = {}
    for name, table in _table(raw.get("providers", {}), "providers", fail).items():
        where = in_section(f"providers.{name}")
        providers[name] = _provider(name, _table(table, f"providers.{name}", fail), env, where)
    for name, (type_, key_var, base_url) in WELL_KNOWN.items():
        if name not in providers and env.get(key_var):
            providers[name] = ProviderConfig(name=name, type=type_, base_url=base_url,
                                             api_key=env[key_var])
    demo = "always" if _asked_for_demo(env) else server.demo
    implicit = not providers and demo == "auto"
    left_out = bool(providers) and demo == "auto" and "demo" not in providers
    if demo == "always" or (demo == "auto" and not providers):
        providers.setdefault("demo", ProviderConfig(name="demo", type="demo"))
    keys = tuple(k.strip() for k in env.get(server.api_keys_env, "").split(",") if k.strip())
    if not keys:
        server = _without_per_key_limits(server, server_table)
    aliases = _aliases(_table(raw.get("aliases", {}), "aliases", fail), in_section("aliases"))
    groups = _groups(_table(raw.get("groups", {}), "groups", fail), aliases,
                     in_section("groups"))
    return Config(server=server, cli=cli, state=state, providers=providers, api_keys=keys,
                  source=source, demo_implicit=implicit, demo_left_out=left_out, aliases=aliases,
                  groups=groups)


def _asked_for_demo(env: Mapping[str, str]) -> bool:
    return env.get("CHORUS_DEMO", "").lower() in ("1", "true", "yes")


def _without_per_key_limits(server: ServerConfig, table: Mapping[str, Any]) -> ServerConfig:
    """With no keys every caller is the one anonymous owner: the per-key limits would
    throttle a single local user (a tool sending 80 requests at once), so they are off
    unless the file sets them. ``max_streams`` still guards the server."""
    off: dict[str, Any] = {}
    if "rate_limit" not in table:
        off["rate_limit"] = 0.0
    if "max_streams_per_key" not in table:
        off["max_streams_per_key"] = server.max_streams
    return dataclasses.replace(server, **off)


def _aliases(table: Mapping[str, Any], fail: Any) -> dict[str, str]:
    """``[aliases] "gpt-4o" = "openrouter/openai/gpt-4o"``: bare name -> model ref."""
    out: dict[str, str] = {}
    for name, target in table.items():
        if "/" in name or name.startswith(GROUP_PREFIX) or not name.strip():
            raise fail(f"alias {name!r} must be a bare name (no '/', no 'group:')", name)
        if not isinstance(target, str) or not _is_ref(target):
            raise fail(f"aliases.{name} must be a model ref written 'provider/model', "
                       f"not {target!r}", name)
        out[name] = target
    return out


def _groups(table: Mapping[str, Any], aliases: Mapping[str, str], fail: Any
            ) -> dict[str, tuple[str, ...]]:
    """``[groups] panel = ["openai/gpt-4o-mini", "demo/fast"]``: members are refs or
    aliases, checked here so a typo is found at start-up rather than at the first call."""
    out: dict[str, tuple[str, ...]] = {}
    for name, members in table.items():
        if not isinstance(members, list) or not members:
            raise fail(f"groups.{name} must be a non-empty list of model refs or aliases",
                       name)
        for member in members:
            if not isinstance(member, str) or not (_is_ref(member) or member in aliases):
                hint = did_you_mean(member, aliases) if isinstance(member, str) else ""
                raise fail(f"groups.{name}: {member!r} is neither a 'provider/model' ref "
                           f"nor an alias of [aliases]{hint}", name)
        out[name] = tuple(members)
    return out


def _is_ref(text: str) -> bool:
    provider, sep, model = text.partition("/")
    return bool(sep and provider.strip() and model.strip())


def _server(table: Mapping[str, Any], fail: Any) -> ServerConfig:
    cfg = ServerConfig(**_settings(table, ServerConfig(), "server", fail))
    if not 1 <= cfg.max_slots <= 64:
        raise fail("server.max_slots must be between 1 and 64", "max_slots")
    if not 1 <= cfg.max_rounds <= 1000:
        raise fail("server.max_rounds must be between 1 and 1000", "max_rounds")
    if not 0 <= cfg.port <= 65535:
        raise fail("server.port must be between 0 and 65535", "port")
    for key in ("ping", "attach_timeout", "resume_grace", "retention", "max_tokens",
                "rate_limit", "stall_timeout", "retained_bytes"):
        if getattr(cfg, key) < 0:
            raise fail(f"server.{key} must not be negative", key)
    for key in ("max_streams", "max_streams_per_key", "max_body", "max_messages",
                "max_message_chars", "rate_burst"):
        if getattr(cfg, key) < 1:
            raise fail(f"server.{key} must be at least 1", key)
    for key in ("ping", "agent_heartbeat"):
        if getattr(cfg, key) <= 0:
            raise fail(f"server.{key} must be positive", key)
    if cfg.demo not in DEMO_MODES:
        raise fail(f"server.demo must be one of {', '.join(DEMO_MODES)}, not {cfg.demo!r}",
                   "demo")
    return cfg


def _cli(table: Mapping[str, Any], fail: Any) -> CliConfig:
    for key in table:
        if key not in ("log", "default_models"):
            raise fail(f"unknown setting cli.{key}", key)
    log = _check(table.get("log", True), bool, "cli.log", fail)
    models = _check(table.get("default_models", []), list, "cli.default_models", fail)
    if not all(isinstance(m, str) and "/" in m for m in models):
        raise fail("cli.default_models must be a list of model refs ('provider/model')",
                   "default_models")
    return CliConfig(log=log, default_models=tuple(models))


def _settings(table: Mapping[str, Any], defaults: Any, section: str, fail: Any
              ) -> dict[str, Any]:
    """``table``'s settings, each checked against the type of its default in ``defaults``
    (a config dataclass); an unknown name is an error that suggests the likely one."""
    known = {f.name for f in fields(defaults)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise fail(f"unknown setting {section}.{key}{did_you_mean(key, known)}", key)
        values[key] = _check(value, type(getattr(defaults, key)), f"{section}.{key}", fail)
    return values


def _state(table: Mapping[str, Any], env: Mapping[str, str], fail: Any) -> StateConfig:
    values = _settings(table, StateConfig(), "state", fail)
    if env.get("CHORUS_REDIS_URL"):
        values["redis_url"] = env["CHORUS_REDIS_URL"]
    cfg = StateConfig(**values)
    if cfg.backend not in STATE_BACKENDS:
        raise fail(f"state.backend must be one of {', '.join(STATE_BACKENDS)}, not "
                   f"{cfg.backend!r}", "backend")
    if not cfg.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise fail("state.redis_url must be a redis://, rediss:// or unix:// URL, not "
                   f"{cfg.redis_url!r}", "redis_url")
    if cfg.lease <= 0:
        raise fail("state.lease must be positive", "lease")
    return cfg


_TIMEOUTS = ("connect", "first_token", "idle", "total")
_PROVIDER_KEYS = {"type", "base_url", "api_key_env", "api_key", "models", "max_concurrency",
                  "timeouts", "fallbacks", "retries", "options", "images", "http2",
                  "prices", "model_info", "token_env"}


def _provider(
    name: str, table: Mapping[str, Any], env: Mapping[str, str], fail: Any
) -> ProviderConfig:
    where = f"providers.{name}"
    if not _NAME.match(name) or "/" in name:
        raise fail(f"provider name {name!r} may hold only letters, digits, '_', '-' and '.'", name)
    for key in table:
        if key not in _PROVIDER_KEYS:
            raise fail(f"unknown setting {where}.{key}{did_you_mean(key, _PROVIDER_KEYS)}",
                       key)
    type_ = table.get("type")
    if not isinstance(type_, str):
        raise fail(f"{where}.type is required (one of {', '.join(known_types())})", name)
    if type_ not in known_types():
        raise fail(f"{where}.type {type_!r} is not a known provider type "
                   f"(one of {', '.join(known_types())})", "type")
    api_key = None
    if "api_key_env" in table:
        var = _check(table["api_key_env"], str, f"{where}.api_key_env", fail)
        api_key = env.get(var) or None
        if api_key is None:
            raise fail(f"{where}.api_key_env names {var}, which is not set", "api_key_env")
    elif "api_key" in table:
        api_key = _check(table["api_key"], str, f"{where}.api_key", fail)
    if type_ == "agent" or "token_env" in table:
        api_key = _agent_tokens(table, env, where, fail)
    models = table.get("models", [])
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
        raise fail(f"{where}.models must be a list of model names", "models")
    t = _table(table.get("timeouts", {}), f"{where}.timeouts", fail)
    timeouts = Timeouts()
    for key, value in t.items():
        if key not in _TIMEOUTS:
            raise fail(f"unknown timeout {where}.timeouts.{key}{did_you_mean(key, _TIMEOUTS)}",
                       "timeouts")
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise fail(f"{where}.timeouts.{key} must be a positive number of seconds",
                       "timeouts")
    timeouts = Timeouts(**{**{f.name: getattr(timeouts, f.name) for f in fields(Timeouts)},
                           **{k: float(v) for k, v in t.items()}})
    fallbacks: dict[str, tuple[str, ...]] = {}
    for model, refs in _table(table.get("fallbacks", {}), f"{where}.fallbacks", fail).items():
        if not isinstance(refs, list) or not all(isinstance(r, str) and "/" in r for r in refs):
            raise fail(f"{where}.fallbacks.{model} must be a list of 'provider/model' refs",
                       "fallbacks")
        fallbacks[model] = tuple(refs)
    max_concurrency = _check(table.get("max_concurrency", 16), int, f"{where}.max_concurrency",
                             fail)
    if max_concurrency < 1:
        raise fail(f"{where}.max_concurrency must be at least 1", "max_concurrency")
    retries = _check(table.get("retries", 2), int, f"{where}.retries", fail)
    if not 0 <= retries <= 10:
        raise fail(f"{where}.retries must be between 0 and 10", "retries")
    base_url = table.get("base_url")
    if base_url is not None:
        base_url = _check(base_url, str, f"{where}.base_url", fail)
        if not base_url.startswith(("http://", "https://")):
            raise fail(f"{where}.base_url must start with http:// or https://", "base_url")
    images = table.get("images", True)
    if not isinstance(images, bool) and not (
            isinstance(images, list) and all(isinstance(m, str) and m for m in images)):
        raise fail(f"{where}.images must be true, false or a list of model names", "images")
    return ProviderConfig(
        name=name, type=type_, base_url=base_url, api_key=api_key, models=tuple(models),
        max_concurrency=max_concurrency, timeouts=timeouts, fallbacks=fallbacks,
        retries=retries, options=_table(table.get("options", {}), f"{where}.options", fail),
        http2=_check(table.get("http2", False), bool, f"{where}.http2", fail),
        images=images if isinstance(images, bool) else tuple(images),
        prices=_prices(table.get("prices", {}), where, fail),
        model_info=_model_info(table.get("model_info", {}), where, fail),
    )


def _prices(value: Any, where: str, fail: Any) -> dict[str, Price]:
    """``prices = { "model" = { input = 0.15, output = 0.60 } }``: USD per million tokens."""
    out = {}
    for model, price in _table(value, f"{where}.prices", fail).items():
        one = f"{where}.prices.{model}"
        entry = _table(price, one, fail)
        if set(entry) != {"input", "output"}:
            raise fail(f"{one} must give input and output, in USD per million tokens "
                       f"(as {{ input = 0.15, output = 0.60 }})", "prices")
        rates = {k: _check(v, float, f"{one}.{k}", fail) for k, v in entry.items()}
        if any(rate < 0 for rate in rates.values()):
            raise fail(f"{one}: a price cannot be negative", "prices")
        out[model] = Price(**rates)
    return out


def _model_info(value: Any, where: str, fail: Any) -> dict[str, ModelInfo]:
    """``model_info = { "model" = { context = 128000, description = "…" } }``."""
    out = {}
    for model, info in _table(value, f"{where}.model_info", fail).items():
        one = f"{where}.model_info.{model}"
        entry = _table(info, one, fail)
        for key in entry:
            if key not in ("context", "description"):
                raise fail(f"unknown setting {one}.{key} (context, description)", "model_info")
        context = entry.get("context")
        if context is not None and _check(context, int, f"{one}.context", fail) < 1:
            raise fail(f"{one}.context must be a positive number of tokens", "model_info")
        description = entry.get("description")
        if description is not None:
            _check(description, str, f"{one}.description", fail)
        out[model] = ModelInfo(context=context, description=description)
    return out


def _agent_tokens(table: Mapping[str, Any], env: Mapping[str, str], where: str,
                  fail: Any) -> str:
    """An agent provider's accepted tokens, comma-separated as ``token_env`` holds them
    (kept where a provider keeps its secret, ``api_key``)."""
    if table.get("type") != "agent":
        raise fail(f"{where}.token_env is for type = \"agent\" only", "token_env")
    if "token_env" not in table:
        raise fail(f"{where}.token_env is required: the variable holding the tokens agents "
                   "may present", "type")
    var = _check(table.get("token_env"), str, f"{where}.token_env", fail)
    tokens = env.get(var, "")
    if not any(t.strip() for t in tokens.split(",")):
        raise fail(f"{where}.token_env names {var}, which holds no token", "token_env")
    return tokens


def _table(value: Any, where: str, fail: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise fail(f"[{where}] must be a table", where.rsplit(".", 1)[-1])
    return value


def _check(value: Any, kind: type, where: str, fail: Any) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise fail(f"{where} must be {_kind_name(kind)}, not {type(value).__name__}",
                   where.rsplit(".", 1)[-1])
    return value


def _kind_name(kind: type) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        kind, kind.__name__)


def _line_of(text: str, key: str | None, section: str | None = None) -> int | None:
    """Best effort (TOML keeps no positions): the line that sets ``key`` inside
    ``[section]``, else the section's header, else the first line that mentions ``key``."""
    if not text or not key:
        return None
    lines = text.splitlines()
    start, end = 0, len(lines)
    if section:
        header = re.compile(rf"^\s*\[\s*{re.escape(section)}\s*\]")
        for number, line in enumerate(lines):
            if header.match(line):
                start = number
                end = next((n for n in range(number + 1, len(lines))
                            if lines[n].lstrip().startswith("[")), len(lines))
                break
    setting = re.compile(rf"^\s*\"?{re.escape(key)}\"?\s*=")
    for number in range(start, end):
        if setting.match(lines[number]):
            return number + 1
    if section and start < end and start < len(lines):
        return start + 1
    mention = re.compile(rf"\b{re.escape(key)}\b")
    return next((n + 1 for n, line in enumerate(lines) if mention.search(line)), None)


def _line_of_decode_error(message: str) -> int | None:
    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else None
