"""Group commit (``provisioning_common.group_commit``): concurrent submissions share
writes, each caller gets its own results or its write's error, in order."""

from __future__ import annotations

import asyncio

import pytest

from provisioning_common.group_commit import GroupCommit


async def settle() -> None:
    """Let every ready task run until it waits on something."""
    for _ in range(10):
        await asyncio.sleep(0)


class Recorder:
    def __init__(self) -> None:
        self.writes: list[list[int]] = []
        self.gate = asyncio.Event()
        self.fail_on: int | None = None

    async def write(self, items: list[int]) -> list[int]:
        self.writes.append(list(items))
        await self.gate.wait()
        if self.fail_on is not None and self.fail_on in items:
            raise RuntimeError(f"write of {items} failed")
        return [i * 10 for i in items]


async def test_an_idle_writer_writes_at_once_and_a_busy_one_groups() -> None:
    rec = Recorder()
    group: GroupCommit[int, int] = GroupCommit(rec.write, name="test")
    first = asyncio.create_task(group.submit([1]))
    await settle()  # the first write starts alone
    assert rec.writes == [[1]]
    rest = [asyncio.create_task(group.submit([n, n + 1])) for n in (2, 4, 6)]
    await settle()
    rec.gate.set()
    assert await first == [10]
    assert [await t for t in rest] == [[20, 30], [40, 50], [60, 70]]
    assert rec.writes == [[1], [2, 3, 4, 5, 6, 7]]  # one write for the three waiting


async def test_a_failed_write_fails_exactly_its_callers() -> None:
    rec = Recorder()
    group: GroupCommit[int, int] = GroupCommit(rec.write, name="test", max_items=2)
    rec.fail_on = 3
    calls = [asyncio.create_task(group.submit([n])) for n in (1, 2, 3, 4, 5)]
    await settle()
    rec.gate.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    # Submitted before the first write began: grouped, max_items per write.
    assert rec.writes == [[1, 2], [3, 4], [5]]
    assert results[:2] == [[10], [20]]
    assert isinstance(results[2], RuntimeError)
    assert isinstance(results[3], RuntimeError)
    assert results[4] == [50]


async def test_a_caller_that_gives_up_does_not_cancel_the_write() -> None:
    rec = Recorder()
    group: GroupCommit[int, int] = GroupCommit(rec.write, name="test")
    leaving = asyncio.create_task(group.submit([1]))
    staying = asyncio.create_task(group.submit([2]))
    await settle()
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    rec.gate.set()
    assert await staying == [20]
    assert rec.writes == [[1, 2]]  # the write carried the leaver's item as well


async def test_an_item_that_fails_alone_fails_only_its_caller() -> None:
    async def write(items: list[int]) -> list[int | BaseException]:
        return [ValueError(f"bad {i}") if i == 2 else i for i in items]

    group: GroupCommit[int, int] = GroupCommit(write, name="per-item")
    calls = [asyncio.create_task(group.submit(items)) for items in ([1], [2, 3], [4])]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert results[0] == [1]
    assert isinstance(results[1], ValueError)
    assert results[2] == [4]


async def test_a_cancelled_writer_fails_the_waiting_callers_plainly() -> None:
    rec = Recorder()
    group: GroupCommit[int, int] = GroupCommit(rec.write, name="stopping", max_items=1)
    calls = [asyncio.create_task(group.submit([n])) for n in (1, 2)]
    await settle()
    assert group._writer is not None
    group._writer.cancel()
    first, second = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(first, asyncio.CancelledError)  # its own write was cancelled
    assert isinstance(second, RuntimeError)  # not a CancelledError it never asked for


async def test_a_write_must_answer_every_item() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:1]

    group: GroupCommit[int, int] = GroupCommit(short, name="short")
    with pytest.raises(RuntimeError, match="1 results for 2"):
        await group.submit([1, 2])
    assert await group.submit([]) == []


def test_a_writer_of_another_event_loop_does_not_block_this_one() -> None:
    """An object that outlives its event loop (a test's, or a restarted app's) while a
    write is pending there: a new loop gets a writer of its own."""
    rec = Recorder()
    group: GroupCommit[int, int] = GroupCommit(rec.write, name="loops")
    first = asyncio.new_event_loop()
    try:
        pending = first.create_task(group.submit([1]))
        first.run_until_complete(settle())  # the write starts and waits on its gate
        assert rec.writes == [[1]]
        first_gate = rec.gate

        async def again() -> list[int]:
            rec.gate = asyncio.Event()
            rec.gate.set()
            return await group.submit([2])

        assert asyncio.run(again()) == [20]  # while the first loop's write still waits
        assert rec.writes == [[1], [2]]
        first_gate.set()
        assert first.run_until_complete(pending) == [10]
    finally:
        first.close()
