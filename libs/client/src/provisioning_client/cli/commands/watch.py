"""``provctl watch``, and :func:`follow`, which ``--watch`` on submissions uses too."""

from __future__ import annotations

from dataclasses import dataclass

from ..context import Context
from ..exit_codes import ExitCode
from ..registry import Commands
from ..watch import watch


async def follow(ctx: Context, target_id: str, give_up_after: float | None) -> ExitCode:
    """Watch a task or batch to its end; print the final state; 0 when it completed."""
    console = None if ctx.printer.json else ctx.printer.console
    try:
        target = await watch(ctx.client, target_id, console=console, give_up_after=give_up_after)
    except TimeoutError as exc:
        ctx.printer.error(f"watch timed out: {exc}")
        return ExitCode.WATCH_TIMEOUT
    if ctx.printer.json:
        ctx.printer.emit(target.doc)
    else:
        ctx.printer.console.print(
            f"{target.kind} {target_id}: [bold]{target.status}[/bold]", highlight=False
        )
        error = getattr(target.doc, "error", None)
        if error:
            ctx.printer.error(str(error))
    return ExitCode.OK if target.succeeded else ExitCode.WORKFLOW_FAILED


@dataclass(frozen=True)
class WatchArgs:
    id: str
    timeout: float | None


async def watch_command(ctx: Context, args: WatchArgs) -> ExitCode:
    return await follow(ctx, args.id, args.timeout)


def register(cli: Commands) -> None:
    p = cli.command(
        "watch", "live progress of a task or batch until it finishes", watch_command, WatchArgs
    )
    p.add_argument("id", metavar="TASK_OR_BATCH_ID")
    p.add_argument("--timeout", type=float, help="give up after this many seconds")
