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
from provisioning_common.timeutil import as_utc, utcnow


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
    """Login failure budgets and lockouts (issue 13), per *scope*: an account (the
    lower-cased username, whether or not such a user exists, so that lockout reveals
    nothing) or an account seen from one source address.

    Every attempt first reserves a guess: a unique insert of
    ``<scope>#<generation>#<reset>#<window>#<n>`` for ``n`` below the budget in
    ``login_slots`` (DESIGN §3: the insert that succeeds owns the guess, so N
    concurrent attempts get at most the budget). When none is free, lockout number
    ``generation + 1`` is claimed (``lockouts``, ``_id = <scope>#lock#<n>``) and the
    next generation's slots open when it ends. ``login_state`` holds per scope the
    last reset (a successful login, an admin's unlock, the break-glass) and a hint of
    the lockout count. ``login_known`` remembers the addresses an account logged in
    from. Reads and writes on the login path are by ``_id`` only."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.slots = db["login_slots"]
        self.lockouts = db["lockouts"]
        self.state = db["login_state"]
        self.known = db["login_known"]

    async def ensure_indexes(self) -> None:
        await ensure_indexes(self.slots, (IndexSpec((("at", 1),), "at"),))
        await ensure_indexes(self.known, (IndexSpec((("at", 1),), "at"),))

    async def get_state(self, scope: str) -> dict[str, Any] | None:
        return await self.state.find_one({"_id": scope})

    async def reset_at(self, scope: str) -> datetime | None:
        doc = await self.get_state(scope)
        return doc.get("reset_at") if doc else None

    async def reset(self, scope: str, at: datetime) -> None:
        await self.state.update_one({"_id": scope}, {"$set": {"reset_at": at}}, upsert=True)

    async def note_lockouts(self, scope: str, number: int) -> None:
        """A hint only (the lockout documents decide): readers probe past it."""
        await self.state.update_one({"_id": scope}, {"$max": {"lockouts": number}}, upsert=True)

    async def lockout(self, scope: str, number: int) -> dict[str, Any] | None:
        return await self.lockouts.find_one({"_id": f"{scope}#lock#{number}"})

    async def claim_lockout(
        self, scope: str, number: int, at: datetime, until: datetime, streak: int
    ) -> bool:
        """Lockout ``number`` of ``scope``: concurrent attempts that find the budget
        spent compute the same number, and only one insert wins."""
        return await claim(
            self.lockouts,
            {
                "_id": f"{scope}#lock#{number}",
                "key": scope,
                "locked_at": at,
                "until": until,
                "streak": streak,
            },
        )

    async def claim_slot(self, slot: str, scope: str, at: datetime, ip: str) -> bool:
        return await claim(self.slots, {"_id": slot, "key": scope, "at": at, "ip": ip})

    async def is_known(self, scope: str, since: datetime) -> bool:
        doc = await self.known.find_one({"_id": scope})
        return doc is not None and as_utc(doc["at"]) >= since

    async def mark_known(self, scope: str, at: datetime) -> None:
        await self.known.update_one({"_id": scope}, {"$set": {"at": at}}, upsert=True)

    async def purge(self, before: datetime, known_before: datetime) -> None:
        await self.slots.delete_many({"at": {"$lt": before - timedelta(days=1)}})
        await self.known.delete_many({"at": {"$lt": known_before}})


class SecretRepository:
    """Locally generated secrets (local runs without a configured key)."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.collection = db["local_secrets"]

    async def get_or_create(self, name: str, value: str) -> str:
        await claim(self.collection, {"_id": name, "value": value, "created_at": utcnow()})
        doc = await self.collection.find_one({"_id": name})
        assert doc is not None
        return str(doc["value"])
