"""Configuration: defaults, env keys, and errors that say where and what."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "chorus.toml"
    path.write_text(text)
    return path


def test_nothing_configured_means_demo_models() -> None:
    config = load_config(env={})
    assert list(config.providers) == ["demo"]
    assert config.server.max_slots == 9
    assert config.server.resume_grace == 5.0
    assert config.api_keys == ()


def test_well_known_keys_add_their_providers_and_replace_demo() -> None:
    config = load_config(env={"OPENAI_API_KEY": "sk-a", "OPENROUTER_API_KEY": "sk-b",
                              "CHORUS_API_KEYS": "k1, k2,"})
    assert sorted(config.providers) == ["openai", "openrouter"]
    assert config.providers["openrouter"].base_url == "https://openrouter.ai/api/v1"
    assert config.providers["openai"].api_key == "sk-a"
    assert config.api_keys == ("k1", "k2")


def test_a_full_file(tmp_path: Path) -> None:
    path = write(tmp_path, """
[server]
port = 9000
resume_grace = 0

[providers.gpu1]
type = "openai"
base_url = "http://127.0.0.1:8001/v1"
api_key_env = "GPU1_KEY"
models = ["qwen3-8b"]
max_concurrency = 4
timeouts = { connect = 5, first_token = 60, idle = 30, total = 600 }
fallbacks = { "qwen3-8b" = ["demo/fast"] }
http2 = true
""")
    config = load_config(path, env={"GPU1_KEY": "secret", "CHORUS_DEMO": "1"})
    gpu = config.providers["gpu1"]
    assert (config.server.port, config.server.resume_grace) == (9000, 0.0)
    assert gpu.api_key == "secret"
    assert gpu.models == ("qwen3-8b",)
    assert gpu.timeouts.first_token == 60.0
    assert gpu.fallbacks == {"qwen3-8b": ("demo/fast",)}
    assert gpu.http2 is True
    assert config.providers["demo"].http2 is False  # off unless a provider turns it on


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("[server]\nport = \"eighty\"\n", 2, "server.port must be an integer"),
        ("[server]\nmax_slots = 0\n", 2, "max_slots must be between 1 and 64"),
        ("[server]\nbogus = 1\n", 2, "unknown setting server.bogus"),
        ("[providers.x]\nbase_url = \"http://a\"\n", 1, "providers.x.type is required"),
        ("[providers.x]\ntype = \"carrier-pigeon\"\n", 2, "not a known provider type"),
        ("[providers.x]\ntype = \"openai\"\napi_key_env = \"NOPE_KEY\"\n", 3, "NOPE_KEY"),
        ("[providers.x]\ntype = \"openai\"\nbase_url = \"ftp://x\"\n", 3, "http://"),
        ("[providers.x]\ntype = \"openai\"\ntimeouts = { idle = -1 }\n", 3, "positive"),
        ("[providers.x]\ntype = \"openai\"\nhttp2 = \"yes\"\n", 3,
         "providers.x.http2 must be true or false"),
        ("[server\nport = 1\n", 1, "not valid TOML"),
        ("[elsewhere]\n", 1, "unknown section [elsewhere]"),
    ],
)
def test_errors_name_the_file_the_line_and_the_problem(
    tmp_path: Path, text: str, line: int, words: str,
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert words in str(caught.value)
    assert caught.value.line == line


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "absent.toml", env={})


def test_serve_exits_2_with_the_message_for_a_bad_config(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = \"eighty\"\n")
    done = subprocess.run([sys.executable, "-m", "app", "serve", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"chorus: config error: {path}:2: server.port must be an integer" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_refuses_a_public_address_without_keys() -> None:
    done = subprocess.run([sys.executable, "-m", "app", "serve", "--host", "0.0.0.0"],
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0" in done.stderr
    assert "CHORUS_API_KEYS" in done.stderr


def test_the_line_is_the_one_inside_the_offending_section(tmp_path: Path) -> None:
    path = write(tmp_path, """
[providers.a]
type = "openai"
max_concurrency = 2

[providers.b]
type = "openai"
max_concurrency = "lots"
""")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.line == 8
    assert "providers.b.max_concurrency must be an integer" in str(caught.value)
