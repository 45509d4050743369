"""``provctl tasks list|show|logs|cancel|attempts``."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass

from ...models import Task
from ..context import Context, IdArgs, PageArgs, emit, emit_list
from ..exit_codes import ExitCode
from ..registry import Commands, add_paging
from ..watch import EventPump

TASK_COLUMNS = ["id", "name", "status", "progress", "created_at", "completed_at"]
LOGS_POLL_INTERVAL = 2.0
LOGS_MIN_INTERVAL = 0.3


@dataclass(frozen=True)
class ListArgs(PageArgs):
    status: str | None


@dataclass(frozen=True)
class LogsArgs:
    id: str
    follow: bool


async def list_tasks(ctx: Context, args: ListArgs) -> ExitCode:
    tasks = ctx.client.tasks
    return await emit_list(
        ctx,
        args,
        lambda: tasks.list(status=args.status, **args.paging()),
        lambda: tasks.iter(status=args.status),
        TASK_COLUMNS,
    )


async def show(ctx: Context, args: IdArgs) -> ExitCode:
    return await emit(ctx, ctx.client.tasks.get(args.id))


async def logs(ctx: Context, args: LogsArgs) -> ExitCode:
    """Print the output; with ``--follow``, print new lines as TaskOutput events arrive.

    Events only trigger a re-read of the task and the new lines are taken from its
    stored output, so an event lost around (re)connection loses no line."""
    client, task_id = ctx.client, args.id
    if not args.follow:
        return _print_logs(ctx, await client.tasks.get(task_id))
    printed = 0
    async with EventPump(client) as events:
        while True:
            task = await client.tasks.get(task_id)
            lines = (task.output or "").splitlines()
            for line in lines[printed:]:
                sys.stdout.write(line + "\n")
            sys.stdout.flush()
            printed = max(printed, len(lines))
            if task.finished:
                break
            event = await events.get(LOGS_POLL_INTERVAL)
            while event is not None and event.get("task_id") != task_id:
                event = await events.get(LOGS_POLL_INTERVAL)
            await asyncio.sleep(LOGS_MIN_INTERVAL)  # coalesce bursts of output events
    if task.error:
        ctx.printer.error(task.error)
    return ExitCode.OK if task.status.lower() == "completed" else ExitCode.WORKFLOW_FAILED


def _print_logs(ctx: Context, task: Task) -> ExitCode:
    if ctx.printer.json:
        ctx.printer.emit(
            {"id": task.id, "status": task.status, "output": task.output, "error": task.error}
        )
        return ExitCode.OK
    if task.output:
        sys.stdout.write(task.output.rstrip("\n") + "\n")
    if task.error:
        ctx.printer.error(task.error)
    return ExitCode.OK


async def cancel(ctx: Context, args: IdArgs) -> ExitCode:
    return await emit(ctx, ctx.client.tasks.cancel(args.id))


async def attempts(ctx: Context, args: IdArgs) -> ExitCode:
    return await emit(ctx, ctx.client.tasks.attempts(args.id))


def register(cli: Commands) -> None:
    tk = cli.group("tasks", "workflow tasks")
    p = tk.command("list", "list tasks", list_tasks, ListArgs)
    p.add_argument("--status", help="Pending, Running, Completed, Failed or Cancelled")
    add_paging(p)
    tk.command("show", "show a task", show, IdArgs).add_argument("id")
    p = tk.command("logs", "print a task's output", logs, LogsArgs)
    p.add_argument("id")
    p.add_argument("-f", "--follow", action="store_true", help="stream output until it ends")
    tk.command("cancel", "cancel a task", cancel, IdArgs).add_argument("id")
    tk.command("attempts", "a task's attempt history", attempts, IdArgs).add_argument("id")
