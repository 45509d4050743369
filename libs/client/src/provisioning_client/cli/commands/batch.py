"""``provctl batch submit|plan|list|show|cancel|resume|approve|reject``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...models import BatchPlan
from ..context import Context, FileArgs, IdArgs, PageArgs, emit, emit_list
from ..exit_codes import ExitCode
from ..files import load_document
from ..registry import Commands, add_paging
from .watch import follow

BATCH_COLUMNS = ["batch_id", "name", "status", "created_at"]
PLAN_COLUMNS = ["wave", "operation", "task", "command"]


@dataclass(frozen=True)
class SubmitArgs:
    file: str
    idempotency_key: str | None
    watch: bool


async def submit(ctx: Context, args: SubmitArgs) -> ExitCode:
    doc = load_document(args.file)
    batch = await ctx.client.batches.execute(doc, idempotency_key=args.idempotency_key)
    if args.watch:
        ctx.printer.info(f"Batch ID: {batch.batch_id}")
        return await follow(ctx, batch.batch_id, None)
    ctx.printer.emit(batch)
    return ExitCode.OK


async def plan(ctx: Context, args: FileArgs) -> ExitCode:
    result = await ctx.client.batches.plan(load_document(args.file))
    if ctx.printer.json:
        ctx.printer.emit(result)
        return ExitCode.OK
    ctx.printer.table(_plan_rows(result), PLAN_COLUMNS, _plan_title(result))
    return ExitCode.OK


def _plan_title(plan: BatchPlan) -> str:
    x = plan.extra
    return (
        f"{x.get('name', 'batch')} {x.get('version', '')}: {x.get('total_tasks', '?')} "
        f"tasks in {len(plan.waves)} waves, parallel_limit {x.get('parallel_limit', '?')}"
    )


def _plan_rows(plan: BatchPlan) -> list[dict[str, Any]]:
    """One row per task, in wave order (the plan's own shape, read defensively)."""
    wave_of = {
        str(op): i + 1
        for i, wave in enumerate(plan.waves)
        for op in (wave if isinstance(wave, list) else [wave])
    }
    rows: list[dict[str, Any]] = []
    for op in plan.extra.get("operations") or []:
        if not isinstance(op, dict):
            continue
        for task in op.get("tasks") or []:
            command = " ".join([str(task.get("command", "")), *map(str, task.get("args", []))])
            rows.append(
                {
                    "wave": wave_of.get(str(op.get("id")), ""),
                    "operation": op.get("id"),
                    "task": task.get("name") or task.get("id"),
                    "command": command,
                }
            )
    return sorted(rows, key=lambda r: (r["wave"] == "", r["wave"]))


async def list_batches(ctx: Context, args: PageArgs) -> ExitCode:
    batches = ctx.client.batches
    return await emit_list(
        ctx, args, lambda: batches.list(**args.paging()), batches.iter, BATCH_COLUMNS
    )


async def show(ctx: Context, args: IdArgs) -> ExitCode:
    return await emit(ctx, ctx.client.batches.get(args.id))


async def cancel(ctx: Context, args: IdArgs) -> ExitCode:
    return await emit(ctx, ctx.client.batches.cancel(args.id))


@dataclass(frozen=True)
class ResumeArgs:
    id: str
    operations: str | None
    rerun_completed: bool
    idempotency_key: str | None
    watch: bool


async def resume(ctx: Context, args: ResumeArgs) -> ExitCode:
    operations = (
        [o.strip() for o in args.operations.split(",") if o.strip()]
        if args.operations is not None
        else None
    )
    batch = await ctx.client.batches.resume(
        args.id,
        operations=operations,
        rerun_completed=args.rerun_completed,
        idempotency_key=args.idempotency_key,
    )
    if args.watch:
        ctx.printer.info(f"Batch ID: {batch.batch_id} (resumes {args.id})")
        return await follow(ctx, batch.batch_id, None)
    ctx.printer.emit(batch)
    return ExitCode.OK


@dataclass(frozen=True)
class DecideArgs:
    id: str
    operation: str
    comment: str | None


async def approve(ctx: Context, args: DecideArgs) -> ExitCode:
    return await emit(
        ctx, ctx.client.batches.approve(args.id, args.operation, comment=args.comment)
    )


async def reject(ctx: Context, args: DecideArgs) -> ExitCode:
    return await emit(ctx, ctx.client.batches.reject(args.id, args.operation, comment=args.comment))


def register(cli: Commands) -> None:
    bt = cli.group("batch", "batch workflows")
    p = bt.command(
        "submit", "execute a batch (contract JSON or YAML; - for stdin)", submit, SubmitArgs
    )
    p.add_argument("file")
    p.add_argument("--idempotency-key")
    p.add_argument("--watch", action="store_true")
    p = bt.command("plan", "validate a batch and show its execution plan", plan, FileArgs)
    p.add_argument("file")
    add_paging(bt.command("list", "list batches", list_batches, PageArgs))
    bt.command("show", "show a batch", show, IdArgs).add_argument("id")
    bt.command("cancel", "cancel a batch", cancel, IdArgs).add_argument("id")
    p = bt.command(
        "resume", "resume a finished batch: a new run that skips what completed", resume, ResumeArgs
    )
    p.add_argument("id")
    p.add_argument("--operations", help="comma-separated operation ids to run again")
    p.add_argument(
        "--rerun-completed", action="store_true", help="run the named operations' completed items"
    )
    p.add_argument("--idempotency-key")
    p.add_argument("--watch", action="store_true")
    for name, handler, what in (
        ("approve", approve, "approve a batch's approval gate"),
        ("reject", reject, "reject a batch's approval gate (it fails)"),
    ):
        p = bt.command(name, what, handler, DecideArgs)
        p.add_argument("id")
        p.add_argument("operation", help="the approval gate's operation id")
        p.add_argument("--comment")
