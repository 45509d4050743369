"""provctl entry point: parse, build the client, run the handler, map errors to exit codes."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from .. import errors
from .._convert import parse_datetime
from ..client import DEFAULT_CONTROL_CENTER_URL, DEFAULT_ORCHESTRATOR_URL, ProvisioningClient
from ..models import Session
from .commands import HANDLERS, Context, _store_session
from .config import load_credentials
from .files import InputFileError
from .output import Printer
from .parser import build_parser

EXIT_ERROR = 1
EXIT_AUTH = 3
EXIT_FORBIDDEN = 4
EXIT_NOT_FOUND = 5
EXIT_CONFLICT = 6
EXIT_INVALID = 7
EXIT_RATE_LIMITED = 8
EXIT_UNAVAILABLE = 9
EXIT_INTERRUPTED = 130

_EXIT_BY_ERROR: list[tuple[type[errors.ProvisioningError], int]] = [
    (errors.AuthenticationError, EXIT_AUTH),
    (errors.PermissionDeniedError, EXIT_FORBIDDEN),
    (errors.NotFoundError, EXIT_NOT_FOUND),
    (errors.ConflictError, EXIT_CONFLICT),
    (errors.BadRequestError, EXIT_INVALID),
    (errors.ValidationError, EXIT_INVALID),
    (errors.PayloadTooLargeError, EXIT_INVALID),
    (errors.RateLimitError, EXIT_RATE_LIMITED),
    (errors.ServerError, EXIT_UNAVAILABLE),
    (errors.TransportError, EXIT_UNAVAILABLE),
]


def exit_code_for(exc: errors.ProvisioningError) -> int:
    for cls, code in _EXIT_BY_ERROR:
        if isinstance(exc, cls):
            return code
    return EXIT_ERROR


def _make_client(args: argparse.Namespace) -> tuple[ProvisioningClient, Context]:
    creds = load_credentials()
    env_token = os.environ.get("PROVCTL_TOKEN")
    orch = (
        getattr(args, "orchestrator_url", None)
        or os.environ.get("PROVISIONING_ORCHESTRATOR_URL")
        or creds.orchestrator_url
        or DEFAULT_ORCHESTRATOR_URL
    )
    cc = (
        getattr(args, "control_center_url", None)
        or os.environ.get("PROVISIONING_CONTROL_CENTER_URL")
        or creds.control_center_url
        or DEFAULT_CONTROL_CENTER_URL
    )
    if env_token:
        client = ProvisioningClient(orch, cc, token=env_token)
    else:
        client = ProvisioningClient(
            orch,
            cc,
            token=creds.token,
            expires_at=parse_datetime(creds.expires_at),
            refresh_token=creds.refresh_token,
            refresh_expires_at=parse_datetime(creds.refresh_expires_at),
        )
    printer = Printer(getattr(args, "output", "table"))
    ctx = Context(
        client=client,
        printer=printer,
        creds=creds,
        args=args,
        persist=not env_token and args.handler != "login",
    )

    def persist(_: Session) -> None:
        # An automatic refresh rotated the tokens: keep the stored copy usable.
        if ctx.persist:
            _store_session(ctx)

    client.on_session = persist
    return client, ctx


async def _run(args: argparse.Namespace) -> int:
    client, ctx = _make_client(args)
    try:
        return await HANDLERS[args.handler](ctx)
    except errors.ProvisioningError as exc:
        ctx.printer.error(exc.message, status=exc.status or None)
        return exit_code_for(exc)
    except (InputFileError, EOFError) as exc:
        ctx.printer.error(str(exc))
        return EXIT_INVALID
    finally:
        await client.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
