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

Modules: :mod:`.model` (statuses, policy, items, results), :mod:`.store` (the
collections, reads and bulk writes), :mod:`.delivery` (attempts) and :mod:`.facade`
(:class:`Outbox`, what callers use).
"""

from __future__ import annotations

from .facade import Outbox
from .model import (
    ABANDONED,
    DELIVERING,
    FAILED,
    FINAL,
    MAX_ATTEMPT_LOG,
    PENDING,
    SUCCEEDED,
    AttemptHook,
    AttemptResult,
    Deliver,
    DeliverBatch,
    OutboxItem,
    RetryPolicy,
)

__all__ = [
    "ABANDONED",
    "DELIVERING",
    "FAILED",
    "FINAL",
    "MAX_ATTEMPT_LOG",
    "PENDING",
    "SUCCEEDED",
    "AttemptHook",
    "AttemptResult",
    "Deliver",
    "DeliverBatch",
    "Outbox",
    "OutboxItem",
    "RetryPolicy",
]
