"""Configuration: typed env reading with clear errors, and the optional TOML file."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioning_common.config import CommonSettings, ConfigError, EnvReader


def settings(env: dict[str, str]) -> CommonSettings:
    return CommonSettings.from_env(
        EnvReader(env), service="svc", default_port=9090, default_database="db"
    )


def test_defaults() -> None:
    s = settings({})
    assert s.port == 9090
    assert s.database == "db"
    assert s.max_body_bytes == 1024 * 1024
    assert s.rate_limits.auth_per_minute == 5
    assert s.rate_limits.general_per_minute == 100
    assert s.rate_limits.batch_per_minute == 10
    assert s.toml == {}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "abc"}, "PORT must be an integer"),
        ({"PORT": "70000"}, "PORT must be <= 65535"),
        ({"RATE_LIMIT_ENABLED": "maybe"}, "RATE_LIMIT_ENABLED must be a boolean"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL must be"),
        ({"PATH_PREFIX": "api"}, "PATH_PREFIX must start with '/'"),
        ({"PROVISIONING_CONFIG": "/nonexistent/x.toml"}, "file not found"),
    ],
)
def test_invalid_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(env)


def test_toml_file_is_loaded(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[webhooks]\nenabled = true\nendpoints = [\n  { url = "http://127.0.0.1:1/hook", '
        'events = ["task.completed"], secret = "s" },\n]\n'
    )
    s = settings({"PROVISIONING_CONFIG": str(path)})
    assert s.toml["webhooks"]["enabled"] is True
    assert s.toml["webhooks"]["endpoints"][0]["events"] == ["task.completed"]


def test_invalid_toml_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[webhooks\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        settings({"PROVISIONING_CONFIG": str(path)})


def test_lists_and_required() -> None:
    reader = EnvReader({"CORS_ORIGINS": "https://a.example, https://b.example,"})
    assert reader.list("CORS_ORIGINS") == ["https://a.example", "https://b.example"]
    with pytest.raises(ConfigError, match="X is required"):
        reader.str("X")
