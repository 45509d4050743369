"""``provctl workflow servers|taskserv|cluster create``."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from ..context import Context
from ..exit_codes import ExitCode
from ..registry import Commands
from .watch import follow


@dataclass(frozen=True)
class SubmitArgs:
    infra: str
    settings: str
    check: bool
    no_wait: bool
    idempotency_key: str | None
    watch: bool

    def options(self) -> dict[str, Any]:
        return {
            "check_mode": self.check,
            "wait": not self.no_wait,
            "idempotency_key": self.idempotency_key,
        }


@dataclass(frozen=True)
class TaskservArgs(SubmitArgs):
    taskserv: str
    operation: str


@dataclass(frozen=True)
class ClusterArgs(SubmitArgs):
    cluster_type: str
    operation: str


async def _after_submit(ctx: Context, args: SubmitArgs, task_id: str) -> ExitCode:
    if args.watch:
        if not ctx.printer.json:
            ctx.printer.info(f"Task ID: {task_id}")
        return await follow(ctx, task_id, None)
    ctx.printer.emit({"task_id": task_id} if ctx.printer.json else f"Task ID: {task_id}")
    return ExitCode.OK


async def servers(ctx: Context, args: SubmitArgs) -> ExitCode:
    task_id = await ctx.client.workflows.create_servers(args.infra, args.settings, **args.options())
    return await _after_submit(ctx, args, task_id)


async def taskserv(ctx: Context, args: TaskservArgs) -> ExitCode:
    task_id = await ctx.client.workflows.create_taskserv(
        args.taskserv, args.infra, args.settings, operation=args.operation, **args.options()
    )
    return await _after_submit(ctx, args, task_id)


async def cluster(ctx: Context, args: ClusterArgs) -> ExitCode:
    task_id = await ctx.client.workflows.create_cluster(
        args.cluster_type, args.infra, args.settings, operation=args.operation, **args.options()
    )
    return await _after_submit(ctx, args, task_id)


def _submission(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--infra", required=True)
    parser.add_argument("--settings", required=True, help="settings file, e.g. config.k")
    parser.add_argument("--check", action="store_true", help="check mode (dry run)")
    parser.add_argument("--no-wait", action="store_true", help="submit with wait=false")
    parser.add_argument("--idempotency-key", help="default: a new UUID per invocation")
    parser.add_argument("--watch", action="store_true", help="follow the task's progress")


def register(cli: Commands) -> None:
    wf = cli.group("workflow", "submit workflows")
    kind = wf.group("servers", "server workflows")
    _submission(kind.command("create", "create servers", servers, SubmitArgs))
    kind = wf.group("taskserv", "task service workflows")
    p = kind.command("create", "run a task service operation", taskserv, TaskservArgs)
    p.add_argument("taskserv")
    p.add_argument("--operation", default="create")
    _submission(p)
    kind = wf.group("cluster", "cluster workflows")
    p = kind.command("create", "run a cluster operation", cluster, ClusterArgs)
    p.add_argument("cluster_type")
    p.add_argument("--operation", default="create")
    _submission(p)
