"""Time helpers: every stored and returned instant is timezone-aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """MongoDB returns naive datetimes unless the client is tz-aware; normalise."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_iso8601(text: str) -> datetime:
    """Parse an ISO 8601 instant (``Z`` accepted); naive input is taken as UTC."""
    return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
