"""What retention needs of other slices, as protocols the container wires
(``orchestrator.container``): the engine's task store (its collections and Redis task
index, so their names live in one place) and the batch slice's batches, read by id.
No other slice's repository (nor the engine's store) is imported here; their classes
satisfy these protocols structurally."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from pymongo.asynchronous.collection import AsyncCollection

from provisioning_common.mongo import Document


class TaskIndexPurge(Protocol):
    """The engine's Redis task index: the oldest tasks, and forgetting removed ones."""

    async def oldest(self, before: float, limit: int) -> list[str]: ...

    async def forget(self, task_ids: Iterable[str], batch_ids: Iterable[str] = ()) -> None: ...


class TaskStorePurge(Protocol):
    """The engine's task store: point reads, and the collections a task's history is in."""

    @property
    def index(self) -> TaskIndexPurge: ...

    @property
    def tasks(self) -> AsyncCollection[Document]: ...

    @property
    def attempts_col(self) -> AsyncCollection[Document]: ...

    @property
    def finals(self) -> AsyncCollection[Document]: ...

    @property
    def cancels(self) -> AsyncCollection[Document]: ...

    @property
    def outputs(self) -> AsyncCollection[Document]: ...

    @property
    def queue(self) -> AsyncCollection[Document]: ...

    async def get_many(self, ids: Iterable[str]) -> dict[str, Document]: ...

    async def forget_cancel_copies(self, task_ids: Sequence[str]) -> None: ...


class BatchReader(Protocol):
    """The batch slice's ``batches`` documents, read by id."""

    async def get(self, batch_id: str) -> Document | None: ...
