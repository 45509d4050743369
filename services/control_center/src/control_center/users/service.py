"""User management use cases: create, read, list, update (roles, the enabled flag,
password), delete, MFA reset and unlock, with the last-admin guard."""

from __future__ import annotations

import asyncio
import contextlib
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

from ..audit.service import AuditLog
from ..auth.lockout import Lockouts
from ..auth.passwords import hash_password
from ..auth.revocation import Revocations
from ..settings import AuthSettings
from .model import password_problems, username_key
from .repository import UserRepository

ADMIN_LOCK_LEASE = timedelta(seconds=10)  # a crashed holder blocks admin changes this long
ADMIN_LOCK_WAIT = 5.0


class UserService:
    def __init__(
        self,
        settings: AuthSettings,
        users: UserRepository,
        revocations: Revocations,
        lockouts: Lockouts,
        audit: AuditLog,
    ) -> None:
        self._settings = settings
        self._users = users
        self._revocations = revocations
        self._lockouts = lockouts
        self._audit = audit

    def _check_password_policy(self, password: str) -> None:
        problems = password_problems(password, self._settings.password_min_length)
        if problems:
            raise UnprocessableEntity(problems[0], details={"password": problems})

    async def create(self, body: dict[str, Any], actor: str | None) -> dict[str, Any]:
        """Store a new user; its document (the route dumps its public part)."""
        self._check_password_policy(body["password"])
        now = utcnow()
        doc = {
            "_id": str(uuid.uuid4()),
            "username": body["username"],
            "username_key": username_key(body["username"]),
            "email": body["email"],
            "password_hash": await hash_password(body["password"], self._settings.bcrypt_rounds),
            "roles": sorted(set(body["roles"]), key=body["roles"].index),
            "enabled": body["enabled"],
            "mfa_enabled": False,
            "created_at": now,
            "updated_at": now,
            "last_login": None,
            "revoked_before": 0,
        }
        await self._users.insert(doc)
        await self._audit.record(
            action="user.create",
            resource=f"users/{doc['_id']}",
            result="success",
            user_id=actor,
            details={"username": doc["username"], "roles": doc["roles"]},
        )
        return doc

    async def get(self, user_id: str) -> dict[str, Any]:
        doc = await self._users.get(user_id)
        if doc is None:
            raise NotFound("User not found")
        return doc

    async def page(
        self, *, role: str | None, enabled: bool | None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        query: dict[str, Any] = {}
        if role is not None:
            query["roles"] = role
        if enabled is not None:
            query["enabled"] = enabled
        return await self._users.find_page(query, limit, offset)

    async def update(
        self,
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
        target = await self.get(user_id)
        changes: dict[str, Any] = {}
        if "email" in body:
            changes["email"] = body["email"]
        if "password" in body:
            self._check_password_policy(body["password"])
            if is_self:
                current = body.get("current_password")
                if not current:
                    raise UnprocessableEntity(
                        "current_password is required to change your password",
                        details={"current_password": ["Required"]},
                    )
                await self._lockouts.recheck_password(
                    target, current, ip, "Current password is wrong"
                )
            changes["password_hash"] = await hash_password(
                body["password"], self._settings.bcrypt_rounds
            )
        removes_admin = body.get("enabled") is False or (
            "roles" in body and "admin" not in body["roles"]
        )
        if removes_admin:
            async with self._admin_change():
                target = await self.get(user_id)  # fresh, under the lease
                if actor_is_admin:
                    await self._still_admin(str(actor["_id"]))
                await self._guard_last_admin(target)
                await self._apply_update(target, body, changes)
        else:
            await self._apply_update(target, body, changes)
        await self._audit.record(
            action="user.update",
            resource=f"users/{user_id}",
            result="success",
            user_id=str(actor["_id"]),
            details={"fields": sorted(k for k in body if k != "current_password")},
        )

    async def _apply_update(
        self, target: dict[str, Any], body: dict[str, Any], changes: dict[str, Any]
    ) -> None:
        user_id = str(target["_id"])
        roles_changed = "roles" in body and list(body["roles"]) != list(target.get("roles", []))
        if roles_changed:
            changes["roles"] = list(dict.fromkeys(body["roles"]))
        disabling = body.get("enabled") is False and target.get("enabled", True)
        if "enabled" in body:
            changes["enabled"] = body["enabled"]
        changes["updated_at"] = utcnow()
        if not await self._users.update(user_id, changes):
            raise NotFound("User not found")
        if roles_changed or disabling or "password_hash" in changes:
            await self._revocations.revoke_user(user_id, "user changed")

    async def delete(self, user_id: str, actor_id: str) -> None:
        await self.get(user_id)
        async with self._admin_change():
            target = await self.get(user_id)
            await self._still_admin(actor_id)
            await self._guard_last_admin(target)
            await self._revocations.revoke_user(user_id, "user deleted")
            if not await self._users.delete(user_id):
                raise NotFound("User not found")
        await self._audit.record(
            action="user.delete",
            resource=f"users/{user_id}",
            result="success",
            user_id=actor_id,
            details={"username": target["username"]},
        )

    async def reset_mfa(self, user_id: str, actor_id: str) -> None:
        await self.get(user_id)
        await self._users.update(
            user_id,
            {"mfa_enabled": False, "updated_at": utcnow()},
            unset=("mfa_secret", "mfa_pending"),
        )
        await self._audit.record(
            action="auth.mfa.reset",
            resource=f"users/{user_id}",
            result="success",
            user_id=actor_id,
        )

    async def unlock(self, user_id: str, actor_id: str) -> None:
        target = await self.get(user_id)
        await self._lockouts.unlock(target, actor_id, "admin")

    # -- the last enabled admin ----------------------------------------------------------
    async def _guard_last_admin(self, target: dict[str, Any]) -> None:
        """``target`` is about to stop being an enabled admin (call under the lease)."""
        is_active_admin = "admin" in target.get("roles", []) and target.get("enabled", True)
        if is_active_admin and not await self._users.count_enabled_admins(
            excluding=str(target["_id"])
        ):
            raise Conflict("The last enabled administrator cannot be disabled, demoted or deleted")

    async def _still_admin(self, actor_id: str) -> None:
        """The actor may have been demoted or disabled while waiting for the lease."""
        actor = await self._users.get(actor_id)
        if actor is None or not actor.get("enabled", True) or "admin" not in actor.get("roles", []):
            raise Forbidden("Permission denied")

    @contextlib.asynccontextmanager
    async def _admin_change(self) -> AsyncIterator[None]:
        """Serialise every change that can remove an enabled admin (DESIGN §3 unique
        insert): two admins demoting each other at once would otherwise both still see
        the other one as admin, both succeed, and leave no admin at all."""
        holder = uuid.uuid4().hex
        deadline = time.monotonic() + ADMIN_LOCK_WAIT
        while not await self._users.lock_admins(holder, utcnow() + ADMIN_LOCK_LEASE):
            if time.monotonic() > deadline:
                raise Conflict("Another change to administrators is in progress; retry")
            await asyncio.sleep(0.05)
        try:
            yield
        finally:
            await self._users.unlock_admins(holder)
