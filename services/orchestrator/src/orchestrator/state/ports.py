"""What the state slice reads of other slices, as protocols the container wires
(``orchestrator.container``): the batch slice's batches and the engine's task store.
No other slice's repository (nor the engine's store) is imported here; their classes
satisfy these protocols structurally."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from provisioning_common.mongo import Document


class BatchReader(Protocol):
    """The batch slice's ``batches`` documents, read only."""

    async def get(self, batch_id: str) -> Document | None: ...

    async def count_by_status(self) -> dict[str, int]: ...

    async def recent_finished(self, limit: int) -> list[Document]: ...


class TaskIndexReader(Protocol):
    """The engine's Redis task index, read only."""

    def key(self, *, status: str | None = None, standalone: bool = False) -> str: ...

    async def page(self, key: str, offset: int, limit: int) -> list[str]: ...


class TaskReader(Protocol):
    """The engine's task store, read only."""

    @property
    def index(self) -> TaskIndexReader: ...

    async def get(self, task_id: str) -> Document | None: ...

    async def get_many(self, ids: Iterable[str]) -> dict[str, Document]: ...

    async def find_by_batch(self, batch_id: str) -> list[Document]: ...

    async def attempts(self, task_id: str) -> list[Document]: ...

    async def status_counts(self, *, standalone: bool = False) -> dict[str, int]: ...
