"""A durable outbox in MongoDB: at-least-once delivery with retries, shared by
every replica, with every attempt recorded.

One mechanism for every outbound delivery (webhooks, audit events):

* :meth:`Outbox.enqueue` inserts an item whose ``_id`` is the caller's
  idempotency key (``claim()``), so the same key is enqueued once however many
  replicas try.
* :meth:`Outbox.run` (one background task per replica) polls due items. Attempt
  ``n`` of an item is decided by a unique insert of the attempt record
  ``"<item id>:<n>"``: exactly one replica makes it. The attempt record is also
  the lease; an attempt whose lease expired (its replica died) is taken over by
  claiming ``"<item id>:<n>:takeover"`` and recorded as ``abandoned``.
* A failed attempt is retried after exponential backoff with jitter until the
  item's attempt limit; then the item is ``failed`` (a redelivery re-arms it).
* Items are delivered one call each (``deliver``) or many per call
  (``deliver_batch``: every due item of a poll in one call, e.g. one HTTP request).

Storage (DESIGN §3 cost rule): three collections.

* ``<name>_outbox`` holds only items still to deliver (``pending`` /
  ``delivering``): it is bounded by in-flight work, so the due-item poll, the one
  query here that is not by ``_id``, stays cheap however long the history is.
* ``<name>_history`` holds finished items (``succeeded`` / ``failed``). A finished
  item is inserted there by ``_id`` first, then deleted from the outbox by ``_id``; a
  crash in between leaves a stale outbox copy that the next pass deletes (its
  attempt record exists already and the history copy has moved past it).
* ``<name>_attempts`` holds the attempt records and the takeover markers.

On the delivery path every read, update and delete is by exact ``{_id: value}``
(updates and deletes of a batch travel as one bulk command of such statements);
the history is read by anything else only when listing (off the hot path). An
item's current state is its outbox copy when it has one (in flight, e.g. being
redelivered), else its history copy.

Duplicate enqueues: an id already in the history is refused by an ``_id`` read;
one that slips in while the item moves to the history gets a copy at ``seq`` 0,
whose attempt record ``"<id>:0"`` exists already, so that copy is never delivered
and the next pass deletes it.

Portability (DESIGN §3): no transactions, no TTL indexes, no conditional
updates deciding contested changes (only unique inserts do), no positional
updates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, DeleteOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from .aio import wait_event
from .group_commit import GroupCommit
from .mongo import Document, IndexSpec, claim, ensure_indexes, insert_new
from .timeutil import as_utc, utcnow

log = logging.getLogger(__name__)

PENDING = "pending"
DELIVERING = "delivering"
SUCCEEDED = "succeeded"
FAILED = "failed"
FINAL = frozenset({SUCCEEDED, FAILED})
ABANDONED = "abandoned"

# Attempt records shown per item (the newest); they are read one ``_id`` each.
MAX_ATTEMPT_LOG = 100
_READ_CONCURRENCY = 16
_SWEEP_CHUNK = 500
_DUPLICATE_KEY = 11000
_NEWEST_FIRST = [("created_at", DESCENDING), ("_id", DESCENDING)]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 8
    base_delay: float = 1.0
    max_delay: float = 300.0
    attempt_timeout: float = 10.0
    lease_seconds: float = 30.0
    poll_interval: float = 0.5
    batch_size: int = 20  # due items per poll (and per call with ``deliver_batch``)

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
# Delivers (item, attempt number) pairs in one go; one result per pair, in order.
DeliverBatch = Callable[[Sequence[tuple[OutboxItem, int]]], Awaitable[Sequence[AttemptResult]]]
AttemptHook = Callable[[OutboxItem, AttemptResult, str], None]


@dataclass(slots=True)
class _Outcome:
    """How attempt ``seq`` of the item ``doc`` (as polled) ended."""

    doc: Document
    seq: int
    number: int  # the attempt's number (1-based), the item's ``attempts`` after it
    result: AttemptResult
    attempt: Document | None  # ``$set`` for the attempt record; None leaves it as it is
    retry_at: datetime | None = None  # when a retry is due (None: after backoff)
    notify: bool = True  # call ``on_attempt``


class Outbox:
    """Items to deliver in ``<name>_outbox``, finished ones in ``<name>_history``,
    attempts in ``<name>_attempts`` (see the module docstring)."""

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
        self.items: AsyncCollection[Document] = db[f"{name}_outbox"]
        self.history: AsyncCollection[Document] = db[f"{name}_history"]
        self.attempts: AsyncCollection[Document] = db[f"{name}_attempts"]
        self.name = name
        self.deliver = deliver
        self.deliver_batch = deliver_batch
        self.policy = policy or RetryPolicy()
        self.on_attempt = on_attempt
        self.worker_id = worker_id or uuid.uuid4().hex[:12]
        self.history_indexes = tuple(history_indexes)
        self._wake = asyncio.Event()
        self._rng = random.Random()  # noqa: S311 - jitter, not security
        # Concurrent enqueues share one insert; each item's unique insert still decides.
        self._inserts: GroupCommit[Document, bool] = GroupCommit(
            lambda docs: insert_new(self.items, docs), name=f"{name}-outbox-inserts"
        )

    async def ensure_indexes(self) -> None:
        """For MongoDB: the poll (``next_attempt_at``) and the listings (newest
        first). Attempt records are read by ``_id`` only."""
        await ensure_indexes(
            self.items,
            [
                IndexSpec([("next_attempt_at", ASCENDING)], "due_at"),
                IndexSpec([("created_at", DESCENDING)], "created"),
            ],
        )
        await ensure_indexes(
            self.history, [IndexSpec(_NEWEST_FIRST, "created"), *self.history_indexes]
        )

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
        live = await self.items.find_one({"_id": item_id})
        if live is not None:
            return live
        return await self.history.find_one({"_id": item_id})

    async def find_items(
        self, query: Mapping[str, Any], *, limit: int, offset: int
    ) -> tuple[list[Document], int]:
        """Items matching ``query``, newest first, over both collections (an item in
        flight is represented by its outbox copy only). Off the hot path: it reads
        the bounded outbox whole and the history by a page."""
        in_flight = await self._in_flight_ids()
        live = await self.items.find(dict(query)).sort(_NEWEST_FIRST).to_list(None)
        past_query = _excluding(query, in_flight)
        # The history doc at rank r lands at rank r..r+len(live) once merged, so
        # the ones before ``base`` are before the page whatever ``live`` holds.
        base = max(0, offset - len(live))
        cursor = self.history.find(past_query).sort(_NEWEST_FIRST).skip(base)
        past = await cursor.limit(limit + len(live)).to_list(None)
        merged = sorted([*live, *past], key=_newest_key, reverse=True)
        start = offset - base
        total = len(live) + await self.history.count_documents(past_query)
        return merged[start : start + limit], total

    async def count(self, query: Mapping[str, Any]) -> int:
        """How many items match ``query`` (each item once). Off the hot path."""
        in_flight = await self._in_flight_ids()
        live = await self.items.count_documents(dict(query))
        return live + await self.history.count_documents(_excluding(query, in_flight))

    async def attempts_for(self, docs: Sequence[Mapping[str, Any]]) -> dict[str, list[Document]]:
        """The attempt records of these items (their newest :data:`MAX_ATTEMPT_LOG`),
        oldest first, read one ``_id`` each: an item's attempts are
        ``"<id>:0"`` .. ``"<id>:<seq>"``."""
        keys: list[tuple[str, str]] = []
        for doc in docs:
            item_id, seq = str(doc["_id"]), int(doc.get("seq", 0))
            first = max(0, seq + 1 - MAX_ATTEMPT_LOG)
            keys.extend((item_id, f"{item_id}:{n}") for n in range(first, seq + 1))
        gate = asyncio.Semaphore(_READ_CONCURRENCY)

        async def read(key: str) -> Document | None:
            async with gate:
                return await self.attempts.find_one({"_id": key})

        records = await asyncio.gather(*(read(key) for _, key in keys))
        found: dict[str, list[Document]] = {str(doc["_id"]): [] for doc in docs}
        for (item_id, _), record in zip(keys, records, strict=True):
            if record is not None:
                found[item_id].append(record)
        return found

    async def attempts_of(self, item_ids: list[str]) -> dict[str, list[Document]]:
        docs = [doc for doc in await asyncio.gather(*(self.get(i) for i in item_ids)) if doc]
        found = await self.attempts_for(docs)
        return {item_id: found.get(item_id, []) for item_id in item_ids}

    async def _in_flight_ids(self) -> list[Any]:
        return [doc["_id"] async for doc in self.items.find({}, {"_id": 1})]

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
        won = await _claim_many(self.attempts, records)
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
        await _set_each(
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
    ) -> _Outcome:
        record = {
            "status": SUCCEEDED if result.ok else FAILED,
            "ended_at": utcnow(),
            "duration_ms": elapsed_ms,
            "status_code": result.status_code,
            "error": result.error,
            "info": dict(result.info),
        }
        return _Outcome(doc, seq, number, result, record)

    async def _finish(self, outcomes: Sequence[_Outcome]) -> None:
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
        await asyncio.gather(self._put_history(finished), _set_each(self.items, retries))
        await _set_each(
            self.attempts,
            [(f"{o.doc['_id']}:{o.seq}", o.attempt) for o in outcomes if o.attempt is not None],
        )
        await _delete_each(self.items, [doc["_id"] for doc in finished])
        if self.on_attempt is None:
            return
        for o, label in zip(outcomes, labels, strict=True):
            if o.notify:
                self.on_attempt(OutboxItem.from_doc(o.doc), o.result, label)

    async def _put_history(self, docs: list[Document]) -> None:
        """Insert finished items into the history by ``_id``. One already there
        (a crash retried, or the copy left by a redelivery) is replaced unless the
        stored one is newer (a later attempt)."""
        inserted = await _claim_many(self.history, docs)
        for doc, new in zip(docs, inserted, strict=True):
            if new:
                continue
            stored = await self.history.find_one({"_id": doc["_id"]}, {"seq": 1})
            if stored is None or int(stored.get("seq", 0)) <= int(doc.get("seq", 0)):
                await self.history.replace_one({"_id": doc["_id"]}, doc, upsert=True)

    async def _archive(self, docs: list[Document]) -> None:
        """Move finished items found in the outbox to the history."""
        await self._put_history([{**doc, "finished_at": doc.get("updated_at")} for doc in docs])
        await _delete_each(self.items, [doc["_id"] for doc in docs])

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
        outcome = _Outcome(fresh, seq, number, result, None, retry_at=utcnow(), notify=False)
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
            [_Outcome(doc, seq, number, result, abandoned, retry_at=now, notify=False)]
        )
        log.warning("outbox %s: took over abandoned attempt %s", self.name, key)


def _newest_key(doc: Mapping[str, Any]) -> tuple[datetime, str]:
    return as_utc(doc["created_at"]), str(doc["_id"])


def _excluding(query: Mapping[str, Any], ids: list[Any]) -> Document:
    """``query`` and ``_id`` not in ``ids``."""
    if not ids:
        return dict(query)
    if "_id" in query:
        return {"$and": [dict(query), {"_id": {"$nin": ids}}]}
    return {**dict(query), "_id": {"$nin": ids}}


async def _claim_many(
    collection: AsyncCollection[Document], docs: Sequence[Document]
) -> list[bool]:
    """Insert each document (each with its ``_id``) in one unordered command; for
    each, True when this caller's insert won (as :func:`claim`, in bulk)."""
    if not docs:
        return []
    if len(docs) == 1:
        return [await claim(collection, docs[0])]
    try:
        await collection.insert_many([dict(doc) for doc in docs], ordered=False)
    except BulkWriteError as exc:
        lost: set[int] = set()
        for error in exc.details.get("writeErrors", []):
            if error.get("code") != _DUPLICATE_KEY:
                raise
            lost.add(int(error.get("index", -1)))
        return [i not in lost for i in range(len(docs))]
    return [True] * len(docs)


async def _set_each(
    collection: AsyncCollection[Document], updates: Sequence[tuple[Any, Mapping[str, Any]]]
) -> None:
    """``$set`` by exact ``_id``, one ``update`` command each, concurrently (the client's
    pool bounds how many are in flight). Not one multi-statement command: FerretDB v1
    holds a SQLite connection per statement until such a command ends, and 100
    statements in flight exhaust its pool for good (``test_outbox_history``)."""
    await asyncio.gather(
        *(collection.update_one({"_id": i}, {"$set": dict(fields)}) for i, fields in updates)
    )


async def _delete_each(collection: AsyncCollection[Document], ids: Sequence[Any]) -> None:
    """Exact-``_id`` deletes in one command (FerretDB closes each statement's read
    before it writes, so these do not pile up connections)."""
    if ids:
        await collection.bulk_write([DeleteOne({"_id": i}) for i in ids], ordered=False)
