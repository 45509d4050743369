"""``provctl audit logs``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..context import Context, PageArgs, emit_list
from ..exit_codes import ExitCode
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


def register(cli: Commands) -> None:
    au = cli.group("audit", "audit log")
    p = au.command("logs", "query the audit log", logs, LogsArgs)
    p.add_argument("--user-id")
    p.add_argument("--action")
    p.add_argument("--resource")
    p.add_argument("--from", dest="since", help="ISO 8601 start")
    p.add_argument("--to", dest="until", help="ISO 8601 end")
    add_paging(p)
