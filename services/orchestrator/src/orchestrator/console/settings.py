"""Console settings (env), validated at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from provisioning_common.config import ConfigError, EnvReader

# The repository's console/dist when the orchestrator runs from a checkout (editable
# install): services/orchestrator/src/orchestrator/console/ -> the repository root.
DEFAULT_DIST = Path(__file__).resolve().parents[5] / "console" / "dist"


@dataclass(frozen=True)
class ConsoleSettings:
    enabled: bool
    dist_dir: Path
    # What the browser calls for sign-in, users, policies and the audit log.
    control_center_url: str

    @classmethod
    def from_env(cls, reader: EnvReader) -> ConsoleSettings:
        url = reader.optional("CONTROL_CENTER_PUBLIC_URL") or reader.str(
            "CONTROL_CENTER_URL", "http://127.0.0.1:9080"
        )
        if not url.startswith(("http://", "https://")) or any(c in url for c in " ;,'\""):
            raise ConfigError("CONTROL_CENTER_PUBLIC_URL must be an http(s) URL")
        return cls(
            enabled=reader.bool("CONSOLE_ENABLED", True),
            dist_dir=Path(reader.str("CONSOLE_DIST_DIR", str(DEFAULT_DIST))).resolve(),
            control_center_url=url.rstrip("/"),
        )
