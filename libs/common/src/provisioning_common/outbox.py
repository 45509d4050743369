"""A durable outbox in MongoDB: at-least-once delivery with retries, shared by
every replica, with every attempt recorded.

One mechanism for every outbound delivery (webhooks, audit events):

* :meth:`Outbox.enqueue` inserts an item whose ``_id`` is the caller's
  idempotency key (``claim()``), so the same key is enqueued once however many
  replicas try.
* :meth:`Outbox.run` (one background task per replica) polls due items. Attempt
  ``n`` of an item is decided by ``claim()`` of the attempt record
  ``"<item id>:<n>"``: exactly one replica makes it. The attempt record is also
  the lease; an attempt whose lease expired (its replica died) is taken over by
  claiming ``"<item id>:<n>:takeover"`` and recorded as ``abandoned``.
* A failed attempt is retried after exponential backoff with jitter until the
  item's attempt limit; then the item is ``failed`` (a redelivery re-arms it).

Portability (DESIGN §3): no transactions, no TTL indexes, no conditional
updates deciding contested changes (only ``claim()`` does), no positional
updates. Collections: ``<name>_outbox`` and ``<name>_attempts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from .mongo import Document, IndexSpec, claim, ensure_indexes
from .timeutil import as_utc, utcnow

log = logging.getLogger(__name__)

PENDING = "pending"
DELIVERING = "delivering"
SUCCEEDED = "succeeded"
FAILED = "failed"
FINAL = frozenset({SUCCEEDED, FAILED})
ABANDONED = "abandoned"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 8
    base_delay: float = 1.0
    max_delay: float = 300.0
    attempt_timeout: float = 10.0
    lease_seconds: float = 30.0
    poll_interval: float = 0.5
    batch_size: int = 20

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before attempt ``attempt + 1``: exponential, capped, with jitter
        in [50 %, 100 %] so that many items failing together do not retry together."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** max(0, attempt - 1))
        jitter = float((rng or random).random())
        return ceiling * (0.5 + 0.5 * jitter)


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one delivery attempt came to; ``retry=False`` fails the item at once."""

    ok: bool
    status_code: int | None = None
    error: str | None = None
    retry: bool = True
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    status: str
    created_at: datetime

    @classmethod
    def from_doc(cls, doc: Document) -> OutboxItem:
        return cls(
            id=str(doc["_id"]),
            kind=str(doc.get("kind", "")),
            payload=dict(doc.get("payload") or {}),
            attempts=int(doc.get("attempts", 0)),
            max_attempts=int(doc.get("max_attempts", 1)),
            status=str(doc.get("status", PENDING)),
            created_at=doc["created_at"],
        )


Deliver = Callable[[OutboxItem, int], Awaitable[AttemptResult]]
AttemptHook = Callable[[OutboxItem, AttemptResult, str], None]


class Outbox:
    """Items in ``<name>_outbox``, attempts in ``<name>_attempts``."""

    def __init__(
        self,
        db: AsyncDatabase[Document],
        name: str,
        deliver: Deliver,
        policy: RetryPolicy | None = None,
        *,
        on_attempt: AttemptHook | None = None,
        worker_id: str | None = None,
    ) -> None:
        if policy is not None and policy.lease_seconds <= policy.attempt_timeout:
            raise ValueError("lease_seconds must exceed attempt_timeout")
        self.items: AsyncCollection[Document] = db[f"{name}_outbox"]
        self.attempts: AsyncCollection[Document] = db[f"{name}_attempts"]
        self.name = name
        self.deliver = deliver
        self.policy = policy or RetryPolicy()
        self.on_attempt = on_attempt
        self.worker_id = worker_id or uuid.uuid4().hex[:12]
        self._wake = asyncio.Event()
        self._rng = random.Random()  # noqa: S311 - jitter, not security

    async def ensure_indexes(self) -> None:
        await ensure_indexes(
            self.items,
            [
                IndexSpec([("status", ASCENDING), ("next_attempt_at", ASCENDING)], "due"),
                IndexSpec([("created_at", DESCENDING)], "created"),
            ],
        )
        await ensure_indexes(
            self.attempts, [IndexSpec([("item_id", ASCENDING), ("attempt", ASCENDING)], "item")]
        )

    # ------------------------------------------------------------ writing

    async def enqueue(
        self,
        item_id: str,
        kind: str,
        payload: Mapping[str, Any],
        *,
        fields: Mapping[str, Any] | None = None,
    ) -> bool:
        """Insert the item once; False when ``item_id`` was already enqueued.

        ``fields`` are extra top-level fields stored for filtering (never secrets)."""
        now = utcnow()
        doc: Document = {
            **dict(fields or {}),
            "_id": item_id,
            "kind": kind,
            "payload": dict(payload),
            "status": PENDING,
            "attempts": 0,
            "seq": 0,
            "max_attempts": self.policy.max_attempts,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
            "last_error": None,
            "last_status_code": None,
        }
        created = await claim(self.items, doc)
        if created:
            self._wake.set()
        return created

    async def redeliver(self, item_id: str) -> bool:
        """Re-arm a finished item for a fresh series of attempts; False when it
        is unknown or still being delivered."""
        doc = await self.items.find_one({"_id": item_id}, {"attempts": 1, "status": 1})
        if doc is None or doc.get("status") not in FINAL:
            return False
        now = utcnow()
        result = await self.items.update_one(
            {"_id": item_id, "status": {"$in": sorted(FINAL)}},
            {
                "$set": {
                    "status": PENDING,
                    "next_attempt_at": now,
                    "updated_at": now,
                    "max_attempts": int(doc.get("attempts", 0)) + self.policy.max_attempts,
                },
                "$inc": {"redeliveries": 1},
            },
        )
        if result.modified_count:
            self._wake.set()
        return bool(result.modified_count)

    # ------------------------------------------------------------ reading

    async def get(self, item_id: str) -> Document | None:
        return await self.items.find_one({"_id": item_id})

    async def find_items(
        self, query: Mapping[str, Any], *, limit: int, offset: int
    ) -> tuple[list[Document], int]:
        cursor = self.items.find(dict(query)).sort("created_at", DESCENDING).skip(offset)
        docs = await cursor.limit(limit).to_list(length=limit)
        total = await self.items.count_documents(dict(query))
        return docs, total

    async def attempts_of(self, item_ids: list[str]) -> dict[str, list[Document]]:
        found: dict[str, list[Document]] = {item_id: [] for item_id in item_ids}
        if not item_ids:
            return found
        cursor = self.attempts.find({"item_id": {"$in": item_ids}}).sort("started_at", ASCENDING)
        async for doc in cursor:
            found.setdefault(str(doc["item_id"]), []).append(doc)
        return found

    async def count(self, query: Mapping[str, Any]) -> int:
        return await self.items.count_documents(dict(query))

    # ------------------------------------------------------------ delivering

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Deliver due items until cancelled; storage errors are logged and retried."""
        while True:
            try:
                worked = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox %s: poll failed: %s", self.name, type(exc).__name__)
                worked = 0
            if worked:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.policy.poll_interval)

    async def run_once(self) -> int:
        """One pass over due items; returns how many attempts this replica made."""
        now = utcnow()
        cursor = (
            self.items.find(
                {"status": {"$in": [PENDING, DELIVERING]}, "next_attempt_at": {"$lte": now}}
            )
            .sort("next_attempt_at", ASCENDING)
            .limit(self.policy.batch_size)
        )
        due = await cursor.to_list(length=self.policy.batch_size)
        # Items are independent: one slow endpoint must not hold up the others.
        results = await asyncio.gather(*(self._attempt(doc) for doc in due))
        return sum(1 for made in results if made)

    async def _attempt(self, doc: Document) -> bool:
        item_id = str(doc["_id"])
        seq = int(doc.get("seq", 0))
        key = f"{item_id}:{seq}"
        now = utcnow()
        lease_until = now + timedelta(seconds=self.policy.lease_seconds)
        record: Document = {
            "_id": key,
            "item_id": item_id,
            "attempt": int(doc.get("attempts", 0)) + 1,
            "worker_id": self.worker_id,
            "status": DELIVERING,
            "started_at": now,
            "lease_until": lease_until,
        }
        if not await claim(self.attempts, record):
            await self._maybe_take_over(doc, key)
            return False
        fresh = await self.items.find_one({"_id": item_id})
        if fresh is None or int(fresh.get("seq", 0)) != seq or fresh.get("status") in FINAL:
            # We read a stale copy; the attempt number was already used. Undo our claim.
            await self.attempts.delete_one({"_id": key, "worker_id": self.worker_id})
            return False
        # Hidden from other replicas' polls until the lease could have run out.
        await self.items.update_one(
            {"_id": item_id},
            {"$set": {"status": DELIVERING, "updated_at": now, "next_attempt_at": lease_until}},
        )
        item = OutboxItem.from_doc(fresh)
        number = item.attempts + 1
        started = time.perf_counter()
        try:
            result = await asyncio.wait_for(self.deliver(item, number), self.policy.attempt_timeout)
        except TimeoutError:
            result = AttemptResult(ok=False, error="timeout")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a delivery bug must not stop the outbox
            log.exception("outbox %s: delivery of %s raised", self.name, item_id)
            result = AttemptResult(ok=False, error=f"error: {type(exc).__name__}")
        elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
        await self._finish(item, seq, number, result, elapsed_ms)
        return True

    async def _finish(
        self, item: OutboxItem, seq: int, number: int, result: AttemptResult, elapsed_ms: float
    ) -> None:
        now = utcnow()
        if result.ok:
            status, next_at = SUCCEEDED, now
        elif not result.retry or number >= item.max_attempts:
            status, next_at = FAILED, now
        else:
            status = PENDING
            next_at = now + timedelta(seconds=self.policy.backoff(number, self._rng))
        outcome = "success" if result.ok else ("failed" if status == FAILED else "retrying")
        await self.attempts.update_one(
            {"_id": f"{item.id}:{seq}"},
            {
                "$set": {
                    "status": "succeeded" if result.ok else "failed",
                    "ended_at": now,
                    "duration_ms": elapsed_ms,
                    "status_code": result.status_code,
                    "error": result.error,
                    "info": dict(result.info),
                }
            },
        )
        await self.items.update_one(
            {"_id": item.id},
            {
                "$set": {
                    "status": status,
                    "seq": seq + 1,
                    "attempts": number,
                    "next_attempt_at": next_at,
                    "updated_at": now,
                    "last_error": result.error,
                    "last_status_code": result.status_code,
                    **({"delivered_at": now} if result.ok else {}),
                }
            },
        )
        if self.on_attempt is not None:
            self.on_attempt(item, result, outcome)

    async def _maybe_take_over(self, doc: Document, key: str) -> None:
        """The attempt ``key`` is someone else's; if its lease ran out, record it
        as abandoned and move the item on so that another attempt can be made."""
        record = await self.attempts.find_one({"_id": key})
        if record is None or record.get("status") != DELIVERING:
            return
        lease_until = record.get("lease_until")
        if lease_until is None or as_utc(lease_until) > utcnow():
            return
        if not await claim(self.attempts, {"_id": f"{key}:takeover", "by": self.worker_id}):
            return
        now = utcnow()
        await self.attempts.update_one(
            {"_id": key}, {"$set": {"status": ABANDONED, "ended_at": now, "error": "lease expired"}}
        )
        attempts = int(doc.get("attempts", 0)) + 1
        failed = attempts >= int(doc.get("max_attempts", 1))
        await self.items.update_one(
            {"_id": doc["_id"]},
            {
                "$set": {
                    "status": FAILED if failed else PENDING,
                    "seq": int(doc.get("seq", 0)) + 1,
                    "attempts": attempts,
                    "next_attempt_at": now,
                    "updated_at": now,
                    "last_error": "lease expired",
                }
            },
        )
        log.warning("outbox %s: took over abandoned attempt %s", self.name, key)
