"""``provctl audit logs|verify|export``.

``provctl audit export [FILE]`` writes the tamper-evident chain as NDJSON (stdout
by default); ``provctl audit verify FILE`` checks such an export offline against
the control center's public keys (``/.well-known/jwks.json``, or ``--jwks FILE``)
and exits 7 naming the first broken sequence number; ``provctl audit verify``
without a file asks the control center (``GET /audit/verify``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ...audit_offline import AuditVerification
from ..context import Context, PageArgs, emit_list
from ..exit_codes import ExitCode
from ..files import InputFileError, load_document
from ..registry import Commands, add_paging

AUDIT_COLUMNS = ["timestamp", "user_id", "action", "resource", "result"]


@dataclass(frozen=True)
class LogsArgs(PageArgs):
    user_id: str | None
    action: str | None
    resource: str | None
    since: str | None
    until: str | None

    def filters(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "action": self.action,
            "resource": self.resource,
            "since": self.since,
            "until": self.until,
        }


async def logs(ctx: Context, args: LogsArgs) -> ExitCode:
    audit = ctx.client.audit
    return await emit_list(
        ctx,
        args,
        lambda: audit.logs(**args.filters(), **args.paging()),
        lambda: audit.iter_logs(**args.filters()),
        AUDIT_COLUMNS,
    )


@dataclass(frozen=True)
class VerifyArgs:
    file: str | None
    jwks: str | None
    from_seq: int | None
    to_seq: int | None


@dataclass(frozen=True)
class ExportArgs:
    file: str | None
    from_seq: int | None
    to_seq: int | None


def _lines(name: str) -> Iterator[bytes]:
    """The file's lines, read as they are consumed (``-`` is stdin)."""
    if name == "-":
        yield from sys.stdin.buffer
        return
    try:
        handle = Path(name).open("rb")  # noqa: SIM115 - closed below, a generator
    except OSError as exc:
        raise InputFileError(f"cannot read {name}: {exc.strerror}") from exc
    with handle:
        yield from handle


def _output(name: str | None) -> IO[bytes]:
    if name in (None, "-"):
        return sys.stdout.buffer
    try:
        return Path(str(name)).open("wb")
    except OSError as exc:
        raise InputFileError(f"cannot write {name}: {exc.strerror}") from exc


def _report(ctx: Context, result: AuditVerification) -> ExitCode:
    ctx.printer.emit(result)
    error = result.first_error
    if result.valid or error is None:
        ctx.printer.info(f"audit chain valid: {result.checked} records checked")
        return ExitCode.OK
    ctx.printer.info(
        f"audit chain broken at seq {error.get('seq')}: {error.get('kind')} ({error.get('detail')})"
    )
    return ExitCode.INVALID


async def verify(ctx: Context, args: VerifyArgs) -> ExitCode:
    audit = ctx.client.audit
    if args.file is None:
        result = await audit.verify(from_seq=args.from_seq, to_seq=args.to_seq)
        return _report(ctx, result)
    jwks: dict[str, Any] | None = load_document(args.jwks) if args.jwks else None
    return _report(ctx, await audit.verify_export(_lines(args.file), jwks=jwks))


async def export(ctx: Context, args: ExportArgs) -> ExitCode:
    lines = ctx.client.audit.export_lines(from_seq=args.from_seq, to_seq=args.to_seq)
    out = _output(args.file)
    records = 0
    try:
        async for line in lines:
            out.write(line)
            records += line.startswith(b'{"type":"record"')
    finally:
        out.flush()
        if out is not sys.stdout.buffer:
            out.close()
    if args.file not in (None, "-"):
        summary = {"file": args.file, "records": records}
        ctx.printer.emit(summary if ctx.printer.json else json.dumps(summary))
    return ExitCode.OK


def register(cli: Commands) -> None:
    au = cli.group("audit", "audit log")
    p = au.command("logs", "query the audit log", logs, LogsArgs)
    p.add_argument("--user-id")
    p.add_argument("--action")
    p.add_argument("--resource")
    p.add_argument("--from", dest="since", help="ISO 8601 start")
    p.add_argument("--to", dest="until", help="ISO 8601 end")
    add_paging(p)
    p = au.command(
        "verify",
        "verify the tamper-evident chain: an export FILE offline (JWKS of the control "
        "center), or without FILE on the control center; exit 7 on the first broken seq",
        verify,
        VerifyArgs,
    )
    p.add_argument("file", nargs="?", help="NDJSON from 'provctl audit export' ('-': stdin)")
    p.add_argument("--jwks", help="JWKS JSON file (default: the control center's)")
    p.add_argument("--from-seq", type=int, help="without FILE: first seq to check")
    p.add_argument("--to-seq", type=int, help="without FILE: last seq to check")
    p = au.command("export", "export the chain as NDJSON (stdout or FILE)", export, ExportArgs)
    p.add_argument("file", nargs="?", help="output file (default stdout)")
    p.add_argument("--from-seq", type=int)
    p.add_argument("--to-seq", type=int)
