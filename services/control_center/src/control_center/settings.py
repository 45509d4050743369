"""Control center settings, read once at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from provisioning_common.config import CommonSettings, EnvReader


@dataclass(frozen=True)
class Settings:
    common: CommonSettings

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        reader = EnvReader(env)
        common = CommonSettings.from_env(
            reader,
            service="control_center",
            default_port=9080,
            default_database="provisioning_control_center",
        )
        return cls(common=common)
