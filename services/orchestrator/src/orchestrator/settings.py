"""Orchestrator settings, read once at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from provisioning_common.config import CommonSettings, ConfigError, EnvReader, Requirement

# In production (PROVISIONING_ENV=production, the container images' default) the
# orchestrator must be told where the control center is and how to authenticate to it;
# the defaults (loopback, an empty secret) only make sense on a laptop.
PRODUCTION_SECRETS: tuple[Requirement, ...] = ("CONTROL_CENTER_URL", "SERVICE_CLIENT_SECRET")


@dataclass(frozen=True)
class Settings:
    common: CommonSettings

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        reader = EnvReader(env)
        common = CommonSettings.from_env(
            reader,
            service="orchestrator",
            default_port=9090,
            default_database="provisioning_orchestrator",
            production_requires=PRODUCTION_SECRETS,
        )
        secret = reader.optional("SERVICE_CLIENT_SECRET")
        if common.production and secret is not None and len(secret) < 16:
            # the control center refuses service-client secrets this short (SERVICE_CLIENTS)
            raise ConfigError("SERVICE_CLIENT_SECRET must be 16+ characters")
        return cls(common=common)
