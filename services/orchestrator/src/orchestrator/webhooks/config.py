"""The contract's TOML ``[webhooks]`` section, validated at start-up::

[webhooks]
enabled = true
max_attempts = 8              # optional: attempts per delivery before it is "failed"
timeout_seconds = 10          # optional: per attempt (connect + response)
backoff_base_seconds = 2      # optional: first retry delay; doubles, with jitter
backoff_max_seconds = 300     # optional: cap of the retry delay
endpoints = [
  { url = "https://your-system.com/webhook", events = ["task.completed"], secret = "..." },
]
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from provisioning_common.config import ConfigError

from .model import SOURCE_EVENT_TYPES, WEBHOOK_EVENTS, webhook_event


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    url: str
    events: frozenset[str]
    secret: str = field(repr=False)  # never logged


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    enabled: bool = False
    endpoints: tuple[Endpoint, ...] = ()
    max_attempts: int = 8
    timeout_seconds: float = 10.0
    backoff_base_seconds: float = 2.0
    backoff_max_seconds: float = 300.0
    poll_seconds: float = 0.5

    def endpoint(self, endpoint_id: str) -> Endpoint | None:
        return next((e for e in self.endpoints if e.id == endpoint_id), None)

    def subscribed(self, event: str) -> list[Endpoint]:
        return [e for e in self.endpoints if event in e.events]

    @property
    def routes_events(self) -> bool:
        """Whether events should reach ``event_inbox`` at all: enabled, with endpoints."""
        return self.enabled and bool(self.endpoints)

    def wants(self, event_type: str, data: Mapping[str, Any]) -> bool:
        """Whether an orchestrator event becomes a delivery to some endpoint (the
        publisher's inbox selector, ``EventPublisher.route_to_inbox``)."""
        if not self.enabled or event_type not in SOURCE_EVENT_TYPES:
            return False
        name = webhook_event(event_type, data)
        return name is not None and bool(self.subscribed(name))

    @classmethod
    def from_toml(cls, toml: Mapping[str, Any]) -> WebhookSettings:
        section = toml.get("webhooks")
        if section is None:
            return cls()
        if not isinstance(section, Mapping):
            raise ConfigError("[webhooks] must be a table")
        enabled = section.get("enabled", False)
        if not isinstance(enabled, bool):
            raise ConfigError("webhooks.enabled must be true or false")
        raw_endpoints = section.get("endpoints", [])
        if not isinstance(raw_endpoints, list):
            raise ConfigError("webhooks.endpoints must be an array of tables")
        endpoints = tuple(_endpoint(i, e) for i, e in enumerate(raw_endpoints))
        ids = [e.id for e in endpoints]
        if len(set(ids)) != len(ids):
            raise ConfigError("webhooks.endpoints: the same url is configured twice")
        return cls(
            enabled=enabled,
            endpoints=endpoints,
            max_attempts=_number(section, "max_attempts", 8, 1, 100, integer=True),
            timeout_seconds=_number(section, "timeout_seconds", 10.0, 0.1, 120),
            backoff_base_seconds=_number(section, "backoff_base_seconds", 2.0, 0.01, 3600),
            backoff_max_seconds=_number(section, "backoff_max_seconds", 300.0, 0.01, 86400),
            poll_seconds=_number(section, "poll_seconds", 0.5, 0.05, 60),
        )


def display_url(url: str) -> str:
    """The URL without credentials, query or fragment: some receivers put a secret
    there (``https://hooks.example/services/T0/B0?token=...``)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def endpoint_id(url: str) -> str:
    """Stable id of an endpoint: the same URL keeps its deliveries across restarts."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def _endpoint(index: int, raw: Any) -> Endpoint:
    where = f"webhooks.endpoints[{index}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a table")
    url = raw.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme not in {"http", "https"}:
        raise ConfigError(f"{where}.url must be an http(s) URL")
    if not urlsplit(url).hostname:
        raise ConfigError(f"{where}.url has no host")
    events = raw.get("events")
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise ConfigError(f"{where}.events must be a non-empty list of event names")
    unknown = sorted(set(events) - WEBHOOK_EVENTS)
    if unknown:
        raise ConfigError(
            f"{where}.events: unknown {', '.join(unknown)}; "
            f"known: {', '.join(sorted(WEBHOOK_EVENTS))}"
        )
    secret = raw.get("secret")
    if not isinstance(secret, str) or len(secret) < 8:
        raise ConfigError(f"{where}.secret must be a string of at least 8 characters")
    return Endpoint(id=endpoint_id(url), url=url, events=frozenset(events), secret=secret)


def _number(
    section: Mapping[str, Any],
    name: str,
    default: float,
    low: float,
    high: float,
    *,
    integer: bool = False,
) -> Any:
    value = section.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"webhooks.{name} must be a number")
    if integer and not isinstance(value, int):
        raise ConfigError(f"webhooks.{name} must be an integer")
    if not low <= value <= high:
        raise ConfigError(f"webhooks.{name} must be between {low} and {high}")
    return value
