"""provctl's exit codes: the one enum every command returns, and the mapping from
SDK errors to codes."""

from __future__ import annotations

from enum import IntEnum

from .. import errors


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2  # argparse exits with it on a bad command line
    AUTH = 3
    FORBIDDEN = 4
    NOT_FOUND = 5
    CONFLICT = 6
    INVALID = 7
    RATE_LIMITED = 8
    UNAVAILABLE = 9
    WORKFLOW_FAILED = 10
    WATCH_TIMEOUT = 11
    INTERRUPTED = 130

    @property
    def meaning(self) -> str:
        return _MEANINGS[self]


_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.ERROR: "other API error",
    ExitCode.USAGE: "usage error",
    ExitCode.AUTH: "not logged in / authentication failed (401)",
    ExitCode.FORBIDDEN: "permission denied (403)",
    ExitCode.NOT_FOUND: "not found (404)",
    ExitCode.CONFLICT: "conflict (409)",
    ExitCode.INVALID: "invalid input (400, 413, 422, bad file)",
    ExitCode.RATE_LIMITED: "rate limited (429)",
    ExitCode.UNAVAILABLE: "service unreachable or server error (5xx)",
    ExitCode.WORKFLOW_FAILED: "watched workflow finished Failed or Cancelled",
    ExitCode.WATCH_TIMEOUT: "watch timed out",
    ExitCode.INTERRUPTED: "interrupted",
}

EXIT_CODES_HELP = "exit codes:\n" + "".join(
    f"  {code.value:<3} {code.meaning}\n" for code in ExitCode
)

# First match wins: subclasses (e.g. MfaRequiredError) before their bases.
_BY_ERROR: list[tuple[type[errors.ProvisioningError], ExitCode]] = [
    (errors.AuthenticationError, ExitCode.AUTH),
    (errors.PermissionDeniedError, ExitCode.FORBIDDEN),
    (errors.NotFoundError, ExitCode.NOT_FOUND),
    (errors.ConflictError, ExitCode.CONFLICT),
    (errors.BadRequestError, ExitCode.INVALID),
    (errors.ValidationError, ExitCode.INVALID),
    (errors.PayloadTooLargeError, ExitCode.INVALID),
    (errors.RateLimitError, ExitCode.RATE_LIMITED),
    (errors.ServerError, ExitCode.UNAVAILABLE),
    (errors.TransportError, ExitCode.UNAVAILABLE),
]


def exit_code_for(exc: errors.ProvisioningError) -> ExitCode:
    for cls, code in _BY_ERROR:
        if isinstance(exc, cls):
            return code
    return ExitCode.ERROR
