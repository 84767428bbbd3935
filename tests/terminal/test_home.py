"""Where the log and settings live, whether to log, and which models are the default."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.config import CliConfig, ConfigError, load_config
from app.terminal.home import (
    SettingsError,
    default_models,
    home,
    log_path,
    logging_on,
    set_default_models,
)


def test_the_home_is_chorus_home_else_the_xdg_data_dir() -> None:
    assert home({"CHORUS_HOME": "/x/chorus", "XDG_DATA_HOME": "/y"}) == Path("/x/chorus")
    assert home({"XDG_DATA_HOME": "/y", "HOME": "/h"}) == Path("/y/chorus")
    assert home({"HOME": "/h"}) == Path("/h/.local/share/chorus")
    assert log_path({"CHORUS_HOME": "/x"}) == Path("/x/logs.db")


@pytest.mark.parametrize(("cli", "env", "no_log", "on"), [
    (CliConfig(), {}, False, True),
    (CliConfig(), {}, True, False),
    (CliConfig(), {"CHORUS_LOG": "0"}, False, False),
    (CliConfig(), {"CHORUS_LOG": "off"}, False, False),
    (CliConfig(), {"CHORUS_LOG": "1"}, False, True),
    (CliConfig(log=False), {}, False, False),
])
def test_logging_is_on_unless_something_turns_it_off(
    cli: CliConfig, env: dict[str, str], no_log: bool, on: bool,
) -> None:
    assert logging_on(cli, env, no_log=no_log) is on


def test_the_default_model_set_here_wins_over_the_config(tmp_path: Path) -> None:
    env = {"CHORUS_HOME": str(tmp_path / "home")}
    assert default_models(CliConfig(), env) == (["demo/fast"], "the built-in fallback")
    configured = CliConfig(default_models=("demo/slow",))
    assert default_models(configured, env)[0] == ["demo/slow"]
    path = set_default_models(["demo/a", "demo/b"], env)
    assert path == tmp_path / "home" / "settings.json"
    assert default_models(configured, env) == (["demo/a", "demo/b"], str(path))


def test_a_broken_settings_file_says_which_file(tmp_path: Path) -> None:
    (tmp_path / "settings.json").write_text("{not json")
    with pytest.raises(SettingsError, match=re.escape("settings.json")):
        default_models(CliConfig(), {"CHORUS_HOME": str(tmp_path)})


def test_the_config_file_has_a_cli_section(tmp_path: Path) -> None:
    path = tmp_path / "chorus.toml"
    path.write_text('[cli]\nlog = false\ndefault_models = ["demo/fast", "demo/slow"]\n')
    cli = load_config(path, env={}).cli
    assert cli == CliConfig(log=False, default_models=("demo/fast", "demo/slow"))
    path.write_text('[cli]\ndefault_models = ["fast"]\n')
    wanted = "chorus.toml:2: cli.default_models must be a list"
    with pytest.raises(ConfigError, match=re.escape(wanted)):
        load_config(path, env={})
    path.write_text("[cli]\nlogs = true\n")
    with pytest.raises(ConfigError, match=re.escape("unknown setting cli.logs")):
        load_config(path, env={})
