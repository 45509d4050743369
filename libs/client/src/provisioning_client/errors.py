"""Typed exceptions raised by the SDK.

Every error carries the HTTP ``status`` and the contract's ``error`` message
(``{"success": false, "error": "..."}``) so callers can branch on the type and show
the server's own words."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ProvisioningError(Exception):
    """Base of every SDK error."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class TransportError(ProvisioningError):
    """The service could not be reached or answered with something that is not the envelope."""


class ApiError(ProvisioningError):
    """The service answered ``success: false`` (or a non-2xx status)."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        method: str = "",
        url: str = "",
    ) -> None:
        super().__init__(message, status=status)
        self.details = dict(details) if details else None
        self.headers = dict(headers or {})
        self.method = method
        self.url = url

    def __str__(self) -> str:
        return f"{self.status}: {self.message}"


class BadRequestError(ApiError):
    """400: invalid request parameters."""


class AuthenticationError(ApiError):
    """401: missing, invalid, expired or revoked credentials."""


class MfaRequiredError(AuthenticationError):
    """401 from login because the account has MFA enrolled and no/wrong code was given."""


class PermissionDeniedError(ApiError):
    """403: the policy engine denied the action (or the account is locked)."""


class NotFoundError(ApiError):
    """404."""


class NotAcceptableError(ApiError):
    """406: unsupported API version."""


class ConflictError(ApiError):
    """409: duplicate, idempotency-key clash or state conflict."""


class PayloadTooLargeError(ApiError):
    """413."""


class ValidationError(ApiError):
    """422: the body failed validation; ``details`` may hold field errors."""


class RateLimitError(ApiError):
    """429; ``retry_after`` is the server's ``Retry-After`` in seconds."""

    @property
    def retry_after(self) -> float | None:
        raw = self.headers.get("Retry-After")
        try:
            return float(raw) if raw is not None else None
        except ValueError:
            return None


class ServerError(ApiError):
    """5xx other than 503."""


class ServiceUnavailableError(ServerError):
    """503: a dependency (control center, Redis, database) is unavailable."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    406: NotAcceptableError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: ValidationError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def error_for_status(
    status: int,
    message: str,
    *,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    method: str = "",
    url: str = "",
    is_login: bool = False,
) -> ApiError:
    """Map a status (and, for login, the MFA wording) to the exception type."""
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else ApiError
    if status == 401 and is_login and ("mfa" in message.lower() or "totp" in message.lower()):
        cls = MfaRequiredError
    return cls(message, status=status, details=details, headers=headers, method=method, url=url)
