"""``[providers.NAME] type = "agent"`` with ``token_env``, as the config reads it."""

from __future__ import annotations

import tomllib

import pytest

from app.catalog import Catalog
from app.config import ConfigError, build_config
from providers.agent import AgentPool

LAB = '[providers.lab]\ntype = "agent"\ntoken_env = "LAB_AGENT_TOKENS"\n'


def test_an_agent_provider_takes_the_tokens_its_variable_holds() -> None:
    config = build_config(tomllib.loads(LAB), {"LAB_AGENT_TOKENS": "t1, t2"})
    pool = Catalog(config).providers["lab"]
    assert isinstance(pool, AgentPool)
    assert pool.tokens == ("t1", "t2")


@pytest.mark.parametrize(("toml", "env", "says"), [
    (LAB, {}, "providers.lab.token_env names LAB_AGENT_TOKENS, which holds no token"),
    (LAB, {"LAB_AGENT_TOKENS": " , "}, "which holds no token"),
    ('[providers.lab]\ntype = "agent"\n', {}, "providers.lab.token_env is required"),
    ('[providers.up]\ntype = "openai"\ntoken_env = "X"\n', {"X": "t"},
     'providers.up.token_env is for type = "agent" only'),
])
def test_an_agent_provider_without_tokens_is_a_config_error(
    toml: str, env: dict[str, str], says: str,
) -> None:
    with pytest.raises(ConfigError, match=says.replace(".", r"\.")):
        build_config(tomllib.loads(toml), env)


def test_the_agents_heartbeat_is_a_server_setting_and_must_be_positive() -> None:
    config = build_config(tomllib.loads("[server]\nagent_heartbeat = 0.5\n" + LAB),
                          {"LAB_AGENT_TOKENS": "t1"})
    assert config.server.agent_heartbeat == 0.5
    assert build_config(tomllib.loads(LAB), {"LAB_AGENT_TOKENS": "t1"}
                        ).server.agent_heartbeat == 10.0
    with pytest.raises(ConfigError, match=r"server\.agent_heartbeat must be positive"):
        build_config(tomllib.loads("[server]\nagent_heartbeat = 0\n"), {})
