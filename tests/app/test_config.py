"""Configuration: defaults, env keys, and errors that say where and what."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app import cli
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


@pytest.mark.usefixtures("bare_env", "no_serving")
def test_serve_exits_2_with_the_message_for_a_bad_config(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[server]\nport = \"eighty\"\n")
    assert cli.main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"chorus: config error: {path}:2: server.port must be an integer" in err
    assert "Traceback" not in err


@pytest.mark.usefixtures("bare_env", "no_serving")
def test_serve_refuses_a_public_address_without_keys(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "refusing to listen on 0.0.0.0" in err
    assert "CHORUS_API_KEYS" in err


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


def test_aliases_and_groups(tmp_path: Path) -> None:
    path = write(tmp_path, """
[aliases]
"gpt-4o" = "openrouter/openai/gpt-4o"
quick = "demo/fast"

[groups]
panel = ["openai/gpt-4o-mini", "quick"]
""")
    config = load_config(path, env={})
    assert config.aliases == {"gpt-4o": "openrouter/openai/gpt-4o", "quick": "demo/fast"}
    assert config.groups == {"panel": ("openai/gpt-4o-mini", "quick")}


@pytest.mark.parametrize(("text", "line", "message"), [
    ('[aliases]\n"gpt-4o" = "gpt-4o-2024"\n', 2,
     "aliases.gpt-4o must be a model ref written 'provider/model', not 'gpt-4o-2024'"),
    ('[aliases]\nfast = 3\n', 2, "aliases.fast must be a model ref"),
    ('[aliases]\n"demo/x" = "demo/fast"\n', 2, "alias 'demo/x' must be a bare name"),
    ('[aliases]\nquick = "demo/fast"\n[groups]\npanel = ["quik"]\n', 4,
     "groups.panel: 'quik' is neither a 'provider/model' ref nor an alias of [aliases] "
     "(did you mean 'quick'?)"),
    ('[groups]\npanel = []\n', 2, "groups.panel must be a non-empty list"),
    ('[groups]\npanel = "demo/fast"\n', 2, "groups.panel must be a non-empty list"),
])
def test_bad_aliases_and_groups_name_the_file_key_and_reason(
    tmp_path: Path, text: str, line: int, message: str,
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value).startswith(f"{path}:{line}: {message}")


@pytest.mark.parametrize(("text", "hint"), [
    ("[server]\nmax_slot = 3\n", "unknown setting server.max_slot (did you mean 'max_slots'?)"),
    ("[providers.up]\ntype = \"openai\"\nbase_ur = \"http://x\"\n",
     "unknown setting providers.up.base_ur (did you mean 'base_url'?)"),
    ("[providers.up]\ntype = \"openai\"\ntimeouts = { frist_token = 5 }\n",
     "unknown timeout providers.up.timeouts.frist_token (did you mean 'first_token'?)"),
    ("[alias]\nx = \"demo/fast\"\n", "unknown section [alias] (did you mean 'aliases'?)"),
])
def test_a_typo_in_a_key_suggests_the_key_meant(tmp_path: Path, text: str, hint: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(hint)):
        load_config(write(tmp_path, text), env={})


def test_a_key_nothing_resembles_gets_no_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "[server]\nzzz = 1\n"), env={})
    assert str(caught.value).endswith("unknown setting server.zzz")


@pytest.mark.parametrize(("setting", "env", "providers", "left_out"), [
    ("", {}, ["demo"], False),
    ("", {"OPENAI_API_KEY": "sk-a"}, ["openai"], True),
    ('demo = "always"', {"OPENAI_API_KEY": "sk-a"}, ["openai", "demo"], False),
    ('demo = "never"', {}, [], False),
    ('demo = "never"', {"OPENAI_API_KEY": "sk-a"}, ["openai"], False),
    ("", {"OPENAI_API_KEY": "sk-a", "CHORUS_DEMO": "1"}, ["openai", "demo"], False),
])
def test_the_demo_setting_keeps_or_leaves_out_the_demo_models(
    tmp_path: Path, setting: str, env: dict[str, str], providers: list[str], left_out: bool,
) -> None:
    config = load_config(write(tmp_path, f"[server]\n{setting}\n"), env=env)
    assert list(config.providers) == providers
    assert config.demo_left_out is left_out


def test_a_bad_demo_setting_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"server\.demo must be one of auto, always, never"):
        load_config(write(tmp_path, '[server]\ndemo = "sometimes"\n'), env={})


def test_per_key_limits_are_off_without_keys_and_on_with_them(tmp_path: Path) -> None:
    alone = load_config(env={}).server
    assert alone.rate_limit == 0.0  # 0 = off
    assert alone.max_streams_per_key == alone.max_streams  # the global limit guards
    keyed = load_config(env={"CHORUS_API_KEYS": "k1"}).server
    assert (keyed.rate_limit, keyed.rate_burst, keyed.max_streams_per_key) == (20.0, 100, 100)
    # Set in the file, they hold without keys too.
    path = write(tmp_path, "[server]\nrate_limit = 5\nmax_streams_per_key = 7\n")
    chosen = load_config(path, env={}).server
    assert (chosen.rate_limit, chosen.max_streams_per_key) == (5.0, 7)


def test_images_setting(tmp_path: Path) -> None:
    path = write(tmp_path, '[providers.a]\ntype = "openai"\nimages = ["vision"]\n'
                           '[providers.b]\ntype = "openai"\nimages = false\n'
                           '[providers.c]\ntype = "openai"\n')
    providers = load_config(path, env={}).providers
    assert providers["a"].takes_images("vision")
    assert not providers["a"].takes_images("text-only")
    assert not providers["b"].takes_images("anything")
    assert providers["c"].takes_images("anything")  # the default: the upstream decides
    with pytest.raises(ConfigError, match=r"providers\.d\.images must be true, false or a list"):
        load_config(write(tmp_path, '[providers.d]\ntype = "openai"\nimages = "yes"\n'),
                    env={})


@pytest.mark.usefixtures("bare_env")
def test_models_says_on_stderr_when_keys_left_the_demo_models_out(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A provider on a loopback port nothing listens on: it lists no models, quickly.
    path = write(tmp_path, '[providers.up]\ntype = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
                           '[aliases]\nquick = "up/m"\n')
    # The provider could not list its models, and says why.
    assert cli.main(["models", "--config", str(path)]) == 1
    out, err = capsys.readouterr()
    assert "provider 'up' cannot list its models" in err
    assert "quick  (alias of up/m)" in out.splitlines()
    notes = [line for line in err.splitlines() if line.startswith("note: ")]
    assert notes == ["note: demo models are left out because other providers are configured; "
                     'set [server] demo = "always" (or CHORUS_DEMO=1) to keep them']
    kept = write(tmp_path, '[server]\ndemo = "always"\n'
                           '[providers.up]\ntype = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n')
    cli.main(["models", "--config", str(kept)])
    out, err = capsys.readouterr()
    assert "demo/fast  (simulated)" in out.splitlines()
    assert "note:" not in err


def test_prices_and_model_info(tmp_path: Path) -> None:
    path = write(tmp_path, '[providers.a]\ntype = "openai"\n'
                           'prices = { "m" = { input = 0.15, output = 1 } }\n'
                           'model_info = { "m" = { context = 8192, description = "Small." } }\n')
    provider = load_config(path).providers["a"]
    assert (provider.prices["m"].input, provider.prices["m"].output) == (0.15, 1.0)
    assert provider.model_info["m"].context == 8192
    assert provider.model_info["m"].description == "Small."


@pytest.mark.parametrize(("setting", "says"), [
    ('prices = { "m" = { input = 0.15 } }',
     r"providers\.a\.prices\.m must give input and output, in USD per million tokens"),
    ('prices = { "m" = { input = "cheap", output = 1 } }',
     r"providers\.a\.prices\.m\.input must be a number, not str"),
    ('prices = { "m" = { input = -1, output = 1 } }',
     r"providers\.a\.prices\.m: a price cannot be negative"),
    ('prices = { "m" = 3 }', r"\[providers\.a\.prices\.m\] must be a table"),
    ('model_info = { "m" = { context = 0 } }',
     r"providers\.a\.model_info\.m\.context must be a positive number of tokens"),
    ('model_info = { "m" = { ctx = 10 } }',
     r"unknown setting providers\.a\.model_info\.m\.ctx \(context, description\)"),
    ('model_info = { "m" = { description = 5 } }',
     r"providers\.a\.model_info\.m\.description must be a string, not int"),
])
def test_bad_prices_and_model_info_say_what_is_wrong(
    tmp_path: Path, setting: str, says: str
) -> None:
    with pytest.raises(ConfigError, match=says):
        load_config(write(tmp_path, f'[providers.a]\ntype = "openai"\n{setting}\n'))


def test_state_is_memory_unless_the_file_says_redis(tmp_path: Path) -> None:
    assert load_config(env={}).state.backend == "memory"
    path = write(tmp_path, '[state]\nbackend = "redis"\nredis_url = "redis://10.0.0.5:6380/1"\n'
                           "lease = 4\n")
    state = load_config(path, env={}).state
    assert (state.backend, state.redis_url, state.lease) == ("redis", "redis://10.0.0.5:6380/1",
                                                            4.0)
    env = {"CHORUS_REDIS_URL": "redis://127.0.0.1:7000/0"}
    assert load_config(path, env=env).state.redis_url == "redis://127.0.0.1:7000/0"


@pytest.mark.parametrize(("text", "words"), [
    ('[state]\nbackend = "etcd"\n', "state.backend must be one of memory, redis, not 'etcd'"),
    ('[state]\nredis_url = "http://x"\n', "state.redis_url must be a redis://"),
    ("[state]\nlease = 0\n", "state.lease must be positive"),
    ("[state]\nleese = 3\n", "unknown setting state.leese (did you mean 'lease'?)"),
])
def test_bad_state_settings_say_what_is_wrong(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(words)):
        load_config(write(tmp_path, text), env={})
