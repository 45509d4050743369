"""Orchestrator settings, read once at start-up: ``Settings.from_env()`` builds every
feature's typed settings (the only place that reads the environment); a bad value
stops the service with a message naming the variable."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

from provisioning_common.config import CommonSettings, ConfigError, EnvReader, Requirement

from .audit.settings import AuditSettings
from .auth.settings import AuthSettings
from .batches.settings import BatchSettings
from .console.settings import ConsoleSettings
from .engine.process import clean_env
from .engine.settings import EngineSettings
from .events.settings import WsSettings
from .retention.settings import RetentionSettings
from .webhooks.config import WebhookSettings
from .workflows.bounds import Bounds

# In production (PROVISIONING_ENV=production, the container images' default) the
# orchestrator must be told where the control center is and how to authenticate to it;
# the defaults (loopback, an empty secret) only make sense on a laptop.
PRODUCTION_SECRETS: tuple[Requirement, ...] = ("CONTROL_CENTER_URL", "SERVICE_CLIENT_SECRET")


@dataclass(frozen=True)
class Settings:
    common: CommonSettings
    engine: EngineSettings
    auth: AuthSettings
    ws: WsSettings
    batches: BatchSettings
    bounds: Bounds
    audit: AuditSettings
    webhooks: WebhookSettings
    retention: RetentionSettings
    console: ConsoleSettings

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
        engine = EngineSettings.from_env(reader)
        # The CLI inherits (an allow-listed part of) this process's environment,
        # whatever mapping the settings themselves were read from.
        child_env = clean_env(os.environ, engine.env_allowlist, engine.env_prefixes)
        return cls(
            common=common,
            engine=replace(engine, child_env=child_env),
            auth=AuthSettings.from_env(reader),
            ws=WsSettings.from_env(reader),
            batches=BatchSettings.from_env(reader),
            bounds=Bounds.from_env(reader),
            audit=AuditSettings.from_env(reader),
            # Read now so that a bad [webhooks] section stops the start with its message.
            webhooks=WebhookSettings.from_toml(common.toml),
            retention=RetentionSettings.from_env(reader),
            console=ConsoleSettings.from_env(reader),
        )
