"""``provctl state progress|snapshots|metrics|health|stats``."""

from __future__ import annotations

from ..context import Context, IdArgs, NoArgs, emit
from ..exit_codes import ExitCode
from ..registry import Commands


async def progress(ctx: Context, args: IdArgs) -> ExitCode:
    return await emit(ctx, ctx.client.state.progress(args.id))


async def snapshots(ctx: Context, args: IdArgs) -> ExitCode:
    ctx.printer.emit(
        await ctx.client.state.snapshots(args.id), columns=["snapshot_id", "timestamp", "state"]
    )
    return ExitCode.OK


async def metrics(ctx: Context, args: NoArgs) -> ExitCode:
    return await emit(ctx, ctx.client.state.system_metrics())


async def health(ctx: Context, args: NoArgs) -> ExitCode:
    return await emit(ctx, ctx.client.state.system_health())


async def stats(ctx: Context, args: NoArgs) -> ExitCode:
    return await emit(ctx, ctx.client.state.statistics())


def register(cli: Commands) -> None:
    st = cli.group("state", "workflow state and system status")
    st.command("progress", "progress of a task or batch", progress, IdArgs).add_argument("id")
    st.command("snapshots", "state snapshots of a workflow", snapshots, IdArgs).add_argument("id")
    st.command("metrics", "system metrics", metrics, NoArgs)
    st.command("health", "system health", health, NoArgs)
    st.command("stats", "state statistics", stats, NoArgs)
