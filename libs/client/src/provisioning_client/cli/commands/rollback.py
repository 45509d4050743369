"""``provctl rollback execute|restore|operations|stats``."""

from __future__ import annotations

from dataclasses import dataclass

from ..context import Context, IdArgs, NoArgs, PageArgs, emit
from ..exit_codes import ExitCode
from ..registry import Commands, add_paging


@dataclass(frozen=True)
class ExecuteArgs:
    checkpoint_id: str | None
    operation_ids: list[str] | None


async def execute(ctx: Context, args: ExecuteArgs) -> ExitCode:
    result = await ctx.client.rollback.execute(
        checkpoint_id=args.checkpoint_id, operation_ids=args.operation_ids
    )
    ctx.printer.emit(result)
    return ExitCode.OK if result.success else ExitCode.WORKFLOW_FAILED


async def restore(ctx: Context, args: IdArgs) -> ExitCode:
    return await emit(ctx, ctx.client.rollback.restore(args.id))


async def operations(ctx: Context, args: PageArgs) -> ExitCode:
    ctx.printer.emit((await ctx.client.rollback.list_operations(**args.paging())).items)
    return ExitCode.OK


async def stats(ctx: Context, args: NoArgs) -> ExitCode:
    return await emit(ctx, ctx.client.rollback.statistics())


def register(cli: Commands) -> None:
    rb = cli.group("rollback", "rollback and restore")
    p = rb.command(
        "execute", "roll back to a checkpoint or specific operations", execute, ExecuteArgs
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--checkpoint", dest="checkpoint_id")
    target.add_argument(
        "--operation",
        dest="operation_ids",
        action="append",
        help="ledger operation id (repeatable)",
    )
    rb.command("restore", "restore state from a checkpoint", restore, IdArgs).add_argument("id")
    add_paging(rb.command("operations", "list the operations ledger", operations, PageArgs))
    rb.command("stats", "rollback statistics", stats, NoArgs)
