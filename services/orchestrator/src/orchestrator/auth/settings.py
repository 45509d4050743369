"""Orchestrator auth settings (env), validated at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from provisioning_common.config import EnvReader
from provisioning_common.remote_auth import RemoteAuthConfig


@dataclass(frozen=True)
class AuthSettings:
    config: RemoteAuthConfig
    failures_per_minute: int = 20

    @classmethod
    def from_env(cls, env: EnvReader) -> AuthSettings:
        return cls(
            RemoteAuthConfig(
                control_center_url=env.str("CONTROL_CENTER_URL", "http://127.0.0.1:9080"),
                client_id=env.str("SERVICE_CLIENT_ID", "orchestrator"),
                client_secret=env.str("SERVICE_CLIENT_SECRET", ""),
                issuer=env.str("JWT_ISSUER", "provisioning-control-center"),
                audience=env.str("JWT_AUDIENCE", "provisioning"),
                introspection_ttl=env.float("INTROSPECTION_CACHE_SECONDS", 30.0, low=0.0),
                policy_max_age=env.float("POLICY_CACHE_SECONDS", 300.0, low=1.0),
            ),
            failures_per_minute=env.int("AUTH_FAILURES_PER_MINUTE", 20, low=1),
        )
