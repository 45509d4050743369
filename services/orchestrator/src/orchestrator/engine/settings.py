"""Engine settings (env), validated at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from provisioning_common.config import ConfigError, EnvReader

DEFAULT_CLI = "/usr/local/provisioning"


@dataclass(frozen=True)
class EngineSettings:
    cli: str = DEFAULT_CLI
    enabled: bool = True
    concurrency: int = 8
    poll_seconds: float = 0.5
    lease_seconds: float = 15.0
    heartbeat_seconds: float = 5.0
    timeout_seconds: float = 3600.0
    max_attempts: int = 3
    retry_backoff_seconds: float = 2.0
    kill_grace_seconds: float = 5.0
    output_max_bytes: int = 1024 * 1024
    env_allowlist: tuple[str, ...] = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
    env_prefixes: tuple[str, ...] = ("PROVISIONING_SIM_",)
    shutdown_grace_seconds: float = 10.0
    scan_limit: int = 200
    # The environment the CLI's (filtered) environment is taken from: the process
    # environment, captured by ``Settings.from_env``; None lets the engine read it.
    child_env: Mapping[str, str] | None = None

    @classmethod
    def from_env(cls, env: EnvReader) -> EngineSettings:
        lease = env.float("ENGINE_LEASE_SECONDS", 15.0, low=1.0)
        heartbeat = env.float("ENGINE_HEARTBEAT_SECONDS", lease / 3, low=0.1)
        if heartbeat >= lease:
            raise ConfigError("ENGINE_HEARTBEAT_SECONDS must be smaller than ENGINE_LEASE_SECONDS")
        return cls(
            cli=env.str("PROVISIONING_CLI", DEFAULT_CLI),
            enabled=env.bool("ENGINE_ENABLED", True),
            concurrency=env.int("ENGINE_CONCURRENCY", 8, low=1, high=1024),
            poll_seconds=env.float("ENGINE_POLL_SECONDS", 0.5, low=0.01),
            lease_seconds=lease,
            heartbeat_seconds=heartbeat,
            timeout_seconds=env.float("TASK_TIMEOUT_SECONDS", 3600.0, low=0.1),
            max_attempts=env.int("TASK_MAX_ATTEMPTS", 3, low=1, high=100),
            retry_backoff_seconds=env.float("TASK_RETRY_BACKOFF_SECONDS", 2.0, low=0.0),
            kill_grace_seconds=env.float("TASK_KILL_GRACE_SECONDS", 5.0, low=0.0),
            output_max_bytes=env.int("TASK_OUTPUT_MAX_BYTES", 1024 * 1024, low=1024),
            env_allowlist=tuple(
                env.list("TASK_ENV_ALLOWLIST", ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"])
            ),
            env_prefixes=tuple(env.list("TASK_ENV_PREFIXES", ["PROVISIONING_SIM_"])),
            shutdown_grace_seconds=env.float("ENGINE_SHUTDOWN_GRACE_SECONDS", 10.0, low=0.0),
        )
