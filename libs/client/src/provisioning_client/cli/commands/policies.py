"""``provctl policies list|show|create|update|delete|evaluate``."""

from __future__ import annotations

from dataclasses import dataclass

from ..context import Context, FileArgs, IdArgs, PageArgs, emit, emit_list
from ..exit_codes import ExitCode
from ..files import load_document, parse_json_option
from ..registry import Commands, add_paging

POLICY_COLUMNS = ["id", "name", "version", "enabled", "created_at"]


@dataclass(frozen=True)
class UpdateArgs:
    id: str
    file: str


@dataclass(frozen=True)
class EvaluateArgs:
    action: str
    resource: str
    user: str | None
    context: str | None
    deny_exit: bool


async def list_policies(ctx: Context, args: PageArgs) -> ExitCode:
    policies = ctx.client.policies
    return await emit_list(
        ctx, args, lambda: policies.list(**args.paging()), policies.iter, POLICY_COLUMNS
    )


async def show(ctx: Context, args: IdArgs) -> ExitCode:
    return await emit(ctx, ctx.client.policies.get(args.id))


async def create(ctx: Context, args: FileArgs) -> ExitCode:
    doc = load_document(args.file)
    name, rules = doc.pop("name", ""), doc.pop("rules", [])
    version = doc.pop("version", "1.0.0")
    return await emit(ctx, ctx.client.policies.create(name, rules, version, **doc))


async def update(ctx: Context, args: UpdateArgs) -> ExitCode:
    doc = load_document(args.file)
    return await emit(ctx, ctx.client.policies.update(args.id, **doc))


async def delete(ctx: Context, args: IdArgs) -> ExitCode:
    return await emit(ctx, ctx.client.policies.delete(args.id))


async def evaluate(ctx: Context, args: EvaluateArgs) -> ExitCode:
    decision = await ctx.client.policies.evaluate(
        args.action,
        args.resource,
        user=parse_json_option(args.user, "--user"),
        context=parse_json_option(args.context, "--context"),
    )
    ctx.printer.emit(decision)
    return ExitCode.FORBIDDEN if args.deny_exit and not decision.is_allowed else ExitCode.OK


def register(cli: Commands) -> None:
    po = cli.group("policies", "authorization policies")
    add_paging(po.command("list", "list policies", list_policies, PageArgs))
    po.command("show", "show a policy", show, IdArgs).add_argument("id")
    p = po.command("create", "create a policy from a JSON/YAML file", create, FileArgs)
    p.add_argument("file")
    p = po.command("update", "update a policy from a JSON/YAML file", update, UpdateArgs)
    p.add_argument("id")
    p.add_argument("file")
    po.command("delete", "delete a policy", delete, IdArgs).add_argument("id")
    p = po.command("evaluate", "explain the decision for an action", evaluate, EvaluateArgs)
    p.add_argument("--action", required=True)
    p.add_argument("--resource", required=True)
    p.add_argument("--user", help='JSON object, e.g. \'{"roles": ["viewer"]}\'')
    p.add_argument("--context", help="JSON object")
    p.add_argument("--deny-exit", action="store_true", help="exit 4 when the decision is deny")
