"""Settings: flags > environment > TOML file > defaults, and a --help that documents all."""

from __future__ import annotations

import argparse

import pytest

from actors.config import HubConfig, Limits
from sessionhub.cli import build_parser
from sessionhub.settings import (
    DEFAULT_EVENTLOG,
    OPTIONS,
    Settings,
    SettingsError,
    add_arguments,
    load_settings,
)


def _flags(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults():
    """Without flags, env or file: loopback, port 8000, the SQLite default, 1 MiB."""
    s = load_settings({}, {})
    assert s.host == "127.0.0.1" and s.port == 8000
    assert s.eventlog == DEFAULT_EVENTLOG == "sqlite:///./data/events.db"
    assert s.max_body_bytes == 1024 * 1024
    assert s.api_keys == {} and not s.auth_enabled
    assert s.cors_origins == ()
    assert s.hub == HubConfig()


def test_precedence_flag_env_file_default(tmp_path):
    """A flag beats the environment, which beats the file, which beats the default."""
    config = tmp_path / "sessionhub.toml"
    config.write_text(
        'port = 7000\nhost = "127.0.0.2"\neventlog = "memory://"\n'
        "[limits]\nmax_chats_per_session = 7\nmax_context_entries = 9\n"
        "[hub]\nidle_timeout_s = 30\n"
        "[agents]\ntimeout_s = 5\n"
        '[api_keys]\nfilekey = "carol"\n'
    )
    env = {
        "SESSIONHUB_PORT": "7100",
        "SESSIONHUB_MAX_CHATS_PER_SESSION": "8",
        "SESSIONHUB_CONFIG": str(config),
    }
    s = load_settings(_flags("--port", "7200"), env)
    assert s.port == 7200
    assert s.host == "127.0.0.2" and s.eventlog == "memory://"
    assert s.hub.limits.max_chats_per_session == 8
    assert s.hub.limits.max_context_entries == 9
    assert s.hub.idle_timeout_s == 30.0
    assert s.hub.agents.timeout_s == 5.0
    assert dict(s.api_keys) == {"filekey": "carol"}
    assert s.config_file == str(config)
    s = load_settings(_flags("--config", str(config)), {})
    assert s.port == 7000


def test_every_limit_and_hub_field_has_a_flag_and_env():
    """Each field of Limits and HubConfig is an option with a SESSIONHUB_ variable."""
    names = {o.name for o in OPTIONS}
    for field in Limits.__dataclass_fields__:
        assert field in names
    for field in HubConfig.__dataclass_fields__:
        if field not in ("limits", "agents"):
            assert field in names, field
    env = {f"SESSIONHUB_{f.upper()}": "3" for f in Limits.__dataclass_fields__}
    s = load_settings({}, env)
    assert s.hub.limits == Limits(**{f: 3 for f in Limits.__dataclass_fields__})


def test_openai_settings_from_env():
    """SESSIONHUB_OPENAI_BASE_URL wins over OPENAI_BASE_URL; OPENAI_API_KEY is read."""
    s = load_settings({}, {"OPENAI_BASE_URL": "http://a/v1", "OPENAI_API_KEY": "sk-1"})
    assert s.hub.agents.openai_base_url == "http://a/v1"
    assert s.hub.agents.openai_api_key == "sk-1"
    s = load_settings(
        {}, {"OPENAI_BASE_URL": "http://a/v1", "SESSIONHUB_OPENAI_BASE_URL": "http://b/v1"}
    )
    assert s.hub.agents.openai_base_url == "http://b/v1"
    s = load_settings(
        _flags("--openai-base-url", "http://c/v1"), {"SESSIONHUB_OPENAI_BASE_URL": "http://b/v1"}
    )
    assert s.hub.agents.openai_base_url == "http://c/v1"


def test_api_keys_from_string_and_file(tmp_path):
    """Keys come as KEY=USER pairs and from a keys file (comments allowed)."""
    keys = tmp_path / "keys"
    keys.write_text("# operators\nk3 = *\n\nk4=dave  # a comment\n")
    s = load_settings(_flags("--api-keys", "k1=alice,k2=bob", "--api-keys-file", str(keys)), {})
    assert dict(s.api_keys) == {"k1": "alice", "k2": "bob", "k3": "*", "k4": "dave"}
    assert s.auth_enabled
    assert "k1" not in repr(s)
    s = load_settings({}, {"SESSIONHUB_API_KEYS": "key1=alice,key2=bob,key3=*"})
    assert dict(s.api_keys) == {"key1": "alice", "key2": "bob", "key3": "*"}


def test_lists_and_booleans():
    """CORS origins are comma-separated; booleans accept the usual words."""
    s = load_settings(
        {},
        {
            "SESSIONHUB_CORS_ORIGINS": "https://app.example, http://127.0.0.1:3000",
            "SESSIONHUB_INSECURE": "yes",
        },
    )
    assert s.cors_origins == ("https://app.example", "http://127.0.0.1:3000")
    assert s.insecure is True
    assert load_settings(_flags("--insecure"), {}).insecure is True
    # On by default: turned off by --no-access-log or the environment.
    assert load_settings({}, {}).access_log is True
    assert load_settings(_flags("--no-access-log"), {}).access_log is False
    assert load_settings({}, {"SESSIONHUB_ACCESS_LOG": "0"}).access_log is False
    assert load_settings(_flags("--access-log"), {"SESSIONHUB_ACCESS_LOG": "off"}).access_log


@pytest.mark.parametrize(
    "flags,env,match",
    [
        ({"port": "eighty"}, {}, "--port"),
        ({}, {"SESSIONHUB_PORT": "70000"}, "port"),
        ({}, {"SESSIONHUB_MAX_BODY_BYTES": "0"}, "max_body_bytes"),
        ({}, {"SESSIONHUB_API_KEYS": "novalue"}, "SESSIONHUB_API_KEYS"),
        ({}, {"SESSIONHUB_LOG_FORMAT": "xml"}, "log_format"),
        ({}, {"SESSIONHUB_IDLE_TIMEOUT_S": "nan"}, "SESSIONHUB_IDLE_TIMEOUT_S"),
        ({}, {"SESSIONHUB_INSECURE": "perhaps"}, "SESSIONHUB_INSECURE"),
        ({}, {"SESSIONHUB_CORS_ORIGINS": "app.example"}, "CORS"),
        ({}, {"SESSIONHUB_API_KEYS_FILE": "/nonexistent/keys"}, "keys file"),
        ({"config": "/nonexistent/x.toml"}, {}, "config file"),
    ],
)
def test_bad_values_name_their_source(flags, env, match):
    """A bad value is a SettingsError naming the flag, variable or file."""
    with pytest.raises(SettingsError, match=match):
        load_settings(flags, env)


def test_bad_config_file(tmp_path):
    """Unknown keys and invalid TOML in the file are errors."""
    bad = tmp_path / "bad.toml"
    bad.write_text("nonsense = 1\n")
    with pytest.raises(SettingsError, match="unknown setting"):
        load_settings({"config": str(bad)}, {})
    bad.write_text("port = \n")
    with pytest.raises(SettingsError, match="invalid TOML"):
        load_settings({"config": str(bad)}, {})
    bad.write_text('port = "x"\n')
    with pytest.raises(SettingsError):
        load_settings({"config": str(bad)}, {})


def test_serve_help_documents_every_flag_and_env_var():
    """sessionhub serve --help lists every option's flag and environment variable."""
    parser = build_parser()
    serve = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[
        "serve"
    ]
    text = " ".join(serve.format_help().split())
    for option in OPTIONS:
        assert option.flag in text, option.flag
        for env in option.envs:
            assert env in text, env
    assert "--config" in text and "SESSIONHUB_CONFIG" in text


def test_settings_is_frozen():
    """Settings cannot be changed once built."""
    s = Settings()
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]
