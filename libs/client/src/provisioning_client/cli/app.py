"""provctl entry point: parse, build the client, run the command, map errors to exit codes."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any

from .. import errors
from .._convert import parse_datetime
from ..client import DEFAULT_CONTROL_CENTER_URL, DEFAULT_ORCHESTRATOR_URL, ProvisioningClient
from ..models import Session
from .config import load_credentials
from .context import Context, store_session
from .exit_codes import ExitCode, exit_code_for
from .files import InputFileError
from .output import Printer
from .parser import build_parser
from .registry import Command

__all__ = ["ExitCode", "exit_code_for", "main"]


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
    ctx = Context(client=client, printer=printer, creds=creds, persist=not env_token)

    def persist(_: Session) -> None:
        # An automatic refresh rotated the tokens: keep the stored copy usable.
        if ctx.persist:
            store_session(ctx)

    client.on_session = persist
    return client, ctx


async def _run(args: argparse.Namespace) -> ExitCode:
    command: Command[Any] = args.cmd
    client, ctx = _make_client(args)
    try:
        return await command.run(ctx, args)
    except errors.ProvisioningError as exc:
        ctx.printer.error(exc.message, status=exc.status or None)
        return exit_code_for(exc)
    except (InputFileError, EOFError) as exc:
        ctx.printer.error(str(exc))
        return ExitCode.INVALID
    finally:
        await client.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(asyncio.run(_run(args)))
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return int(ExitCode.INTERRUPTED)
