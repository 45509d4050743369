"""Token bookkeeping: when to refresh, and what to refresh with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .models import Session


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


@dataclass(slots=True)
class TokenState:
    """The current credentials and when they were obtained.

    A token is renewed ``margin`` before it expires, where ``margin`` is the
    configured lead time but never more than a fifth of the token's lifetime (a
    60 s lead on a 30 s token would refresh on every call)."""

    token: str | None = None
    expires_at: datetime | None = None
    refresh_token: str | None = None
    refresh_expires_at: datetime | None = None
    obtained_at: datetime | None = None

    def __post_init__(self) -> None:
        # Naive datetimes given by callers are taken as UTC (comparisons need aware ones).
        self.expires_at = _aware(self.expires_at)
        self.refresh_expires_at = _aware(self.refresh_expires_at)

    @classmethod
    def from_session(cls, session: Session) -> TokenState:
        return cls(
            token=session.token,
            expires_at=_aware(session.expires_at),
            refresh_token=session.refresh_token,
            refresh_expires_at=_aware(session.refresh_expires_at),
            obtained_at=utcnow(),
        )

    def update(self, session: Session) -> None:
        self.token = session.token
        self.expires_at = _aware(session.expires_at)
        if session.refresh_token:
            self.refresh_token = session.refresh_token
            self.refresh_expires_at = _aware(session.refresh_expires_at)
        self.obtained_at = utcnow()

    def clear(self) -> None:
        self.token = self.refresh_token = None
        self.expires_at = self.refresh_expires_at = self.obtained_at = None

    def refresh_due(self, margin: float, now: datetime | None = None) -> bool:
        if not self.token or self.expires_at is None:
            return False
        now = now or utcnow()
        lead = timedelta(seconds=margin)
        if self.obtained_at is not None:
            lifetime = self.expires_at - self.obtained_at
            lead = min(lead, lifetime / 5)
        return now >= self.expires_at - lead

    def refresh_credential(self, now: datetime | None = None) -> str | None:
        """The refresh token while it is valid, else the (still valid) access token."""
        now = now or utcnow()
        if self.refresh_token and (
            self.refresh_expires_at is None or now < self.refresh_expires_at
        ):
            return self.refresh_token
        if self.token and (self.expires_at is None or now < self.expires_at):
            return self.token
        return None
