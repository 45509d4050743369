"""What the auth slice needs of the users slice, as a protocol the container wires
(``control_center.container``); the users slice's repository satisfies it
structurally, and is not imported here."""

from __future__ import annotations

from typing import Any, Protocol


class UserRecords(Protocol):
    """The users slice's user documents: read by id or username key, updated by id."""

    async def get(self, user_id: str) -> dict[str, Any] | None: ...

    async def by_username_key(self, key: str) -> dict[str, Any] | None: ...

    async def update(
        self, user_id: str, changes: dict[str, Any], unset: tuple[str, ...] = ()
    ) -> bool: ...
