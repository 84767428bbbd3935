"""Where the terminal client keeps its files, and the settings read from them.

Everything lives in one directory: ``$CHORUS_HOME``, else ``$XDG_DATA_HOME/chorus``, else
``~/.local/share/chorus`` (the XDG base directory spec's default for user data,
https://specifications.freedesktop.org/basedir-spec/latest/). It holds ``logs.db`` (the
exchanges) and ``settings.json`` (what ``chorus models default`` set), both made on first use.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from app.config import CliConfig, ConfigError

FALLBACK_MODEL = "demo/fast"  # the model when neither -m nor a default says otherwise
_OFF = ("0", "false", "no", "off")


class SettingsError(ConfigError):
    """``settings.json`` cannot be read or written; the message says which file and why."""


def home(env: Mapping[str, str]) -> Path:
    if env.get("CHORUS_HOME"):
        return Path(env["CHORUS_HOME"])
    data = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local/share")
    return Path(data) / "chorus"


def log_path(env: Mapping[str, str]) -> Path:
    return home(env) / "logs.db"


def settings_path(env: Mapping[str, str]) -> Path:
    return home(env) / "settings.json"


def logging_on(cli: CliConfig, env: Mapping[str, str], *, no_log: bool = False) -> bool:
    """Whether to log: ``--no-log``, ``CHORUS_LOG=0`` or ``[cli] log = false`` turn it off."""
    return not no_log and env.get("CHORUS_LOG", "1").strip().lower() not in _OFF and cli.log


def _read_settings(env: Mapping[str, str]) -> dict[str, object]:
    path = settings_path(env)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise SettingsError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise SettingsError(f"{path} must hold a JSON object; delete it to start again")
    return data


def default_models(cli: CliConfig, env: Mapping[str, str]) -> tuple[list[str], str]:
    """The default models and where they come from: ``chorus models default`` (in
    ``settings.json``, so that the command takes effect whatever the config file says),
    else the config's ``[cli] default_models``, else ``demo/fast``."""
    chosen = _read_settings(env).get("default_models")
    if isinstance(chosen, list) and chosen and all(isinstance(m, str) for m in chosen):
        return list(chosen), str(settings_path(env))
    if cli.default_models:
        return list(cli.default_models), "the config's [cli] default_models"
    return [FALLBACK_MODEL], "the built-in fallback"


def set_default_models(models: Sequence[str], env: Mapping[str, str]) -> Path:
    """Store ``models`` as the default (written whole, then renamed into place)."""
    settings = _read_settings(env)
    settings["default_models"] = list(models)
    path = settings_path(env)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".json.tmp")
        partial.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        os.replace(partial, path)
    except OSError as exc:
        raise SettingsError(f"cannot write {path}: {exc.strerror}") from exc
    return path
