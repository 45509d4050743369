"""What the rollback slice needs of other slices, as protocols the container wires
(``orchestrator.container``): the batch slice's batch documents and claims, and the
state slice's snapshots. No other slice's repository is imported here; their classes
satisfy these protocols structurally."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from provisioning_common.mongo import Document


class BatchRecords(Protocol):
    """The batch slice's ``batches`` documents and ``batch_claims``."""

    async def get(self, batch_id: str) -> Document | None: ...

    async def all(self) -> list[Document]: ...

    async def active_ids(self) -> list[str]: ...

    async def replace_all(self, docs: Sequence[Mapping[str, Any]]) -> None: ...

    async def update(self, batch_id: str, fields: Mapping[str, Any]) -> None: ...

    async def claim(
        self, key: str, owner: str, at: datetime, record: Mapping[str, Any] | None = None
    ) -> bool: ...

    async def claimed_record(self, key: str) -> Document | None: ...


class Snapshots(Protocol):
    """The state slice's snapshots of a workflow (``state_snapshots``)."""

    async def record(
        self,
        workflow_id: str,
        state: str,
        at: datetime,
        details: Mapping[str, Any],
        *,
        key: str | None = None,
    ) -> bool: ...

    async def delete_for(self, workflow_ids: list[str]) -> None: ...
