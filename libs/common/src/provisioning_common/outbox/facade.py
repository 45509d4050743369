"""The :class:`Outbox` callers use: enqueue and redeliver items, read them and their
attempts, and run the delivery loop (the attempts themselves are :mod:`.delivery`'s,
the collections and reads :mod:`.store`'s)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from ..aio import wait_event
from ..group_commit import GroupCommit
from ..mongo import Document, IndexSpec, claim, insert_new
from ..timeutil import utcnow
from .delivery import Delivery
from .model import FINAL, PENDING, AttemptHook, Deliver, DeliverBatch, RetryPolicy
from .store import OutboxCollections

log = logging.getLogger(__name__)


class Outbox:
    """Items to deliver in ``<name>_outbox``, finished ones in ``<name>_history``,
    attempts in ``<name>_attempts`` (see the package docstring)."""

    def __init__(
        self,
        db: AsyncDatabase[Document],
        name: str,
        deliver: Deliver | None = None,
        policy: RetryPolicy | None = None,
        *,
        deliver_batch: DeliverBatch | None = None,
        on_attempt: AttemptHook | None = None,
        worker_id: str | None = None,
        history_indexes: Sequence[IndexSpec] = (),
    ) -> None:
        if policy is not None and policy.lease_seconds <= policy.attempt_timeout:
            raise ValueError("lease_seconds must exceed attempt_timeout")
        if (deliver is None) == (deliver_batch is None):
            raise ValueError("give exactly one of deliver and deliver_batch")
        self.store = OutboxCollections.of(db, name)
        self.items: AsyncCollection[Document] = self.store.items
        self.history: AsyncCollection[Document] = self.store.history
        self.attempts: AsyncCollection[Document] = self.store.attempts
        self.name = name
        self.deliver = deliver
        self.deliver_batch = deliver_batch
        self.policy = policy or RetryPolicy()
        self.on_attempt = on_attempt
        self.worker_id = worker_id or uuid.uuid4().hex[:12]
        self.history_indexes = tuple(history_indexes)
        self._delivery = Delivery(
            self.store,
            name,
            self.policy,
            deliver=deliver,
            deliver_batch=deliver_batch,
            on_attempt=on_attempt,
            worker_id=self.worker_id,
        )
        self._wake = asyncio.Event()
        # Concurrent enqueues share one insert; each item's unique insert still decides.
        self._inserts: GroupCommit[Document, bool] = GroupCommit(
            lambda docs: insert_new(self.items, docs), name=f"{name}-outbox-inserts"
        )

    async def ensure_indexes(self) -> None:
        """For MongoDB: the poll and the listings (see :class:`OutboxCollections`)."""
        await self.store.ensure_indexes(self.history_indexes)

    # ------------------------------------------------------------ writing

    async def enqueue(
        self,
        item_id: str,
        kind: str,
        payload: Mapping[str, Any],
        *,
        fields: Mapping[str, Any] | None = None,
        new_id: bool = False,
    ) -> bool:
        """Insert the item once; False when ``item_id`` was already enqueued.

        ``fields`` are extra top-level fields stored for filtering (never secrets).
        ``new_id=True`` says the id is fresh (e.g. a random UUID), which saves the
        history read that refuses an id delivered already."""
        if not new_id and await self.history.find_one({"_id": item_id}, {"_id": 1}) is not None:
            return False
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
        created = (await self._inserts.submit([doc]))[0]
        if created:
            self._wake.set()
        return created

    async def redeliver(self, item_id: str) -> bool:
        """Re-arm a finished item for a fresh series of attempts; False when it
        is unknown or still being delivered.

        The transition is decided by a unique insert: the re-armed copy goes into
        the outbox under the item's ``_id`` (``claim()``), so of concurrent
        redeliveries exactly one wins. The history copy stays until the new series
        ends and replaces it."""
        if await self.items.find_one({"_id": item_id}, {"_id": 1}) is not None:
            return False  # still (or again) being delivered
        done = await self.history.find_one({"_id": item_id})
        if done is None or done.get("status") not in FINAL:
            return False
        now = utcnow()
        doc: Document = {
            **done,
            "status": PENDING,
            "next_attempt_at": now,
            "updated_at": now,
            "max_attempts": int(done.get("attempts", 0)) + self.policy.max_attempts,
            "redeliveries": int(done.get("redeliveries", 0)) + 1,
        }
        doc.pop("finished_at", None)
        if not await claim(self.items, doc):
            return False
        self._wake.set()
        return True

    # ------------------------------------------------------------ reading

    async def get(self, item_id: str) -> Document | None:
        """The item's current state: its outbox copy while in flight, else its history."""
        return await self.store.get(item_id)

    async def find_items(
        self, query: Mapping[str, Any], *, limit: int, offset: int
    ) -> tuple[list[Document], int]:
        """Items matching ``query``, newest first (see :meth:`OutboxCollections.find_items`)."""
        return await self.store.find_items(query, limit=limit, offset=offset)

    async def count(self, query: Mapping[str, Any]) -> int:
        """How many items match ``query`` (each item once). Off the hot path."""
        return await self.store.count(query)

    async def attempts_for(self, docs: Sequence[Mapping[str, Any]]) -> dict[str, list[Document]]:
        """The attempt records of these items, oldest first (see
        :meth:`OutboxCollections.attempts_for`)."""
        return await self.store.attempts_for(docs)

    async def attempts_of(self, item_ids: list[str]) -> dict[str, list[Document]]:
        return await self.store.attempts_of(item_ids)

    # ------------------------------------------------------------ delivering

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Deliver due items until cancelled; storage errors are logged and retried."""
        try:
            await self.archive_finished()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("outbox %s: start-up sweep failed: %s", self.name, type(exc).__name__)
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
                await wait_event(self._wake, self.policy.poll_interval)

    async def archive_finished(self) -> int:
        """Start-up sweep: move finished items that an earlier version left in the
        outbox to the history; returns how many were moved."""
        return await self._delivery.archive_finished()

    async def run_once(self) -> int:
        """One pass over due items; returns how many attempts this replica made
        (plus finished items it moved to the history)."""
        return await self._delivery.run_once()
