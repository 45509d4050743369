"""The only code touching ``webhook_state``: the shared event-scan cursor (the
outbox collections belong to :class:`provisioning_common.outbox.Outbox`)."""

from __future__ import annotations

from pymongo.asynchronous.database import AsyncDatabase

from provisioning_common.mongo import Document
from provisioning_common.timeutil import utcnow

_CURSOR_ID = "event_cursor"


class CursorRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.state = db["webhook_state"]

    async def load(self) -> str | None:
        doc = await self.state.find_one({"_id": _CURSOR_ID})
        return str(doc["position"]) if doc and doc.get("position") else None

    async def advance(self, position: str) -> None:
        """Move the cursor forward only ($max): replicas may report out of order."""
        await self.state.update_one(
            {"_id": _CURSOR_ID},
            {"$max": {"position": position}, "$set": {"updated_at": utcnow()}},
            upsert=True,
        )
