"""What the outbox stores and hands around: item and attempt statuses, the retry
policy, an item as delivered, an attempt's result and outcome."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..backoff import exponential_backoff
from ..mongo import Document

PENDING = "pending"
DELIVERING = "delivering"
SUCCEEDED = "succeeded"
FAILED = "failed"
FINAL = frozenset({SUCCEEDED, FAILED})
ABANDONED = "abandoned"

# Attempt records shown per item (the newest); they are read one ``_id`` each.
MAX_ATTEMPT_LOG = 100


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
        return exponential_backoff(attempt, base=self.base_delay, cap=self.max_delay, rng=rng)


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
class Outcome:
    """How attempt ``seq`` of the item ``doc`` (as polled) ended."""

    doc: Document
    seq: int
    number: int  # the attempt's number (1-based), the item's ``attempts`` after it
    result: AttemptResult
    attempt: Document | None  # ``$set`` for the attempt record; None leaves it as it is
    retry_at: datetime | None = None  # when a retry is due (None: after backoff)
    notify: bool = True  # call ``on_attempt``
