"""provctl command handlers: each takes the context and returns the exit code."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..client import ProvisioningClient
from ..errors import MfaRequiredError
from ..models import BatchPlan, Page, Task
from .config import Credentials, delete_credentials, save_credentials
from .files import load_document, parse_json_option
from .output import Printer
from .watch import EventPump, watch

T = TypeVar("T")

EXIT_OK = 0
EXIT_FORBIDDEN = 4
EXIT_WORKFLOW_FAILED = 10
EXIT_WATCH_TIMEOUT = 11
LOGS_POLL_INTERVAL = 2.0
LOGS_MIN_INTERVAL = 0.3

TASK_COLUMNS = ["id", "name", "status", "progress", "created_at", "completed_at"]
BATCH_COLUMNS = ["batch_id", "name", "status", "created_at"]
USER_COLUMNS = ["id", "username", "email", "roles", "enabled", "last_login"]
POLICY_COLUMNS = ["id", "name", "version", "enabled", "created_at"]
AUDIT_COLUMNS = ["timestamp", "user_id", "action", "resource", "result"]
CHECKPOINT_COLUMNS = ["id", "name", "description", "created_at", "size"]


@dataclass
class Context:
    client: ProvisioningClient
    printer: Printer
    creds: Credentials
    args: argparse.Namespace
    persist: bool  # whether refreshed tokens are written back to the credentials file


Handler = Callable[[Context], Awaitable[int]]
HANDLERS: dict[str, Handler] = {}


def handler(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn

    return register


def _prompt(text: str) -> str:
    """Read one line; prompts go to stderr so ``--output json`` stdout stays clean."""
    if sys.stdin.isatty():
        sys.stderr.write(text)
        sys.stderr.flush()
    line = sys.stdin.readline()
    if not line:
        raise EOFError(f"no input for: {text.strip()}")
    return line.rstrip("\r\n")


def _secret(text: str, from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        return _prompt(text)
    return getpass.getpass(text)


async def _list(
    ctx: Context,
    page: Callable[[], Awaitable[Page[T]]],
    every: Callable[[], AsyncIterator[T]],
    columns: list[str],
) -> int:
    if getattr(ctx.args, "all", False):
        items = [item async for item in every()]
    else:
        items = (await page()).items
    ctx.printer.emit(items, columns=columns)
    return EXIT_OK


def _paging(args: argparse.Namespace) -> dict[str, Any]:
    return {"limit": args.limit, "offset": args.offset}


# ---------------------------------------------------------------------- session


@handler("login")
async def login(ctx: Context) -> int:
    args, client = ctx.args, ctx.client
    username = args.username or _prompt("Username: ")
    password = _secret("Password: ", args.password_stdin)
    try:
        session = await client.login(username, password, args.mfa_code)
    except MfaRequiredError:
        if args.mfa_code:
            raise
        session = await client.login(username, password, _prompt("MFA code: ").strip())
    creds = Credentials(
        orchestrator_url=client.urls["orchestrator"],
        control_center_url=client.urls["control_center"],
        username=username,
    )
    ctx.creds = creds
    path = _store_session(ctx)
    user = session.user
    ctx.printer.emit(
        {
            "username": user.username if user else username,
            "roles": user.roles if user else [],
            "expires_at": session.expires_at,
            "credentials": str(path),
        }
    )
    return EXIT_OK


def _store_session(ctx: Context) -> Any:
    tokens = ctx.client.tokens
    ctx.creds.token = tokens.token
    ctx.creds.expires_at = tokens.expires_at.isoformat() if tokens.expires_at else None
    ctx.creds.refresh_token = tokens.refresh_token
    ctx.creds.refresh_expires_at = (
        tokens.refresh_expires_at.isoformat() if tokens.refresh_expires_at else None
    )
    return save_credentials(ctx.creds)


@handler("logout")
async def logout(ctx: Context) -> int:
    try:
        message = await ctx.client.logout()
    finally:
        delete_credentials()
    ctx.printer.emit(message)
    return EXIT_OK


@handler("whoami")
async def whoami(ctx: Context) -> int:
    ctx.printer.emit(await ctx.client.me())
    return EXIT_OK


# ---------------------------------------------------------------------- workflows


async def _after_submit(ctx: Context, task_id: str) -> int:
    if ctx.args.watch:
        if not ctx.printer.json:
            ctx.printer.info(f"Task ID: {task_id}")
        return await _watch(ctx, task_id, None)
    ctx.printer.emit({"task_id": task_id} if ctx.printer.json else f"Task ID: {task_id}")
    return EXIT_OK


def _submit_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "check_mode": args.check,
        "wait": not args.no_wait,
        "idempotency_key": args.idempotency_key,
    }


@handler("workflow_servers")
async def workflow_servers(ctx: Context) -> int:
    a = ctx.args
    task_id = await ctx.client.create_servers(a.infra, a.settings, **_submit_options(a))
    return await _after_submit(ctx, task_id)


@handler("workflow_taskserv")
async def workflow_taskserv(ctx: Context) -> int:
    a = ctx.args
    task_id = await ctx.client.create_taskserv(
        a.taskserv, a.infra, a.settings, operation=a.operation, **_submit_options(a)
    )
    return await _after_submit(ctx, task_id)


@handler("workflow_cluster")
async def workflow_cluster(ctx: Context) -> int:
    a = ctx.args
    task_id = await ctx.client.create_cluster(
        a.cluster_type, a.infra, a.settings, operation=a.operation, **_submit_options(a)
    )
    return await _after_submit(ctx, task_id)


# ---------------------------------------------------------------------- batches


@handler("batch_submit")
async def batch_submit(ctx: Context) -> int:
    doc = load_document(ctx.args.file)
    batch = await ctx.client.execute_batch(doc, idempotency_key=ctx.args.idempotency_key)
    if ctx.args.watch:
        ctx.printer.info(f"Batch ID: {batch.batch_id}")
        return await _watch(ctx, batch.batch_id, None)
    ctx.printer.emit(batch)
    return EXIT_OK


@handler("batch_plan")
async def batch_plan(ctx: Context) -> int:
    plan = await ctx.client.plan_batch(load_document(ctx.args.file))
    if ctx.printer.json:
        ctx.printer.emit(plan)
        return EXIT_OK
    ctx.printer.table(_plan_rows(plan), PLAN_COLUMNS, _plan_title(plan))
    return EXIT_OK


PLAN_COLUMNS = ["wave", "operation", "task", "command"]


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


@handler("batch_list")
async def batch_list(ctx: Context) -> int:
    c, a = ctx.client, ctx.args
    return await _list(ctx, lambda: c.list_batches(**_paging(a)), c.iter_batches, BATCH_COLUMNS)


@handler("batch_show")
async def batch_show(ctx: Context) -> int:
    ctx.printer.emit(await ctx.client.get_batch(ctx.args.id))
    return EXIT_OK


@handler("batch_cancel")
async def batch_cancel(ctx: Context) -> int:
    ctx.printer.emit(await ctx.client.cancel_batch(ctx.args.id))
    return EXIT_OK


# ---------------------------------------------------------------------- watch


async def _watch(ctx: Context, target_id: str, give_up_after: float | None) -> int:
    console = None if ctx.printer.json else ctx.printer.console
    try:
        target = await watch(ctx.client, target_id, console=console, give_up_after=give_up_after)
    except TimeoutError as exc:
        ctx.printer.error(f"watch timed out: {exc}")
        return EXIT_WATCH_TIMEOUT
    if ctx.printer.json:
        ctx.printer.emit(target.doc)
    else:
        ctx.printer.console.print(
            f"{target.kind} {target_id}: [bold]{target.status}[/bold]", highlight=False
        )
        error = getattr(target.doc, "error", None)
        if error:
            ctx.printer.error(str(error))
    return EXIT_OK if target.succeeded else EXIT_WORKFLOW_FAILED


@handler("watch")
async def watch_cmd(ctx: Context) -> int:
    return await _watch(ctx, ctx.args.id, ctx.args.timeout)


# ---------------------------------------------------------------------- tasks


@handler("tasks_list")
async def tasks_list(ctx: Context) -> int:
    c, a = ctx.client, ctx.args
    return await _list(
        ctx,
        lambda: c.list_tasks(status=a.status, **_paging(a)),
        lambda: c.iter_tasks(status=a.status),
        TASK_COLUMNS,
    )


@handler("tasks_show")
async def tasks_show(ctx: Context) -> int:
    ctx.printer.emit(await ctx.client.get_task(ctx.args.id))
    return EXIT_OK


@handler("tasks_logs")
async def tasks_logs(ctx: Context) -> int:
    """Print the output; with ``--follow``, print new lines as TaskOutput events arrive.

    Events only trigger a re-read of the task and the new lines are taken from its
    stored output, so an event lost around (re)connection loses no line."""
    client, task_id = ctx.client, ctx.args.id
    if not ctx.args.follow:
        return _print_logs(ctx, await client.get_task(task_id))
    printed = 0
    async with EventPump(client) as events:
        while True:
            task = await client.get_task(task_id)
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
    return EXIT_OK if task.status.lower() == "completed" else EXIT_WORKFLOW_FAILED


def _print_logs(ctx: Context, task: Task) -> int:
    if ctx.printer.json:
        ctx.printer.emit(
            {"id": task.id, "status": task.status, "output": task.output, "error": task.error}
        )
        return EXIT_OK
    if task.output:
        sys.stdout.write(task.output.rstrip("\n") + "\n")
    if task.error:
        ctx.printer.error(task.error)
    return EXIT_OK


@handler("tasks_cancel")
async def tasks_cancel(ctx: Context) -> int:
    ctx.printer.emit(await ctx.client.cancel_task(ctx.args.id))
    return EXIT_OK


@handler("tasks_attempts")
async def tasks_attempts(ctx: Context) -> int:
    ctx.printer.emit(await ctx.client.task_attempts(ctx.args.id))
    return EXIT_OK


# ---------------------------------------------------------------------- rollback


@handler("checkpoint_create")
async def checkpoint_create(ctx: Context) -> int:
    checkpoint_id = await ctx.client.create_checkpoint(ctx.args.name, ctx.args.description)
    ctx.printer.emit({"id": checkpoint_id} if ctx.printer.json else checkpoint_id)
    return EXIT_OK


@handler("checkpoint_list")
async def checkpoint_list(ctx: Context) -> int:
    c, a = ctx.client, ctx.args
    return await _list(
        ctx, lambda: c.list_checkpoints(**_paging(a)), c.iter_checkpoints, CHECKPOINT_COLUMNS
    )


@handler("checkpoint_show")
async def checkpoint_show(ctx: Context) -> int:
    ctx.printer.emit(await ctx.client.get_checkpoint(ctx.args.id))
    return EXIT_OK


@handler("rollback_execute")
async def rollback_execute(ctx: Context) -> int:
    a = ctx.args
    result = await ctx.client.rollback(checkpoint_id=a.checkpoint_id, operation_ids=a.operation_ids)
    ctx.printer.emit(result)
    return EXIT_OK if result.success else EXIT_WORKFLOW_FAILED


@handler("rollback_restore")
async def rollback_restore(ctx: Context) -> int:
    ctx.printer.emit(await ctx.client.restore_checkpoint(ctx.args.id))
    return EXIT_OK


@handler("rollback_operations")
async def rollback_operations(ctx: Context) -> int:
    ctx.printer.emit((await ctx.client.list_rollback_operations(**_paging(ctx.args))).items)
    return EXIT_OK


@handler("rollback_stats")
async def rollback_stats(ctx: Context) -> int:
    ctx.printer.emit(await ctx.client.rollback_statistics())
    return EXIT_OK


# ---------------------------------------------------------------------- state


@handler("state_progress")
async def state_progress(ctx: Context) -> int:
    ctx.printer.emit(await ctx.client.workflow_progress(ctx.args.id))
    return EXIT_OK


@handler("state_snapshots")
async def state_snapshots(ctx: Context) -> int:
    ctx.printer.emit(
        await ctx.client.workflow_snapshots(ctx.args.id),
        columns=["snapshot_id", "timestamp", "state"],
    )
    return EXIT_OK


@handler("state_metrics")
async def state_metrics(ctx: Context) -> int:
    ctx.printer.emit(await ctx.client.system_metrics())
    return EXIT_OK


@handler("state_health")
async def state_health(ctx: Context) -> int:
    ctx.printer.emit(await ctx.client.system_health())
    return EXIT_OK


@handler("state_stats")
async def state_stats(ctx: Context) -> int:
    ctx.printer.emit(await ctx.client.state_statistics())
    return EXIT_OK


# ---------------------------------------------------------------------- users and MFA


def _roles(value: str | None) -> list[str] | None:
    return [r.strip() for r in value.split(",") if r.strip()] if value is not None else None


@handler("users_list")
async def users_list(ctx: Context) -> int:
    c, a = ctx.client, ctx.args
    return await _list(
        ctx,
        lambda: c.list_users(role=a.role, enabled=a.enabled, **_paging(a)),
        lambda: c.iter_users(role=a.role, enabled=a.enabled),
        USER_COLUMNS,
    )


@handler("users_show")
async def users_show(ctx: Context) -> int:
    ctx.printer.emit(await ctx.client.get_user(ctx.args.id))
    return EXIT_OK


@handler("users_create")
async def users_create(ctx: Context) -> int:
    a = ctx.args
    password = _secret("New user's password: ", a.password_stdin)
    user = await ctx.client.create_user(
        a.username, a.email, password, _roles(a.roles) or [], enabled=not a.disabled
    )
    ctx.printer.emit(user)
    return EXIT_OK


@handler("users_update")
async def users_update(ctx: Context) -> int:
    a = ctx.args
    result = await ctx.client.update_user(
        a.id, email=a.email, roles=_roles(a.roles), enabled=a.enabled
    )
    ctx.printer.emit(result)
    return EXIT_OK


@handler("users_delete")
async def users_delete(ctx: Context) -> int:
    ctx.printer.emit(await ctx.client.delete_user(ctx.args.id))
    return EXIT_OK


@handler("users_reset_mfa")
async def users_reset_mfa(ctx: Context) -> int:
    ctx.printer.emit(await ctx.client.reset_user_mfa(ctx.args.id))
    return EXIT_OK


@handler("mfa_enroll")
async def mfa_enroll(ctx: Context) -> int:
    password = _secret("Password: ", ctx.args.password_stdin)
    ctx.printer.emit(await ctx.client.mfa_enroll(password))
    return EXIT_OK


@handler("mfa_verify")
async def mfa_verify(ctx: Context) -> int:
    ctx.printer.emit(await ctx.client.mfa_verify(ctx.args.code))
    return EXIT_OK


# ---------------------------------------------------------------------- policies


@handler("policies_list")
async def policies_list(ctx: Context) -> int:
    c, a = ctx.client, ctx.args
    return await _list(ctx, lambda: c.list_policies(**_paging(a)), c.iter_policies, POLICY_COLUMNS)


@handler("policies_show")
async def policies_show(ctx: Context) -> int:
    ctx.printer.emit(await ctx.client.get_policy(ctx.args.id))
    return EXIT_OK


@handler("policies_create")
async def policies_create(ctx: Context) -> int:
    doc = load_document(ctx.args.file)
    name, rules = doc.pop("name", ""), doc.pop("rules", [])
    version = doc.pop("version", "1.0.0")
    ctx.printer.emit(await ctx.client.create_policy(name, rules, version, **doc))
    return EXIT_OK


@handler("policies_update")
async def policies_update(ctx: Context) -> int:
    doc = load_document(ctx.args.file)
    ctx.printer.emit(await ctx.client.update_policy(ctx.args.id, **doc))
    return EXIT_OK


@handler("policies_delete")
async def policies_delete(ctx: Context) -> int:
    ctx.printer.emit(await ctx.client.delete_policy(ctx.args.id))
    return EXIT_OK


@handler("policies_evaluate")
async def policies_evaluate(ctx: Context) -> int:
    a = ctx.args
    decision = await ctx.client.evaluate_policy(
        a.action,
        a.resource,
        user=parse_json_option(a.user, "--user"),
        context=parse_json_option(a.context, "--context"),
    )
    ctx.printer.emit(decision)
    return EXIT_FORBIDDEN if a.deny_exit and not decision.is_allowed else EXIT_OK


# ---------------------------------------------------------------------- audit, webhooks


@handler("audit_logs")
async def audit_logs(ctx: Context) -> int:
    c, a = ctx.client, ctx.args
    filters = {
        "user_id": a.user_id,
        "action": a.action,
        "resource": a.resource,
        "since": a.since,
        "until": a.until,
    }
    return await _list(
        ctx,
        lambda: c.audit_logs(**filters, **_paging(a)),
        lambda: c.iter_audit_logs(**filters),
        AUDIT_COLUMNS,
    )


@handler("webhooks_deliveries")
async def webhooks_deliveries(ctx: Context) -> int:
    page = await ctx.client.list_webhook_deliveries(**_paging(ctx.args))
    ctx.printer.emit(page.items, columns=["id", "event", "status", "url"])
    return EXIT_OK


@handler("webhooks_redeliver")
async def webhooks_redeliver(ctx: Context) -> int:
    ctx.printer.emit(await ctx.client.redeliver_webhook(ctx.args.id))
    return EXIT_OK
