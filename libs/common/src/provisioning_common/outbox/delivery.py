"""Attempts: one pass over due items claims each item's next attempt (a unique insert
of its attempt record, which is also the lease), delivers, and moves every item on;
an attempt whose replica died is taken over (see the package docstring)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from pymongo import ASCENDING

from ..mongo import Document, claim
from ..timeutil import as_utc, utcnow
from .model import (
    ABANDONED,
    DELIVERING,
    FAILED,
    FINAL,
    PENDING,
    SUCCEEDED,
    AttemptHook,
    AttemptResult,
    Deliver,
    DeliverBatch,
    OutboxItem,
    Outcome,
    RetryPolicy,
)
from .store import OutboxCollections, claim_many, delete_each, set_each

log = logging.getLogger(__name__)

_SWEEP_CHUNK = 500


class Delivery:
    """The delivery side of one outbox on this replica: ``run_once`` is one pass."""

    def __init__(
        self,
        store: OutboxCollections,
        name: str,
        policy: RetryPolicy,
        *,
        deliver: Deliver | None,
        deliver_batch: DeliverBatch | None,
        on_attempt: AttemptHook | None,
        worker_id: str,
    ) -> None:
        self.items = store.items
        self.history = store.history
        self.attempts = store.attempts
        self.name = name
        self.policy = policy
        self.deliver = deliver
        self.deliver_batch = deliver_batch
        self.on_attempt = on_attempt
        self.worker_id = worker_id
        self._rng = random.Random()  # noqa: S311 - jitter, not security

    async def archive_finished(self) -> int:
        """Start-up sweep: move finished items that an earlier version left in the
        outbox to the history; returns how many were moved."""
        moved = 0
        while True:
            cursor = self.items.find({"status": {"$in": sorted(FINAL)}}).limit(_SWEEP_CHUNK)
            docs = await cursor.to_list(None)
            if not docs:
                return moved
            await self._archive(docs)
            moved += len(docs)

    async def run_once(self) -> int:
        """One pass over due items; returns how many attempts this replica made
        (plus finished items it moved to the history)."""
        now = utcnow()
        cursor = (
            self.items.find({"next_attempt_at": {"$lte": now}})
            .sort("next_attempt_at", ASCENDING)
            .limit(self.policy.batch_size)
        )
        due = await cursor.to_list(length=self.policy.batch_size)
        finished = [doc for doc in due if doc.get("status") in FINAL]
        if finished:  # left by an earlier version (or one still running during an upgrade)
            await self._archive(finished)
        owned = await self._claim([doc for doc in due if doc.get("status") not in FINAL])
        if not owned:
            return len(finished)
        if self.deliver_batch is not None:
            await self._attempt_batch(owned)
        else:
            # Items are independent: one slow endpoint must not hold up the others.
            await asyncio.gather(*(self._attempt(doc, seq) for doc, seq in owned))
        return len(owned) + len(finished)

    async def _claim(self, due: list[Document]) -> list[tuple[Document, int]]:
        """Claim the next attempt of each due item (one unique insert each, sent as
        one command); the items won are hidden from other replicas' polls until
        the lease could have run out."""
        if not due:
            return []
        now = utcnow()
        lease_until = now + timedelta(seconds=self.policy.lease_seconds)
        records = [
            {
                "_id": f"{doc['_id']}:{int(doc.get('seq', 0))}",
                "item_id": str(doc["_id"]),
                "attempt": int(doc.get("attempts", 0)) + 1,
                "worker_id": self.worker_id,
                "status": DELIVERING,
                "started_at": now,
                "lease_until": lease_until,
            }
            for doc in due
        ]
        won = await claim_many(self.attempts, records)
        # A lost claim is someone else's attempt (or the trace of one that ended
        # without the item moving on): see whether it needs taking over or tidying.
        await asyncio.gather(
            *(
                self._resolve(doc, int(doc.get("seq", 0)), str(record["_id"]))
                for doc, record, mine in zip(due, records, won, strict=True)
                if not mine
            )
        )
        owned = [(doc, int(doc.get("seq", 0))) for doc, mine in zip(due, won, strict=True) if mine]
        await set_each(
            self.items,
            [
                (
                    doc["_id"],
                    {"status": DELIVERING, "updated_at": now, "next_attempt_at": lease_until},
                )
                for doc, _ in owned
            ],
        )
        return owned

    async def _attempt(self, doc: Document, seq: int) -> None:
        assert self.deliver is not None
        item = OutboxItem.from_doc(doc)
        number = item.attempts + 1
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.policy.attempt_timeout):
                result = await self.deliver(item, number)
        except TimeoutError:
            result = AttemptResult(ok=False, error="timeout")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a delivery bug must not stop the outbox
            log.exception("outbox %s: delivery of %s raised", self.name, item.id)
            result = AttemptResult(ok=False, error=f"error: {type(exc).__name__}")
        elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
        await self._finish([self._outcome(doc, seq, number, result, elapsed_ms)])

    async def _attempt_batch(self, owned: list[tuple[Document, int]]) -> None:
        assert self.deliver_batch is not None
        batch = [(OutboxItem.from_doc(doc), int(doc.get("attempts", 0)) + 1) for doc, _ in owned]
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.policy.attempt_timeout):
                results = list(await self.deliver_batch(batch))
            if len(results) != len(batch):
                raise ValueError(f"{len(results)} results for {len(batch)} items")
        except TimeoutError:
            results = [AttemptResult(ok=False, error="timeout")] * len(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("outbox %s: delivery of %d items raised", self.name, len(batch))
            results = [AttemptResult(ok=False, error=f"error: {type(exc).__name__}")] * len(batch)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
        await self._finish(
            [
                self._outcome(doc, seq, number, result, elapsed_ms)
                for (doc, seq), (_, number), result in zip(owned, batch, results, strict=True)
            ]
        )

    @staticmethod
    def _outcome(
        doc: Document, seq: int, number: int, result: AttemptResult, elapsed_ms: float
    ) -> Outcome:
        record = {
            "status": SUCCEEDED if result.ok else FAILED,
            "ended_at": utcnow(),
            "duration_ms": elapsed_ms,
            "status_code": result.status_code,
            "error": result.error,
            "info": dict(result.info),
        }
        return Outcome(doc, seq, number, result, record)

    async def _finish(self, outcomes: Sequence[Outcome]) -> None:
        """Move each item on after its attempt. Order: the item's new state first
        (history insert, or outbox update for a retry), then the attempt records,
        then the outbox copies of finished items go. So a finished attempt record
        always means the item has moved on, and a crash leaves at worst a stale
        outbox copy (deleted by the next pass) or an attempt record still
        ``delivering`` (taken over when its lease ends)."""
        now = utcnow()
        finished: list[Document] = []
        retries: list[tuple[Any, Document]] = []
        labels: list[str] = []
        for o in outcomes:
            result = o.result
            if result.ok:
                status, label = SUCCEEDED, "success"
            elif not result.retry or o.number >= int(o.doc.get("max_attempts", 1)):
                status, label = FAILED, "failed"
            else:
                status, label = PENDING, "retrying"
            labels.append(label)
            changes: Document = {
                "status": status,
                "seq": o.seq + 1,
                "attempts": o.number,
                "next_attempt_at": now,
                "updated_at": now,
                "last_error": result.error,
                "last_status_code": result.status_code,
            }
            if result.ok:
                changes["delivered_at"] = now
            if status == PENDING:
                delay = timedelta(seconds=self.policy.backoff(o.number, self._rng))
                changes["next_attempt_at"] = o.retry_at or now + delay
                retries.append((o.doc["_id"], changes))
            else:
                finished.append({**o.doc, **changes, "finished_at": now})
        await asyncio.gather(self._put_history(finished), set_each(self.items, retries))
        await set_each(
            self.attempts,
            [(f"{o.doc['_id']}:{o.seq}", o.attempt) for o in outcomes if o.attempt is not None],
        )
        await delete_each(self.items, [doc["_id"] for doc in finished])
        if self.on_attempt is None:
            return
        for o, label in zip(outcomes, labels, strict=True):
            if o.notify:
                self.on_attempt(OutboxItem.from_doc(o.doc), o.result, label)

    async def _put_history(self, docs: list[Document]) -> None:
        """Insert finished items into the history by ``_id``. One already there
        (a crash retried, or the copy left by a redelivery) is replaced unless the
        stored one is newer (a later attempt)."""
        inserted = await claim_many(self.history, docs)
        for doc, new in zip(docs, inserted, strict=True):
            if new:
                continue
            stored = await self.history.find_one({"_id": doc["_id"]}, {"seq": 1})
            if stored is None or int(stored.get("seq", 0)) <= int(doc.get("seq", 0)):
                await self.history.replace_one({"_id": doc["_id"]}, doc, upsert=True)

    async def _archive(self, docs: list[Document]) -> None:
        """Move finished items found in the outbox to the history."""
        await self._put_history([{**doc, "finished_at": doc.get("updated_at")} for doc in docs])
        await delete_each(self.items, [doc["_id"] for doc in docs])

    async def _resolve(self, doc: Document, seq: int, key: str) -> None:
        """Attempt ``key`` (of the polled ``doc``) was claimed before us. Nothing to
        do while its lease runs. Otherwise: if the item already finished, the
        polled copy is stale (drop it); if the attempt's replica died, take it
        over; if the attempt ended but the item did not move on (a crash between
        the two writes), move it on now."""
        record = await self.attempts.find_one({"_id": key})
        if record is None:
            return
        status = record.get("status")
        if status == DELIVERING:
            lease_until = record.get("lease_until")
            if lease_until is None or as_utc(lease_until) > utcnow():
                return
        item_id = doc["_id"]
        done = await self.history.find_one({"_id": item_id})
        if done is not None and int(done.get("seq", 0)) > seq:
            if status == DELIVERING and int(done.get("seq", 0)) == seq + 1:
                # The crash came before the attempt record was written: the item's
                # history copy says how the attempt ended.
                ended = {
                    "status": done.get("status"),
                    "ended_at": done.get("finished_at") or done.get("updated_at"),
                    "status_code": done.get("last_status_code"),
                    "error": done.get("last_error"),
                }
                await self.attempts.update_one({"_id": key}, {"$set": ended})
            await self.items.delete_one({"_id": item_id})
            return
        if status == DELIVERING:
            await self._take_over(doc, seq, key)
            return
        fresh = await self.items.find_one({"_id": item_id})
        if fresh is None or int(fresh.get("seq", 0)) != seq:
            return  # we polled a stale copy; the item has moved on
        ok = status == SUCCEEDED
        result = AttemptResult(
            ok=ok,
            status_code=record.get("status_code"),
            error=record.get("error") or (None if ok else str(status)),
        )
        number = int(record.get("attempt") or int(fresh.get("attempts", 0)) + 1)
        outcome = Outcome(fresh, seq, number, result, None, retry_at=utcnow(), notify=False)
        await self._finish([outcome])
        log.warning("outbox %s: moved %s on after attempt %s", self.name, item_id, key)

    async def _take_over(self, doc: Document, seq: int, key: str) -> None:
        """The attempt ``key``'s lease ran out (its replica died): record it as
        abandoned and move the item on so that another attempt can be made."""
        if not await claim(self.attempts, {"_id": f"{key}:takeover", "by": self.worker_id}):
            return
        now = utcnow()
        number = int(doc.get("attempts", 0)) + 1
        abandoned = {"status": ABANDONED, "ended_at": now, "error": "lease expired"}
        result = AttemptResult(ok=False, error="lease expired")
        await self._finish(
            [Outcome(doc, seq, number, result, abandoned, retry_at=now, notify=False)]
        )
        log.warning("outbox %s: took over abandoned attempt %s", self.name, key)
