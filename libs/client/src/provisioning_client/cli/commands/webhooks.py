"""``provctl webhooks deliveries|redeliver``."""

from __future__ import annotations

from ..context import Context, IdArgs, PageArgs, emit
from ..exit_codes import ExitCode
from ..registry import Commands, add_paging


async def deliveries(ctx: Context, args: PageArgs) -> ExitCode:
    page = await ctx.client.webhooks.list_deliveries(**args.paging())
    ctx.printer.emit(page.items, columns=["id", "event", "status", "url"])
    return ExitCode.OK


async def redeliver(ctx: Context, args: IdArgs) -> ExitCode:
    return await emit(ctx, ctx.client.webhooks.redeliver(args.id))


def register(cli: Commands) -> None:
    wh = cli.group("webhooks", "webhook deliveries")
    add_paging(wh.command("deliveries", "list webhook deliveries", deliveries, PageArgs))
    wh.command("redeliver", "redeliver a webhook", redeliver, IdArgs).add_argument("id")
