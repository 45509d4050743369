"""The ledger of applied operations: every completed run task with a compensation
enters it once (batch or not), so a rollback knows what it can undo."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.engine.model import COMPLETED
from provisioning_common.timeutil import as_utc, utcnow

from .compensation import task_owner
from .model import PURPOSE_RUN
from .repository import RollbackRepository

# Task ids remembered as recorded before the cache is dropped (a cache, not a record).
_CACHE_LIMIT = 100_000


def applied_with_compensation(task: Mapping[str, Any]) -> bool:
    """A completed run task (not a compensation) that has a compensation."""
    return bool(
        task.get("status") == COMPLETED
        and task.get("compensation")
        and (task.get("metadata") or {}).get("purpose", PURPOSE_RUN) == PURPOSE_RUN
    )


def ledger_entry(task: Mapping[str, Any], cli: str) -> dict[str, Any]:
    """The ledger document of an applied task."""
    comp = task["compensation"]
    return {
        "_id": str(task["_id"]),
        "task_id": str(task["_id"]),
        "batch_id": task.get("batch_id"),
        "operation_id": task.get("operation_id"),
        "kind": task.get("kind"),
        "name": task.get("name"),
        "owner": task_owner(task),
        "applied": {"command": task["command"], "args": list(task.get("args") or [])},
        "compensation": {
            "command": " ".join([cli, *comp["subcommand"]]),
            "subcommand": list(comp["subcommand"]),
            "args": list(comp.get("args") or []),
        },
        "applied_at": as_utc(task["completed_at"]) if task.get("completed_at") else utcnow(),
        "compensated_by": None,
        "compensated_at": None,
    }


class LedgerRecorder:
    """Records applied tasks in the ledger: at once when this replica finalises one,
    and on every batch pass for those finalised elsewhere (or lost in a crash)."""

    def __init__(self, repo: RollbackRepository, cli: str) -> None:
        self.repo = repo
        self.cli = cli
        # Task ids this replica knows are in the ledger: saves a query per pass.
        self.ledgered: set[str] = set()

    async def on_task_final(self, task: Mapping[str, Any]) -> None:
        """A task's final status decided on this replica (the engine's listener)."""
        if applied_with_compensation(task):
            # Any applied task with a compensation enters the ledger, batch or not.
            await self.repo.record_applied(ledger_entry(task, self.cli))
            self.ledgered.add(str(task["_id"]))

    async def record_batch(self, tasks: Mapping[str, Mapping[str, Any]]) -> None:
        """Every completed task of a batch with a compensation enters the ledger once."""
        done = [
            t
            for t in tasks.values()
            if applied_with_compensation(t) and str(t["_id"]) not in self.ledgered
        ]
        if not done:
            return
        known = {e["_id"] for e in await self.repo.ledger_entries([str(t["_id"]) for t in done])}
        for t in done:
            if str(t["_id"]) not in known:
                await self.repo.record_applied(ledger_entry(t, self.cli))
            self.ledgered.add(str(t["_id"]))
        if len(self.ledgered) > _CACHE_LIMIT:
            self.ledgered.clear()
