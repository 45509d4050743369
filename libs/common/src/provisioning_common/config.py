"""Configuration from environment variables plus an optional TOML file
(``PROVISIONING_CONFIG``) for structured sections such as ``[webhooks]``.

Every value is validated at start-up; a bad one stops the service with a message
naming the variable, never later with a stack trace."""

from __future__ import annotations

import builtins
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A configuration value is missing or invalid."""


class EnvReader:
    """Typed access to environment variables with clear errors."""

    def __init__(self, env: Mapping[builtins.str, builtins.str] | None = None) -> None:
        self.env = os.environ if env is None else env

    def str(self, name: builtins.str, default: builtins.str | None = None) -> builtins.str:
        value = self.env.get(name)
        if value is None or value == "":
            if default is None:
                raise ConfigError(f"{name} is required")
            return default
        return value

    def optional(self, name: builtins.str) -> builtins.str | None:
        value = self.env.get(name)
        return value if value else None

    def int(
        self,
        name: builtins.str,
        default: builtins.int,
        *,
        low: builtins.int | None = None,
        high: builtins.int | None = None,
    ) -> builtins.int:
        raw = self.env.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError as exc:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
        if low is not None and value < low:
            raise ConfigError(f"{name} must be >= {low}, got {value}")
        if high is not None and value > high:
            raise ConfigError(f"{name} must be <= {high}, got {value}")
        return value

    def float(
        self, name: builtins.str, default: builtins.float, *, low: builtins.float | None = None
    ) -> builtins.float:
        raw = self.env.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = float(raw)
        except ValueError as exc:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
        if low is not None and value < low:
            raise ConfigError(f"{name} must be >= {low}, got {value}")
        return value

    def bool(self, name: builtins.str, default: builtins.bool) -> builtins.bool:
        raw = self.env.get(name)
        if raw is None or raw == "":
            return default
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{name} must be a boolean (true/false), got {raw!r}")

    def list(
        self, name: builtins.str, default: builtins.list[builtins.str] | None = None
    ) -> builtins.list[builtins.str]:
        raw = self.env.get(name)
        if raw is None or raw.strip() == "":
            return list(default or [])
        return [item.strip() for item in raw.split(",") if item.strip()]


def load_toml(env: EnvReader) -> dict[str, Any]:
    """Read the TOML file named by ``PROVISIONING_CONFIG``, or nothing."""
    path = env.optional("PROVISIONING_CONFIG")
    if path is None:
        return {}
    try:
        with Path(path).open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"PROVISIONING_CONFIG: file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"PROVISIONING_CONFIG: invalid TOML in {path}: {exc}") from exc


ENVIRONMENTS = ("development", "production")
# Storage endpoints a production process must be given: the loopback defaults are a
# development convenience (and point at servers without authentication).
PRODUCTION_STORAGE = ("MONGODB_URL", "REDIS_URL")

Requirement = str | tuple[str, ...]
"""A variable, or alternatives of which one is enough (``("JWT_PRIVATE_KEY",
"JWT_PRIVATE_KEY_FILE")``)."""


def environment(env: EnvReader) -> str:
    """``PROVISIONING_ENV``: ``development`` (the default: ``make run``, the tests) or
    ``production`` (the default in the container images). Production refuses to start
    without the secrets a service would otherwise generate or default."""
    value = env.str("PROVISIONING_ENV", "development").strip().lower()
    if value not in ENVIRONMENTS:
        raise ConfigError(f"PROVISIONING_ENV must be development or production, got {value!r}")
    return value


def require_in_production(env: EnvReader, required: Sequence[Requirement]) -> None:
    """One ConfigError naming every missing variable (not only the first)."""
    missing: list[str] = []
    for item in required:
        names = (item,) if isinstance(item, str) else item
        if not any(env.optional(name) for name in names):
            missing.append(" or ".join(names))
    if missing:
        raise ConfigError(
            "PROVISIONING_ENV=production requires "
            + ", ".join(missing)
            + " (set from secrets; PROVISIONING_ENV=development for a local run)"
        )


@dataclass(frozen=True)
class RateLimits:
    """Requests per window; the contract's defaults."""

    auth_per_minute: int = 5
    general_per_minute: int = 100
    batch_per_minute: int = 10
    window_seconds: int = 60
    enabled: bool = True


@dataclass(frozen=True)
class CommonSettings:
    """Settings both services share."""

    service: str
    host: str
    port: int
    mongodb_url: str
    database: str
    redis_url: str
    log_level: str = "INFO"
    max_body_bytes: int = 1024 * 1024
    cors_origins: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    path_prefix: str = ""
    rate_limits: RateLimits = field(default_factory=RateLimits)
    metrics_token: str | None = None
    toml: Mapping[str, Any] = field(default_factory=dict)
    environment: str = "development"
    shutdown_grace_seconds: float = 20.0  # HTTP drain on SIGTERM

    @property
    def production(self) -> bool:
        return self.environment == "production"

    @classmethod
    def from_env(
        cls,
        env: EnvReader,
        *,
        service: str,
        default_port: int,
        default_database: str,
        production_requires: Sequence[Requirement] = (),
    ) -> CommonSettings:
        """``production_requires``: the service's own secrets, required (with the
        storage URLs) when ``PROVISIONING_ENV=production``."""
        mode = environment(env)
        if mode == "production":
            require_in_production(env, [*PRODUCTION_STORAGE, *production_requires])
        prefix = env.str("PATH_PREFIX", "").rstrip("/")
        if prefix and not prefix.startswith("/"):
            raise ConfigError("PATH_PREFIX must start with '/'")
        level = env.str("LOG_LEVEL", "INFO").upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {level!r}")
        return cls(
            service=service,
            host=env.str("HOST", "0.0.0.0"),  # noqa: S104 - a container listens on all interfaces
            port=env.int("PORT", default_port, low=1, high=65535),
            mongodb_url=env.str("MONGODB_URL", "mongodb://127.0.0.1:27017"),
            database=env.str("MONGODB_DATABASE", default_database),
            redis_url=env.str("REDIS_URL", "redis://127.0.0.1:6379/0"),
            log_level=level,
            max_body_bytes=env.int("MAX_BODY_BYTES", 1024 * 1024, low=1024),
            cors_origins=tuple(env.list("CORS_ORIGINS")),
            trusted_proxies=tuple(env.list("TRUSTED_PROXIES")),
            path_prefix=prefix,
            rate_limits=RateLimits(
                auth_per_minute=env.int("RATE_LIMIT_AUTH_PER_MINUTE", 5, low=1),
                general_per_minute=env.int("RATE_LIMIT_GENERAL_PER_MINUTE", 100, low=1),
                batch_per_minute=env.int("RATE_LIMIT_BATCH_PER_MINUTE", 10, low=1),
                window_seconds=env.int("RATE_LIMIT_WINDOW_SECONDS", 60, low=1),
                enabled=env.bool("RATE_LIMIT_ENABLED", True),
            ),
            metrics_token=env.optional("METRICS_TOKEN"),
            toml=load_toml(env),
            environment=mode,
            shutdown_grace_seconds=env.float("SHUTDOWN_GRACE_SECONDS", 20.0, low=0.0),
        )
