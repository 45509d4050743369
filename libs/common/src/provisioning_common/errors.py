"""Exception hierarchy mapped to the contract's status codes.

Handlers and domain code raise these; the one error middleware
(:mod:`provisioning_common.middleware`) turns them into the envelope.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error whose message is safe to show to the client."""

    status: int = 500
    default_message: str = "Internal server error"

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details
        self.headers = headers or {}
        super().__init__(self.message)


class BadRequest(ApiError):
    status = 400
    default_message = "Bad request"


class Unauthorized(ApiError):
    status = 401
    default_message = "Authentication required"

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("WWW-Authenticate", "Bearer")


class Forbidden(ApiError):
    status = 403
    default_message = "Permission denied"


class NotFound(ApiError):
    status = 404
    default_message = "Not found"


class MethodNotAllowed(ApiError):
    status = 405
    default_message = "Method not allowed"


class NotAcceptable(ApiError):
    status = 406
    default_message = "Unsupported API version"


class Conflict(ApiError):
    status = 409
    default_message = "Conflict"


class PayloadTooLarge(ApiError):
    status = 413
    default_message = "Request body too large"


class UnprocessableEntity(ApiError):
    status = 422
    default_message = "Validation error"


class TooManyRequests(ApiError):
    status = 429
    default_message = "Rate limit exceeded"

    def __init__(self, retry_after: int, message: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = max(1, int(retry_after))
        self.headers["Retry-After"] = str(self.retry_after)


class ServiceUnavailable(ApiError):
    """A dependency is down or busy: the client may retry, and is told when."""

    status = 503
    default_message = "Service unavailable"
    retry_after_seconds = 5

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("Retry-After", str(self.retry_after_seconds))
