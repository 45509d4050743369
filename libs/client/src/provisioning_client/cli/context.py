"""What every provctl command handler gets (:class:`Context`), the argument types
shared by several commands, and the small helpers handlers have in common."""

from __future__ import annotations

import getpass
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..client import ProvisioningClient
from ..models import Page
from .config import Credentials, save_credentials
from .exit_codes import ExitCode
from .output import Printer

T = TypeVar("T")


@dataclass
class Context:
    client: ProvisioningClient
    printer: Printer
    creds: Credentials
    persist: bool  # whether refreshed tokens are written back to the credentials file


# ---------------------------------------------------------------------- argument types
# Each command declares the dataclass its handler receives; its fields are read from
# the parsed command line by name (tests/unit/test_provctl_cli.py binds every command).


@dataclass(frozen=True)
class NoArgs:
    pass


@dataclass(frozen=True)
class IdArgs:
    id: str


@dataclass(frozen=True)
class FileArgs:
    file: str


@dataclass(frozen=True)
class PageArgs:
    limit: int | None
    offset: int | None
    all: bool

    def paging(self) -> dict[str, Any]:
        return {"limit": self.limit, "offset": self.offset}


# ---------------------------------------------------------------------- helpers


def prompt(text: str) -> str:
    """Read one line; prompts go to stderr so ``--output json`` stdout stays clean."""
    if sys.stdin.isatty():
        sys.stderr.write(text)
        sys.stderr.flush()
    line = sys.stdin.readline()
    if not line:
        raise EOFError(f"no input for: {text.strip()}")
    return line.rstrip("\r\n")


def secret(text: str, from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        return prompt(text)
    return getpass.getpass(text)


def store_session(ctx: Context) -> Path:
    """Write the client's current tokens to the credentials file."""
    tokens = ctx.client.tokens
    ctx.creds.token = tokens.token
    ctx.creds.expires_at = tokens.expires_at.isoformat() if tokens.expires_at else None
    ctx.creds.refresh_token = tokens.refresh_token
    ctx.creds.refresh_expires_at = (
        tokens.refresh_expires_at.isoformat() if tokens.refresh_expires_at else None
    )
    return save_credentials(ctx.creds)


async def emit_list(
    ctx: Context,
    args: PageArgs,
    page: Callable[[], Awaitable[Page[T]]],
    every: Callable[[], AsyncIterator[T]],
    columns: Sequence[str],
) -> ExitCode:
    """One page (``--limit``/``--offset``) or, with ``--all``, every item."""
    items = [item async for item in every()] if args.all else (await page()).items
    ctx.printer.emit(items, columns=columns)
    return ExitCode.OK


async def emit(ctx: Context, result: Awaitable[Any]) -> ExitCode:
    """Print the result of one call (the shape of most commands)."""
    ctx.printer.emit(await result)
    return ExitCode.OK
