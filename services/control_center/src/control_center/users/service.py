"""User management use cases, including the bootstrap admin."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from provisioning_common.errors import (
    Conflict,
    Forbidden,
    NotFound,
    UnprocessableEntity,
)
from provisioning_common.timeutil import utcnow

from ..audit import service as audit
from ..audit.repository import AuditRepository
from ..auth import service as auth_service
from ..auth.passwords import hash_password
from ..auth.repository import LoginRepository
from ..context import Context
from .model import password_problems, public_user, username_key
from .repository import UserRepository

log = logging.getLogger(__name__)

BOOTSTRAP_MARKER = "bootstrap:admin"
ADMIN_LOCK_LEASE = timedelta(seconds=10)  # a crashed holder blocks admin changes this long
ADMIN_LOCK_WAIT = 5.0


def _check_password_policy(ctx: Context, password: str) -> None:
    problems = password_problems(password, ctx.settings.auth.password_min_length)
    if problems:
        raise UnprocessableEntity(problems[0], details={"password": problems})


async def create_user(ctx: Context, body: dict[str, Any], actor: str | None) -> dict[str, Any]:
    _check_password_policy(ctx, body["password"])
    now = utcnow()
    doc = {
        "_id": str(uuid.uuid4()),
        "username": body["username"],
        "username_key": username_key(body["username"]),
        "email": body["email"],
        "password_hash": await hash_password(body["password"], ctx.settings.auth.bcrypt_rounds),
        "roles": sorted(set(body["roles"]), key=body["roles"].index),
        "enabled": body["enabled"],
        "mfa_enabled": False,
        "created_at": now,
        "updated_at": now,
        "last_login": None,
        "revoked_before": 0,
    }
    await ctx.repos.users.insert(doc)
    await audit.record(
        ctx.repos.audit,
        action="user.create",
        resource=f"users/{doc['_id']}",
        result="success",
        user_id=actor,
        details={"username": doc["username"], "roles": doc["roles"]},
    )
    view = public_user(doc)
    return {k: view[k] for k in ("id", "username", "email", "roles", "enabled")}


async def get_user(ctx: Context, user_id: str) -> dict[str, Any]:
    doc = await ctx.repos.users.get(user_id)
    if doc is None:
        raise NotFound("User not found")
    return doc


async def list_users(
    ctx: Context, *, role: str | None, enabled: bool | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    query: dict[str, Any] = {}
    if role is not None:
        query["roles"] = role
    if enabled is not None:
        query["enabled"] = enabled
    docs, total = await ctx.repos.users.find_page(query, limit, offset)
    return [public_user(d) for d in docs], total


async def _guard_last_admin(ctx: Context, target: dict[str, Any]) -> None:
    """``target`` is about to stop being an enabled admin (call under the lease)."""
    is_active_admin = "admin" in target.get("roles", []) and target.get("enabled", True)
    if is_active_admin and not await ctx.repos.users.count_enabled_admins(
        excluding=str(target["_id"])
    ):
        raise Conflict("The last enabled administrator cannot be disabled, demoted or deleted")


async def _still_admin(ctx: Context, actor_id: str) -> None:
    """The actor may have been demoted or disabled while waiting for the lease."""
    actor = await ctx.repos.users.get(actor_id)
    if actor is None or not actor.get("enabled", True) or "admin" not in actor.get("roles", []):
        raise Forbidden("Permission denied")


@contextlib.asynccontextmanager
async def _admin_change(ctx: Context) -> AsyncIterator[None]:
    """Serialise every change that can remove an enabled admin (DESIGN §3 unique
    insert): two admins demoting each other at once would otherwise both still see
    the other one as admin, both succeed, and leave no admin at all."""
    holder = uuid.uuid4().hex
    deadline = time.monotonic() + ADMIN_LOCK_WAIT
    while not await ctx.repos.users.lock_admins(holder, utcnow() + ADMIN_LOCK_LEASE):
        if time.monotonic() > deadline:
            raise Conflict("Another change to administrators is in progress; retry")
        await asyncio.sleep(0.05)
    try:
        yield
    finally:
        await ctx.repos.users.unlock_admins(holder)


async def update_user(
    ctx: Context,
    user_id: str,
    body: dict[str, Any],
    *,
    actor: dict[str, Any],
    actor_is_admin: bool,
    ip: str = "unknown",
) -> None:
    is_self = str(actor["_id"]) == user_id
    if not actor_is_admin:
        # authorise before reading the target: no 404-vs-403 oracle on user ids
        if not is_self:
            raise Forbidden("Permission denied")
        forbidden = sorted(k for k in ("roles", "enabled") if k in body)
        if forbidden:
            # mass assignment: a user cannot grant themselves roles or re-enable
            raise UnprocessableEntity(
                "Only administrators may change roles or the enabled flag",
                details={k: ["Not allowed"] for k in forbidden},
            )
    target = await get_user(ctx, user_id)
    changes: dict[str, Any] = {}
    if "email" in body:
        changes["email"] = body["email"]
    if "password" in body:
        _check_password_policy(ctx, body["password"])
        if is_self:
            current = body.get("current_password")
            if not current:
                raise UnprocessableEntity(
                    "current_password is required to change your password",
                    details={"current_password": ["Required"]},
                )
            await auth_service.recheck_password(
                ctx, target, current, ip, "Current password is wrong"
            )
        changes["password_hash"] = await hash_password(
            body["password"], ctx.settings.auth.bcrypt_rounds
        )
    removes_admin = body.get("enabled") is False or (
        "roles" in body and "admin" not in body["roles"]
    )
    if removes_admin:
        async with _admin_change(ctx):
            target = await get_user(ctx, user_id)  # fresh, under the lease
            if actor_is_admin:
                await _still_admin(ctx, str(actor["_id"]))
            await _guard_last_admin(ctx, target)
            await _apply_update(ctx, target, body, changes)
    else:
        await _apply_update(ctx, target, body, changes)
    await audit.record(
        ctx.repos.audit,
        action="user.update",
        resource=f"users/{user_id}",
        result="success",
        user_id=str(actor["_id"]),
        details={"fields": sorted(k for k in body if k != "current_password")},
    )


async def _apply_update(
    ctx: Context, target: dict[str, Any], body: dict[str, Any], changes: dict[str, Any]
) -> None:
    user_id = str(target["_id"])
    roles_changed = "roles" in body and list(body["roles"]) != list(target.get("roles", []))
    if roles_changed:
        changes["roles"] = list(dict.fromkeys(body["roles"]))
    disabling = body.get("enabled") is False and target.get("enabled", True)
    if "enabled" in body:
        changes["enabled"] = body["enabled"]
    changes["updated_at"] = utcnow()
    if not await ctx.repos.users.update(user_id, changes):
        raise NotFound("User not found")
    if roles_changed or disabling or "password_hash" in changes:
        await auth_service.revoke_user(ctx, user_id, "user changed")


async def delete_user(ctx: Context, user_id: str, actor_id: str) -> None:
    await get_user(ctx, user_id)
    async with _admin_change(ctx):
        target = await get_user(ctx, user_id)
        await _still_admin(ctx, actor_id)
        await _guard_last_admin(ctx, target)
        await auth_service.revoke_user(ctx, user_id, "user deleted")
        if not await ctx.repos.users.delete(user_id):
            raise NotFound("User not found")
    await audit.record(
        ctx.repos.audit,
        action="user.delete",
        resource=f"users/{user_id}",
        result="success",
        user_id=actor_id,
        details={"username": target["username"]},
    )


async def reset_mfa(ctx: Context, user_id: str, actor_id: str) -> None:
    await get_user(ctx, user_id)
    await ctx.repos.users.update(
        user_id, {"mfa_enabled": False, "updated_at": utcnow()}, unset=("mfa_secret", "mfa_pending")
    )
    await audit.record(
        ctx.repos.audit,
        action="auth.mfa.reset",
        resource=f"users/{user_id}",
        result="success",
        user_id=actor_id,
    )


async def unlock(ctx: Context, user_id: str, actor_id: str) -> None:
    target = await get_user(ctx, user_id)
    await auth_service.unlock_account(ctx.repos.logins, ctx.repos.audit, target, actor_id, "admin")


async def break_glass_unlock(
    users: UserRepository, logins: LoginRepository, audit_repo: AuditRepository, via: str
) -> bool:
    """Lift the bootstrap ``admin``'s lockouts without an admin session (the
    ``unlock-admin`` command, ``BOOTSTRAP_ADMIN_UNLOCK=true``); False when there is
    no ``admin`` user."""
    admin = await users.by_username_key("admin")
    if admin is None:
        return False
    await auth_service.unlock_account(logins, audit_repo, admin, None, via)
    log.warning("break-glass: lockouts of 'admin' lifted (%s)", via)
    return True


async def bootstrap_admin(ctx: Context) -> None:
    """First start: create ``admin`` from BOOTSTRAP_ADMIN_PASSWORD, or generate a
    password and print it once. A marker keeps a deleted admin from coming back;
    the unique username decides between replicas starting together."""
    if await ctx.repos.policies.has_marker(BOOTSTRAP_MARKER):
        return
    if await ctx.repos.users.by_username_key("admin") is None:
        password = ctx.settings.auth.bootstrap_admin_password
        generated = password is None
        if password is None:
            password = secrets.token_urlsafe(18)
        try:
            await create_user(
                ctx,
                {
                    "username": "admin",
                    "email": ctx.settings.auth.bootstrap_admin_email,
                    "password": password,
                    "roles": ["admin"],
                    "enabled": True,
                },
                None,
            )
            if generated:
                # printed once, never logged: the operator reads it from the console
                print(
                    f"control_center: generated bootstrap password for 'admin': {password}",
                    file=sys.stderr,
                    flush=True,
                )
            log.info("bootstrap admin created")
        except Conflict:
            pass  # another replica created it
        except UnprocessableEntity as exc:
            log.error("BOOTSTRAP_ADMIN_PASSWORD rejected: %s", exc.message)
            raise
    await ctx.repos.policies.claim_marker(BOOTSTRAP_MARKER)
