"""``provctl users list|show|create|update|delete|reset-mfa`` (admin)."""

from __future__ import annotations

from dataclasses import dataclass

from ..context import Context, IdArgs, PageArgs, emit, emit_list, secret
from ..exit_codes import ExitCode
from ..registry import Commands, add_paging

USER_COLUMNS = ["id", "username", "email", "roles", "enabled", "last_login"]


def _roles(value: str | None) -> list[str] | None:
    return [r.strip() for r in value.split(",") if r.strip()] if value is not None else None


@dataclass(frozen=True)
class ListArgs(PageArgs):
    role: str | None
    enabled: bool | None


@dataclass(frozen=True)
class CreateArgs:
    username: str
    email: str
    roles: str
    disabled: bool
    password_stdin: bool


@dataclass(frozen=True)
class UpdateArgs:
    id: str
    email: str | None
    roles: str | None
    enabled: bool | None


async def list_users(ctx: Context, args: ListArgs) -> ExitCode:
    users = ctx.client.users
    return await emit_list(
        ctx,
        args,
        lambda: users.list(role=args.role, enabled=args.enabled, **args.paging()),
        lambda: users.iter(role=args.role, enabled=args.enabled),
        USER_COLUMNS,
    )


async def show(ctx: Context, args: IdArgs) -> ExitCode:
    return await emit(ctx, ctx.client.users.get(args.id))


async def create(ctx: Context, args: CreateArgs) -> ExitCode:
    password = secret("New user's password: ", args.password_stdin)
    roles = _roles(args.roles) or []
    return await emit(
        ctx,
        ctx.client.users.create(
            args.username, args.email, password, roles, enabled=not args.disabled
        ),
    )


async def update(ctx: Context, args: UpdateArgs) -> ExitCode:
    return await emit(
        ctx,
        ctx.client.users.update(
            args.id, email=args.email, roles=_roles(args.roles), enabled=args.enabled
        ),
    )


async def delete(ctx: Context, args: IdArgs) -> ExitCode:
    return await emit(ctx, ctx.client.users.delete(args.id))


async def reset_mfa(ctx: Context, args: IdArgs) -> ExitCode:
    return await emit(ctx, ctx.client.users.reset_mfa(args.id))


def register(cli: Commands) -> None:
    us = cli.group("users", "user management (admin)")
    p = us.command("list", "list users", list_users, ListArgs)
    p.add_argument("--role")
    enabled = p.add_mutually_exclusive_group()
    enabled.add_argument("--enabled", dest="enabled", action="store_true", default=None)
    enabled.add_argument("--disabled", dest="enabled", action="store_false")
    add_paging(p)
    us.command("show", "show a user", show, IdArgs).add_argument("id")
    p = us.command("create", "create a user (password from stdin)", create, CreateArgs)
    p.add_argument("username")
    p.add_argument("--email", required=True)
    p.add_argument("--roles", required=True, help="comma separated, e.g. operator,viewer")
    p.add_argument("--disabled", action="store_true")
    p.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin (else prompted)"
    )
    p = us.command("update", "update a user", update, UpdateArgs)
    p.add_argument("id")
    p.add_argument("--email")
    p.add_argument("--roles")
    state = p.add_mutually_exclusive_group()
    state.add_argument("--enable", dest="enabled", action="store_true", default=None)
    state.add_argument("--disable", dest="enabled", action="store_false")
    us.command("delete", "delete a user", delete, IdArgs).add_argument("id")
    us.command("reset-mfa", "remove a user's MFA enrolment", reset_mfa, IdArgs).add_argument("id")
