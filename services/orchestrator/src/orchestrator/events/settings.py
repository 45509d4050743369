"""Events feature settings (env), validated at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from provisioning_common.config import EnvReader


@dataclass(frozen=True)
class WsSettings:
    heartbeat_seconds: float = 15.0
    ping_seconds: float = 30.0
    queue_size: int = 1000
    replay_limit: int = 10000
    replay_cache: int = 10000  # recent events kept in the Redis replay stream; 0: none
    # The token and the connection's right to read events are re-checked this often,
    # whatever the traffic (and at once on a revocation event, and at the token's exp).
    reauth_seconds: float = 30.0
    max_connections_per_user: int = 10

    @classmethod
    def from_env(cls, env: EnvReader) -> WsSettings:
        return cls(
            heartbeat_seconds=env.float("WS_HEARTBEAT_SECONDS", 15.0, low=0.1),
            ping_seconds=env.float("WS_PING_SECONDS", 30.0, low=1.0),
            queue_size=env.int("WS_QUEUE_SIZE", 1000, low=1),
            replay_limit=env.int("WS_REPLAY_LIMIT", 10000, low=1),
            replay_cache=env.int("WS_REPLAY_CACHE", 10000, low=0),
            reauth_seconds=min(30.0, env.float("WS_REAUTH_SECONDS", 30.0, low=0.5)),
            max_connections_per_user=env.int("WS_MAX_CONNECTIONS_PER_USER", 10, low=1),
        )
