"""Audit outbox settings (env), validated at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from provisioning_common.config import EnvReader

# The control center takes at most this many events per call.
MAX_BATCH = 500


@dataclass(frozen=True, slots=True)
class AuditSettings:
    enabled: bool = True
    max_attempts: int = 10000
    retry_max_delay: float = 30.0
    poll_seconds: float = 0.5
    batch_size: int = 200

    @classmethod
    def from_env(cls, env: EnvReader) -> AuditSettings:
        return cls(
            enabled=env.bool("AUDIT_ENABLED", True),
            max_attempts=env.int("AUDIT_MAX_ATTEMPTS", 10000, low=1),
            retry_max_delay=env.float("AUDIT_RETRY_MAX_DELAY_SECONDS", 30.0, low=0.05),
            poll_seconds=env.float("AUDIT_POLL_SECONDS", 0.5, low=0.05),
            batch_size=env.int("AUDIT_BATCH_SIZE", 200, low=1, high=MAX_BATCH),
        )
