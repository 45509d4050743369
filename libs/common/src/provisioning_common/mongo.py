"""MongoDB helpers on PyMongo's async API (``AsyncMongoClient``).

Motor reached end of life on 2026-05-14; its maintainers point to the PyMongo
Async API as its successor, which is what this project uses.

Portability (DESIGN §3): nothing here uses transactions, change streams, TTL /
partial / text indexes or projections on ``find_one_and_*``. Mutual exclusion rests
on :func:`claim`, an insert with a unique ``_id``, never on conditional updates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, WriteError
from pymongo.monitoring import CommandListener

Document = dict[str, Any]
_DUPLICATE_KEY = 11000


def open_client(
    url: str,
    *,
    timeout_ms: int = 5000,
    operation_timeout_ms: int = 10_000,
    event_listeners: Sequence[CommandListener] = (),
) -> AsyncMongoClient[Document]:
    """A tz-aware client with bounded server selection, so an unreachable
    database fails a request in seconds instead of hanging it, and a bounded wait for
    each answer (``operation_timeout_ms``), so does a server that stops answering
    (a stalled host, or FerretDB's pool locked up): the caller gets a timeout
    (``exc.timeout``), which the API answers 503, instead of waiting forever.

    ``event_listeners`` see every command the client sends (tests record them to
    enforce the storage rule, ``docs/storage.md``)."""
    return AsyncMongoClient(
        url,
        tz_aware=True,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=operation_timeout_ms,
        # Waiting for a free pooled connection is bounded too (it is forever by default).
        waitQueueTimeoutMS=operation_timeout_ms,
        uuidRepresentation="standard",
        event_listeners=list(event_listeners),
    )


async def ping(db: AsyncDatabase[Document]) -> None:
    await db.command("ping")


@dataclass(frozen=True, slots=True)
class IndexSpec:
    keys: Sequence[tuple[str, int]]
    name: str
    unique: bool = False


async def ensure_indexes(collection: AsyncCollection[Document], specs: Sequence[IndexSpec]) -> None:
    """Create indexes idempotently at start-up (same name and keys: no-op)."""
    for spec in specs:
        await collection.create_index(list(spec.keys), name=spec.name, unique=spec.unique)


async def claim(collection: AsyncCollection[Document], doc: Mapping[str, Any]) -> bool:
    """Insert ``doc`` (which must carry its ``_id``); True when this caller won.

    The unique ``_id`` decides a contested change on every MongoDB-compatible
    server, FerretDB included: exactly one insert succeeds, the others get a
    duplicate-key error and back off."""
    if "_id" not in doc:
        raise ValueError("claim() needs a document with an explicit _id")
    try:
        await collection.insert_one(dict(doc))
    except DuplicateKeyError:
        return False
    return True


async def insert_new(
    collection: AsyncCollection[Document], docs: Sequence[Document]
) -> list[bool | Exception]:
    """An unordered ``insert_many`` of documents carrying their ``_id``: for each,
    True when inserted, False for a duplicate ``_id`` (it lost a :func:`claim`), or the
    write error of that document alone. An error that is not about one document (the
    server unreachable, a timeout) raises."""
    if not docs:
        return []
    outcome: list[bool | Exception] = [True] * len(docs)
    try:
        await collection.insert_many([dict(d) for d in docs], ordered=False)
    except BulkWriteError as exc:
        for err in exc.details.get("writeErrors", []):
            index = int(err.get("index", -1))
            if not 0 <= index < len(docs):
                raise
            duplicate = err.get("code") == _DUPLICATE_KEY
            outcome[index] = (
                False if duplicate else WriteError(err.get("errmsg"), err.get("code"), err)
            )
    return outcome
