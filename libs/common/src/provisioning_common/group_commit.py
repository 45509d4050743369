"""Group commit: many concurrent writers of the same kind share one write.

Items submitted while a write is in flight wait and go out together in the next one
(one ``insert_many``, one Redis pipeline). An idle writer writes at once, so nothing
waits for a timer; under load, writes get fewer and larger instead of queueing one
round trip per item. On a single-writer store (FerretDB's SQLite) that is most of
what a write costs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    """``write`` is called with every item submitted since the previous write began,
    in submission order, and returns one result per item: a value, or the exception
    that item alone failed with. ``await submit(items)`` returns the results of its own
    items, or raises the first exception among them, or what the whole write raised.
    ``max_items`` bounds one write; the rest go in the next."""

    def __init__(
        self,
        write: Callable[[list[Item]], Awaitable[Sequence[Result | BaseException]]],
        *,
        name: str,
        max_items: int = 500,
    ) -> None:
        self._write = write
        self._name = name
        self._max_items = max_items
        self._queued: list[tuple[Sequence[Item], asyncio.Future[list[Result]]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, items: Sequence[Item]) -> list[Result]:
        if not items:
            return []
        done: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        # Marks the outcome as seen, so a caller that left early leaves no warning.
        done.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._queued.append((items, done))
        loop = asyncio.get_running_loop()
        if self._writer is not None and self._writer.get_loop() is not loop:
            # A writer of another event loop (one closed under it) never drains: what it
            # left is its loop's business, not this one's.
            self._queued = [(i, f) for i, f in self._queued if f.get_loop() is loop]
            self._writer = None
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name=self._name)
        # Shielded: a caller that gives up does not take the others' write with it.
        return await asyncio.shield(done)

    def _next_group(self) -> list[tuple[Sequence[Item], asyncio.Future[list[Result]]]]:
        group: list[tuple[Sequence[Item], asyncio.Future[list[Result]]]] = []
        size = 0
        while self._queued and (not group or size + len(self._queued[0][0]) <= self._max_items):
            entry = self._queued.pop(0)
            group.append(entry)
            size += len(entry[0])
        return group

    async def _drain(self) -> None:
        while self._queued:
            group = self._next_group()
            items = [item for entry, _ in group for item in entry]
            try:
                results = list(await self._write(items))
                if len(results) != len(items):
                    raise RuntimeError(f"{self._name}: {len(results)} results for {len(items)}")
            except BaseException as exc:
                for _, done in group:
                    if not done.done():
                        done.set_exception(exc)
                if not isinstance(exc, Exception):  # the writer itself is cancelled
                    stopped = RuntimeError(f"{self._name}: writer stopped before this write")
                    for _, done in self._queued:
                        if not done.done():
                            done.set_exception(stopped)
                    self._queued = []
                    raise
                continue
            start = 0
            for entry, done in group:
                mine = results[start : start + len(entry)]
                start += len(entry)
                if done.done():
                    continue
                failed = next((r for r in mine if isinstance(r, BaseException)), None)
                if failed is not None:
                    done.set_exception(failed)
                else:
                    done.set_result([r for r in mine if not isinstance(r, BaseException)])
