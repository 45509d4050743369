"""Retention settings (env), validated at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from provisioning_common.config import EnvReader

# A window beyond this is a typo (and overflows date arithmetic long before 10**9 days).
MAX_DAYS = 36_500


@dataclass(frozen=True)
class RetentionSettings:
    enabled: bool = True
    days: int = 30
    sweep_seconds: int = 3600
    batch: int = 500

    @property
    def window(self) -> timedelta:
        return timedelta(days=self.days)

    @classmethod
    def from_env(cls, env: EnvReader) -> RetentionSettings:
        return cls(
            enabled=env.bool("RETENTION_ENABLED", True),
            days=env.int("RETENTION_DAYS", 30, low=1, high=MAX_DAYS),
            sweep_seconds=env.int("RETENTION_SWEEP_SECONDS", 3600, low=1, high=7 * 86_400),
            batch=env.int("RETENTION_BATCH", 500, low=1, high=10_000),
        )
