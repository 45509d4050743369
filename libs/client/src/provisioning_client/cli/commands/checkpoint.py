"""``provctl checkpoint create|list|show``."""

from __future__ import annotations

from dataclasses import dataclass

from ..context import Context, IdArgs, PageArgs, emit, emit_list
from ..exit_codes import ExitCode
from ..registry import Commands, add_paging

CHECKPOINT_COLUMNS = ["id", "name", "description", "created_at", "size"]


@dataclass(frozen=True)
class CreateArgs:
    name: str
    description: str


async def create(ctx: Context, args: CreateArgs) -> ExitCode:
    checkpoint_id = await ctx.client.rollback.create_checkpoint(args.name, args.description)
    ctx.printer.emit({"id": checkpoint_id} if ctx.printer.json else checkpoint_id)
    return ExitCode.OK


async def list_checkpoints(ctx: Context, args: PageArgs) -> ExitCode:
    rollback = ctx.client.rollback
    return await emit_list(
        ctx,
        args,
        lambda: rollback.list_checkpoints(**args.paging()),
        rollback.iter_checkpoints,
        CHECKPOINT_COLUMNS,
    )


async def show(ctx: Context, args: IdArgs) -> ExitCode:
    return await emit(ctx, ctx.client.rollback.get_checkpoint(args.id))


def register(cli: Commands) -> None:
    cp = cli.group("checkpoint", "rollback checkpoints")
    p = cp.command("create", "create a checkpoint", create, CreateArgs)
    p.add_argument("name")
    p.add_argument("--description", default="")
    add_paging(cp.command("list", "list checkpoints", list_checkpoints, PageArgs))
    cp.command("show", "show a checkpoint", show, IdArgs).add_argument("id")
