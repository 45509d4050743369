"""``client.users``: user management (admin)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from .._convert import from_dict
from ..models import Page, User
from ._base import Resource


class UsersAPI(Resource):
    async def list(
        self,
        *,
        role: str | None = None,
        enabled: bool | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> Page[User]:
        params = {"role": role, "enabled": enabled, "limit": limit, "offset": offset}
        return await self._transport.page("control_center", "/users", User, params)

    def iter(
        self, *, role: str | None = None, enabled: bool | None = None, page_size: int = 100
    ) -> AsyncIterator[User]:
        params = {"role": role, "enabled": enabled}
        return self._transport.iterate("control_center", "/users", User, params, page_size)

    async def create(
        self,
        username: str,
        email: str,
        password: str,
        roles: Iterable[str],
        enabled: bool = True,
    ) -> User:
        body = {
            "username": username,
            "email": email,
            "password": password,
            "roles": list(roles),
            "enabled": enabled,
        }
        data = await self._transport.data("control_center", "POST", "/users", body=body)
        return from_dict(User, data)

    async def get(self, user_id: str) -> User:
        data = await self._transport.data("control_center", "GET", f"/users/{user_id}")
        return from_dict(User, data)

    async def update(self, /, user_id: str, **changes: Any) -> Any:
        """``PUT /users/{id}`` with e.g. ``email=``, ``roles=``, ``enabled=``, ``password=``."""
        body = {k: v for k, v in changes.items() if v is not None}
        return await self._transport.data("control_center", "PUT", f"/users/{user_id}", body=body)

    async def delete(self, user_id: str) -> Any:
        return await self._transport.data("control_center", "DELETE", f"/users/{user_id}")

    async def reset_mfa(self, user_id: str) -> Any:
        return await self._transport.data("control_center", "DELETE", f"/users/{user_id}/mfa")

    async def unlock(self, user_id: str) -> Any:
        """Lift a temporary login lockout (admin)."""
        return await self._transport.data("control_center", "POST", f"/users/{user_id}/unlock")
