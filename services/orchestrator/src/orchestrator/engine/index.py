"""The task index: which tasks exist, in creation order, by status, standalone or by
batch — sorted sets in Redis, so that listing, filtering and counting tasks cost the
page asked for, not the history kept (DESIGN §3 cost rule: FerretDB reads and decodes
a whole collection for any filtered or sorted query, 3 s for 20k tasks).

MongoDB stays the system of record; the index is a cache that can be lost:

* every status change the store writes is mirrored here by one atomic script;
* a reader point-reads the documents of the page and trusts them, repairing an entry
  that disagrees (lazily, on the way);
* when the index is missing (a new Redis, a flushed one) or a mirror write failed, it is
  rebuilt from MongoDB by one replica at a time: tasks it lacks are added, and final
  statuses (which never change) overwrite what it holds.

Keys live under ``<namespace>:`` (the MongoDB database name by default), so two
deployments or test databases sharing a Redis never see each other's tasks. Scores are
creation times in seconds; equal scores order by id, like the MongoDB sort
``(created_at desc, _id desc)``."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from provisioning_common.timeutil import as_utc

from .model import FINAL_STATUSES, PENDING, STATUSES

log = logging.getLogger(__name__)

# KEYS: all, standalone-all, then one set per status for all tasks, then the same for
# standalone tasks (len(STATUSES) each). ARGV: id, status index (1-based), score,
# mode, standalone ("1"/"0"), batch key or "".
# mode "add": index a task (a new one, or one found by a rebuild): when it is indexed
#   already, only a final status replaces the one held (a rebuild reads a snapshot).
# mode "move": a status change of an indexed task; an unknown task is left alone, and
#   one the index holds final is not moved back to an unfinished status (a final never
#   changes; a late or reordered write must not undo it). ARGV[11]: "1"/"0" per
#   status, whether it is final.
# Owners (ARGV[8] owner or "", ARGV[9] the owners hash, ARGV[10] the per-owner key
# prefix): an unfinished task of an owner is in ``<prefix><owner>`` (a sorted set, so
# counting a user's pending work is one ZCARD) and the owners hash remembers whose it
# is until it is final ("move" calls do not know the owner).
_MIRROR = """
local id, status, score, mode = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local n = (#KEYS - 2) / 2
local held = redis.call('ZSCORE', KEYS[1], id)
if not held then
  if mode == 'move' then return 0 end
  redis.call('ZADD', KEYS[1], score, id)
  if ARGV[5] == '1' then redis.call('ZADD', KEYS[2], score, id) end
  if ARGV[6] ~= '' then redis.call('ZADD', ARGV[6], score, id) end
  held = score
elseif mode == 'add' and ARGV[7] ~= '1' then
  return 0
elseif mode == 'move' and ARGV[7] ~= '1' then
  for i = 1, n do
    if string.sub(ARGV[11], i, i) == '1' and i ~= status
        and redis.call('ZSCORE', KEYS[2 + i], id) then
      return 0
    end
  end
end
local standalone = redis.call('ZSCORE', KEYS[2], id)
for i = 1, n do
  if i == status then
    redis.call('ZADD', KEYS[2 + i], held, id)
    if standalone then redis.call('ZADD', KEYS[2 + n + i], held, id) end
  else
    redis.call('ZREM', KEYS[2 + i], id)
    if standalone then redis.call('ZREM', KEYS[2 + n + i], id) end
  end
end
local owner = ARGV[8]
if owner == '' then owner = redis.call('HGET', ARGV[9], id) or '' end
if owner ~= '' then
  if ARGV[7] == '1' then
    redis.call('ZREM', ARGV[10] .. owner, id)
    redis.call('HDEL', ARGV[9], id)
  else
    redis.call('ZADD', ARGV[10] .. owner, held, id)
    redis.call('HSET', ARGV[9], id, owner)
  end
end
return 1
"""

_FINAL_FLAGS = "".join("1" if s in FINAL_STATUSES else "0" for s in STATUSES)
_REBUILD_LOCK_SECONDS = 300


def owner_of(task: Mapping[str, Any]) -> str:
    """The ``sub`` of the user a task was created for ("" when none was recorded)."""
    metadata = task.get("metadata")
    owner = metadata.get("owner") if isinstance(metadata, Mapping) else None
    return str(owner) if owner else ""


def score_of(created_at: datetime | None) -> float:
    return as_utc(created_at).timestamp() if created_at is not None else 0.0


class TaskIndex:
    def __init__(self, redis: Redis, namespace: str) -> None:
        self.redis = redis
        self.prefix = f"{namespace}:tasks"
        self._mirror = redis.register_script(_MIRROR)
        # Set when a mirror write failed: the index may lack something until rebuilt.
        self.dirty = False

    # ------------------------------------------------------------------ keys
    def key(self, *, status: str | None = None, standalone: bool = False) -> str:
        scope = "standalone" if standalone else "all"
        return f"{self.prefix}:{scope}" + (f":{status}" if status else "")

    def batch_key(self, batch_id: str) -> str:
        return f"{self.prefix}:batch:{batch_id}"

    def owner_key(self, owner: str) -> str:
        """Unfinished (Pending/Running) tasks of ``owner``."""
        return f"{self.prefix}:owner:{owner}"

    @property
    def _owners_key(self) -> str:
        return f"{self.prefix}:owners"

    @property
    def _built_key(self) -> str:
        return f"{self.prefix}:built"

    def _keys(self) -> list[str]:
        return [
            self.key(),
            self.key(standalone=True),
            *(self.key(status=s) for s in STATUSES),
            *(self.key(status=s, standalone=True) for s in STATUSES),
        ]

    def _args(self, task: Mapping[str, Any], status: str, mode: str) -> list[Any]:
        batch_id = task.get("batch_id")
        return [
            str(task["_id"]),
            STATUSES.index(status) + 1,
            repr(score_of(task.get("created_at"))),
            mode,
            "0" if batch_id else "1",
            self.batch_key(str(batch_id)) if batch_id else "",
            "1" if status in FINAL_STATUSES else "0",
            owner_of(task),
            self._owners_key,
            self.owner_key(""),
            _FINAL_FLAGS,
        ]

    # --------------------------------------------------------------- writing
    async def add(self, tasks: Sequence[Mapping[str, Any]]) -> None:
        """Index new tasks (with the status their document holds)."""
        await self._run([(t, str(t.get("status")), "add") for t in tasks])

    async def move(self, task_id: str, status: str) -> None:
        await self._run([({"_id": task_id}, status, "move")])

    async def _run(self, calls: Sequence[tuple[Mapping[str, Any], str, str]]) -> None:
        if not calls:
            return
        keys = self._keys()
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for task, status, mode in calls:
                    await self._mirror(keys=keys, args=self._args(task, status, mode), client=pipe)
                await pipe.execute()
        except Exception:
            self.dirty = True
            raise

    async def forget(self, task_ids: Iterable[str], batch_ids: Iterable[str] = ()) -> None:
        """Drop tasks from every set (retention, or an entry whose task is gone)."""
        ids = list(task_ids)
        if not ids:
            return
        owners = await self.redis.hmget(self._owners_key, ids)
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in self._keys():
                pipe.zrem(key, *ids)
            for batch_id in set(batch_ids):
                pipe.zrem(self.batch_key(batch_id), *ids)
            for task_id, owner in zip(ids, owners, strict=True):
                if owner:
                    name = owner.decode() if isinstance(owner, bytes) else str(owner)
                    pipe.zrem(self.owner_key(name), task_id)
            pipe.hdel(self._owners_key, *ids)
            await pipe.execute()

    # --------------------------------------------------------------- reading
    async def page(self, key: str, offset: int, limit: int) -> list[str]:
        if limit <= 0:
            return []
        raw = await self.redis.zrevrange(key, offset, offset + limit - 1)
        return [r.decode() if isinstance(r, bytes) else str(r) for r in raw]

    async def page_with_scores(self, key: str, offset: int, limit: int) -> list[tuple[str, float]]:
        if limit <= 0:
            return []
        raw: list[Any] = list(
            await self.redis.zrevrange(key, offset, offset + limit - 1, withscores=True)
        )
        return [(m.decode() if isinstance(m, bytes) else str(m), float(sc)) for m, sc in raw]

    async def oldest(self, before: float, limit: int) -> list[str]:
        raw = await self.redis.zrangebyscore(self.key(), "-inf", before, start=0, num=limit)
        return [r.decode() if isinstance(r, bytes) else str(r) for r in raw]

    async def unfinished_of(self, owner: str) -> int:
        """Pending and running tasks of ``owner`` (one ZCARD, whatever the history)."""
        return int(await self.redis.zcard(self.owner_key(owner)))

    async def pending_among(self, ids: Sequence[str]) -> set[str] | None:
        """Those of ``ids`` the index holds as Pending (one round trip, whatever the
        history); None while the index may be incomplete (not built, or a write failed)."""
        if self.dirty:
            return None
        if not ids:
            return set()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(self._built_key)
            pipe.zmscore(self.key(status=PENDING), list(ids))
            built, scores = await pipe.execute()
        if not built:
            return None
        return {i for i, score in zip(ids, scores, strict=True) if score is not None}

    async def count(self, key: str) -> int:
        return int(await self.redis.zcard(key))

    async def counts(self, *, standalone: bool = False) -> dict[str, int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for status in STATUSES:
                pipe.zcard(self.key(status=status, standalone=standalone))
            values = await pipe.execute()
        return {s: int(v) for s, v in zip(STATUSES, values, strict=True)}

    # --------------------------------------------------------------- rebuild
    async def needs_rebuild(self) -> bool:
        return self.dirty or not await self.redis.exists(self._built_key)

    async def rebuild(self, tasks: Any, worker_id: str) -> bool:
        """Merge every task of ``tasks`` (an async iterable of documents with ``_id``,
        ``status``, ``created_at``, ``batch_id``) into the index; one replica at a time.
        False when another replica holds the rebuild."""
        lock = f"{self.prefix}:rebuilding"
        if not await self.redis.set(lock, worker_id, nx=True, ex=_REBUILD_LOCK_SECONDS):
            return False
        self.dirty = False
        try:
            chunk: list[tuple[Mapping[str, Any], str, str]] = []
            count = 0
            async for doc in tasks:
                chunk.append((doc, str(doc.get("status")), "add"))
                if len(chunk) >= 500:
                    await self._run(chunk)
                    count += len(chunk)
                    chunk = []
            await self._run(chunk)
            count += len(chunk)
            await self.redis.set(self._built_key, "1")
            log.info("task index rebuilt from %d tasks", count)
            return True
        finally:
            await self.redis.delete(lock)
