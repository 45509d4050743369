"""Collections of the auth slice: sessions, issued and revoked tokens, single-use
claims (refresh rotation, TOTP time steps), login failures and lockouts, and the
locally generated MFA encryption key. Contested changes go through ``claim()``."""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from provisioning_common.mongo import Document, IndexSpec, claim, ensure_indexes
from provisioning_common.timeutil import utcnow


class SessionRepository:
    """One document per login (``_id`` = ``sid``): the family of its tokens."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.collection = db["sessions"]

    async def ensure_indexes(self) -> None:
        await ensure_indexes(self.collection, (IndexSpec((("user_id", 1),), "user_id"),))

    async def create(
        self, sid: str, user_id: str, created_at: datetime, expires_at: datetime
    ) -> None:
        await self.collection.insert_one(
            {
                "_id": sid,
                "user_id": user_id,
                "created_at": created_at,
                "expires_at": expires_at,
                "revoked_at": None,
            }
        )

    async def get(self, sid: str) -> dict[str, Any] | None:
        return await self.collection.find_one({"_id": sid})

    async def revoke(self, sid: str, reason: str) -> None:
        await self.collection.update_one(
            {"_id": sid}, {"$set": {"revoked_at": utcnow(), "revoked_reason": reason}}
        )

    async def revoke_user(self, user_id: str, reason: str) -> list[str]:
        sids = [
            d["_id"]
            async for d in self.collection.find(
                {"user_id": user_id, "revoked_at": None}, {"_id": 1}
            )
        ]
        if sids:
            await self.collection.update_many(
                {"_id": {"$in": sids}},
                {"$set": {"revoked_at": utcnow(), "revoked_reason": reason}},
            )
        return sids


class TokenRepository:
    """Issued user tokens (so that a family can be revoked) and revocations (the
    durable record; Redis holds the fast-path copy)."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.issued = db["issued_tokens"]
        self.revoked = db["revoked_tokens"]

    async def ensure_indexes(self) -> None:
        await ensure_indexes(
            self.issued, (IndexSpec((("sid", 1),), "sid"), IndexSpec((("exp", 1),), "exp"))
        )
        await ensure_indexes(self.revoked, (IndexSpec((("exp", 1),), "exp"),))

    async def record(self, jti: str, *, sid: str, user_id: str, typ: str, exp: int) -> None:
        await self.issued.insert_one(
            {"_id": jti, "sid": sid, "user_id": user_id, "typ": typ, "exp": exp}
        )

    async def live_of_session(self, sid: str, now: int) -> list[dict[str, Any]]:
        return [d async for d in self.issued.find({"sid": sid, "exp": {"$gt": now}})]

    async def revoke(self, jti: str, exp: int, reason: str) -> None:
        with contextlib.suppress(DuplicateKeyError):  # already revoked: fine
            await self.revoked.insert_one(
                {"_id": jti, "exp": exp, "reason": reason, "revoked_at": utcnow()}
            )

    async def is_revoked(self, jti: str) -> bool:
        return await self.revoked.find_one({"_id": jti}, {"_id": 1}) is not None

    async def purge_expired(self, now: int) -> None:
        await self.issued.delete_many({"exp": {"$lt": now}})
        await self.revoked.delete_many({"exp": {"$lt": now}})


class UseRepository:
    """Single-use markers: the insert that succeeds is the one use allowed."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.collection = db["single_use"]

    async def ensure_indexes(self) -> None:
        await ensure_indexes(self.collection, (IndexSpec((("expires", 1),), "expires"),))

    async def use_once(self, key: str, expires: int) -> bool:
        return await claim(self.collection, {"_id": key, "expires": expires, "at": utcnow()})

    async def purge_expired(self, now: int) -> None:
        await self.collection.delete_many({"expires": {"$lt": now}})


class LoginRepository:
    """Failed logins, lockouts and reset points, keyed by the lower-cased username
    whether or not such a user exists (so lockout reveals nothing)."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.failures = db["login_failures"]
        self.lockouts = db["lockouts"]
        self.state = db["login_state"]

    async def ensure_indexes(self) -> None:
        await ensure_indexes(
            self.failures,
            (IndexSpec((("key", 1), ("at", 1)), "key_at"), IndexSpec((("at", 1),), "at")),
        )
        await ensure_indexes(
            self.lockouts, (IndexSpec((("key", 1), ("locked_at", 1)), "key_locked_at"),)
        )

    async def reset_at(self, key: str) -> datetime | None:
        doc = await self.state.find_one({"_id": key})
        return doc["reset_at"] if doc else None

    async def reset(self, key: str, at: datetime) -> None:
        await self.state.update_one({"_id": key}, {"$set": {"reset_at": at}}, upsert=True)

    async def latest_lockout(self, key: str) -> dict[str, Any] | None:
        cursor = self.lockouts.find({"key": key}).sort("locked_at", -1).limit(1)
        docs = [d async for d in cursor]
        return docs[0] if docs else None

    async def add_failure(self, key: str, at: datetime, ip: str) -> None:
        await self.failures.insert_one({"key": key, "at": at, "ip": ip})

    async def count_failures(self, key: str, since: datetime) -> int:
        return await self.failures.count_documents({"key": key, "at": {"$gt": since}})

    async def count_lockouts(self, key: str, since: datetime | None = None) -> int:
        query: dict[str, Any] = {"key": key}
        if since is not None:
            query["locked_at"] = {"$gt": since}
        return await self.lockouts.count_documents(query)

    async def claim_lockout(self, key: str, number: int, at: datetime, until: datetime) -> bool:
        """Lockout ``number`` of ``key``: two failures crossing the budget at once
        compute the same number, and only one insert wins."""
        return await claim(
            self.lockouts, {"_id": f"{key}:{number}", "key": key, "locked_at": at, "until": until}
        )

    async def purge_failures(self, before: datetime) -> None:
        await self.failures.delete_many({"at": {"$lt": before - timedelta(days=1)}})


class SecretRepository:
    """Locally generated secrets (local runs without a configured key)."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.collection = db["local_secrets"]

    async def get_or_create(self, name: str, value: str) -> str:
        await claim(self.collection, {"_id": name, "value": value, "created_at": utcnow()})
        doc = await self.collection.find_one({"_id": name})
        assert doc is not None
        return str(doc["value"])
