"""``/ws?since=`` replay from a Redis Stream of recent events, so that a reconnecting
client does not make the orchestrator scan MongoDB ``events`` (history; DESIGN §3 cost
rule, ``docs/storage.md``).

* The publisher sends every event through :meth:`ReplayStream.publish`: one pipeline
  that, per event, appends it to ``<namespace>:events:replay`` (``XADD`` with
  ``MAXLEN ~ WS_REPLAY_CACHE``, approximate trimming) and publishes it on
  ``EVENTS_CHANNEL``. The ``XADD`` goes first: an event a ``/ws`` client missed on
  pub/sub because it was published before the client subscribed is in the stream
  before the client's replay reads it. Fields: ``id`` (event id), ``type``
  (``event_type``) and ``event`` (the JSON the live clients got).
* :meth:`ReplayStream.since` answers "the events after ``since``" from the stream when
  the stream provably holds all of them, else None. Entry ids are Redis' clock in ms,
  event ids the publishing replica's clock in ns (``new_event_id``), so it reads from
  ``<ms of since> - CLOCK_SKEW_MS`` on, drops ids ``<= since`` and sorts by event id
  (the order of the MongoDB replay, whatever order replicas appended in). The stream
  holds all of them when its oldest entry is no newer than that start (trimming only
  ever removes the oldest entries), or when nothing was ever trimmed from it and the
  ``since`` event itself is in it (a young stream: it was there before that event);
  both are checked again after the read (``XINFO STREAM``).
* :func:`replay` falls back to MongoDB (``EventRepository.since``, a bounded page of
  ``WS_REPLAY_LIMIT``) when the client asks for something older than the stream holds,
  when the stream is gone (Redis lost it) and when Redis is unavailable.

A pipeline that fails may have appended only part of its events: the stream then has a
hole, so the next pipeline of that publisher deletes the stream first (it restarts
after the hole, and replays from before it go to MongoDB). Keys live under
``<namespace>:`` (the MongoDB database name), like the task index.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from .repository import EventRepository

log = logging.getLogger(__name__)

# How far the publishing replicas' clocks may be ahead of Redis' (NTP keeps them
# within milliseconds); the read starts this much before ``since``.
CLOCK_SKEW_MS = 2000
_PAGE = 1000  # entries per XRANGE


class ReplayStream:
    def __init__(self, redis: Redis, namespace: str, maxlen: int) -> None:
        self.redis = redis
        self.key = f"{namespace}:events:replay"
        self.maxlen = maxlen
        self._hole = False  # a pipeline of ours failed: the stream may lack events

    async def publish(self, channel: str, wires: Sequence[Mapping[str, Any]]) -> None:
        """Append ``wires`` to the stream and publish them on ``channel``, in order,
        in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        if self._hole:
            pipe.delete(self.key)
        for wire in wires:
            text = json.dumps(wire, default=str)
            fields = {"id": str(wire["id"]), "type": str(wire["event_type"]), "event": text}
            pipe.xadd(self.key, fields, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
            pipe.publish(channel, text)
        try:
            await pipe.execute()
        except BaseException:
            self._hole = True
            raise
        self._hole = False

    async def since(
        self, since: str, event_types: Sequence[str] | None, limit: int
    ) -> list[dict[str, Any]] | None:
        """Up to ``limit`` events after the event id ``since`` (of ``event_types``),
        oldest first; None when the stream may not hold every one of them."""
        since_ms = int(since[:20]) // 1_000_000
        start = (max(0, since_ms - CLOCK_SKEW_MS), 0)
        before = await self._state()
        if before is None or not (
            before.first <= start
            # a young stream can answer only if the ``since`` event may be in it
            or (before.whole and before.first[0] <= since_ms + 2 * CLOCK_SKEW_MS)
        ):
            return None  # older than the cache, or no stream: skip the read
        wanted = set(event_types) if event_types else None
        found: list[tuple[str, str]] = []
        seen_since = False
        low = f"{start[0]}-0"
        while True:
            entries = await self._range(low, _PAGE)
            for _entry_id, fields in entries:
                event_id = fields.get("id", "")
                if event_id <= since:
                    seen_since = seen_since or event_id == since
                    continue
                if wanted is None or fields.get("type") in wanted:
                    found.append((event_id, fields.get("event", "")))
            if len(entries) < _PAGE:
                break
            low = f"({entries[-1][0]}"
        after = await self._state()  # trimmed, lost or restarted while we read?
        if after is None or not (
            after.first <= start or (after.whole and seen_since and after.first == before.first)
        ):
            return None
        found.sort()
        return [json.loads(text) for _, text in found[:limit]]

    async def _state(self) -> _State | None:
        try:
            info = await self.redis.xinfo_stream(self.key)
        except ResponseError:  # no such key
            return None
        first = info.get("first-entry")
        if not first:
            return None
        added = info.get("entries-added")  # Redis >= 7.0
        whole = added is not None and int(added) == int(info.get("length") or 0)
        return _State(_entry_id(_text(first[0])), whole)

    async def _range(self, low: str, count: int) -> list[tuple[str, dict[str, str]]]:
        raw = await self.redis.xrange(self.key, min=low, max="+", count=count)
        return [
            (_text(entry_id), {_text(k): _text(v) for k, v in (fields or {}).items()})
            for entry_id, fields in raw or []
        ]


@dataclass(frozen=True, slots=True)
class _State:
    first: tuple[int, int]  # the oldest entry's id
    whole: bool  # nothing was ever trimmed: the oldest entry is the first one added


def _entry_id(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _text(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return value or ""


async def replay(
    stream: ReplayStream | None,
    repository: EventRepository,
    since: str,
    event_types: Sequence[str] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """The events after ``since`` for a reconnecting ``/ws`` client, oldest first:
    from the stream when it holds them, else from MongoDB."""
    if stream is not None:
        try:
            cached = await stream.since(since, event_types, limit)
        except (RedisError, OSError, ValueError) as exc:
            log.warning("replay stream unavailable (%s); reading events", type(exc).__name__)
            cached = None
        if cached is not None:
            return cached
    return await repository.since(since, event_types, limit)
