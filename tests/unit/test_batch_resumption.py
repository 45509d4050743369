"""The pure rules of resuming a batch (``orchestrator.batches.resumption``): what is
skipped, what runs again, what is refused."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator.batches.model import Operation, expand_batch
from orchestrator.batches.planning import new_batch
from orchestrator.batches.resumption import ResumeRequest, resumed_batch, runnable
from provisioning_common.errors import Conflict, UnprocessableEntity

NOW = datetime(2026, 1, 1, tzinfo=UTC)
BODY: dict[str, Any] = {
    "name": "b",
    "version": "1.0.0",
    "storage_backend": "mongodb",
    "parallel_limit": 3,
    "rollback_enabled": False,
    "operations": [
        {
            "id": "a",
            "type": "server_batch",
            "provider": "p",
            "server_configs": [
                {"name": "s1", "plan": "x", "zone": "z"},
                {"name": "s2", "plan": "x", "zone": "z"},
            ],
        },
        {
            "id": "b",
            "type": "taskserv_batch",
            "provider": "p",
            "dependencies": ["a"],
            "taskservs": ["t1", "t2"],
        },
        {
            "id": "c",
            "type": "cluster_batch",
            "provider": "p",
            "dependencies": ["b"],
            "cluster_type": "k",
        },
        {"id": "d", "type": "cluster_batch", "provider": "p", "cluster_type": "solo"},
    ],
}


def _original(statuses: dict[str, list[str]], status: str = "Failed") -> tuple[Any, Any]:
    ops = [Operation.from_dict(o) for o in BODY["operations"]]
    batch, _ = new_batch(BODY, ops, "orig", "alice", NOW)
    batch["status"] = status
    tasks = {}
    for op in batch["operations"]:
        for tid, st in zip(op["task_ids"], statuses[op["id"]], strict=True):
            tasks[tid] = st
    return batch, tasks


STATUSES = {
    "a": ["Completed", "Completed"],
    "b": ["Completed", "Failed"],
    "c": ["Cancelled"],
    "d": ["Completed"],
}


def test_default_resume_skips_completed_items_and_reruns_the_rest() -> None:
    original, tasks = _original(STATUSES)
    batch, specs = resumed_batch(original, tasks, ResumeRequest(), "new", "bob", NOW)
    assert batch["resumed_from"] == "orig"
    assert batch["parallel_limit"] == 3
    assert batch["created_by"] == "bob"
    ops = {o["id"]: o for o in batch["operations"]}
    assert len(ops["a"]["skipped"]) == 2
    assert ops["b"]["skipped"] == [ops["b"]["task_ids"][0]]
    assert ops["c"]["skipped"] == []
    assert ops["d"]["skipped"] == ops["d"]["task_ids"]
    ran = {s.id: s for s in specs}
    assert set(ran) == {ops["b"]["task_ids"][1], ops["c"]["task_ids"][0]}
    # The re-run item of b waits on nothing (a was skipped); c waits on b's re-run only.
    assert ran[ops["b"]["task_ids"][1]].dependencies == ()
    assert ran[ops["c"]["task_ids"][0]].dependencies == (ops["b"]["task_ids"][1],)
    # The orphan recovery derives the same tasks from the stored document.
    again = runnable(
        batch, expand_batch("new", [Operation.from_dict(o) for o in batch["operations"]])
    )
    assert [s.id for s in again] == [s.id for s in specs]


def test_a_resumed_run_counts_its_skipped_items_as_completed() -> None:
    original, tasks = _original(STATUSES)
    first, specs = resumed_batch(original, tasks, ResumeRequest(), "new", "bob", NOW)
    first["status"] = "Failed"
    # In the first resumption, b's item passed and c failed again.
    statuses = {s.id: "Completed" for s in specs if s.operation_id == "b"}
    statuses.update({s.id: "Failed" for s in specs if s.operation_id == "c"})
    second, specs2 = resumed_batch(first, statuses, ResumeRequest(), "third", "bob", NOW)
    assert [s.operation_id for s in specs2] == ["c"]
    assert second["resumed_from"] == "new"


def test_operations_subset_and_rerun_completed() -> None:
    original, tasks = _original(STATUSES)
    batch, specs = resumed_batch(
        original, tasks, ResumeRequest(operations=("b",)), "new", "bob", NOW
    )
    ops = {o["id"]: o for o in batch["operations"]}
    assert [s.operation_id for s in specs] == ["b"]
    assert ops["c"]["excluded"] is True
    assert ops["a"]["excluded"] is False
    with pytest.raises(UnprocessableEntity, match="rerun_completed"):
        resumed_batch(original, tasks, ResumeRequest(operations=("a",)), "n", "bob", NOW)
    batch, specs = resumed_batch(
        original, tasks, ResumeRequest(operations=("a", "b"), rerun_completed=True), "n", "b", NOW
    )
    assert [s.operation_id for s in specs] == ["a", "a", "b", "b"]
    with pytest.raises(UnprocessableEntity, match="depends on 'b'"):
        resumed_batch(original, tasks, ResumeRequest(operations=("c",)), "n", "bob", NOW)
    with pytest.raises(UnprocessableEntity, match="Unknown operations: zz"):
        resumed_batch(original, tasks, ResumeRequest(operations=("zz",)), "n", "bob", NOW)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"status": "Running"}, "is Running"),
        ({"status": "Pending"}, "is Pending"),
        ({"rollback": {"status": "Running"}}, "rollback is Running"),
        ({"rollback": {"status": "Completed"}, "rolled_back": True}, "rolled back"),
        ({"rollback_enabled": True, "rollback": None}, "automatic rollback is Pending"),
        ({"resumed_by": "other"}, "already resumed as other"),
    ],
)
def test_refusals(changes: dict[str, Any], message: str) -> None:
    original, tasks = _original(STATUSES)
    with pytest.raises(Conflict, match=message):
        resumed_batch({**original, **changes}, tasks, ResumeRequest(), "n", "bob", NOW)


def test_nothing_to_resume() -> None:
    done = {k: ["Completed"] * len(v) for k, v in STATUSES.items()}
    original, tasks = _original(done, status="Completed")
    with pytest.raises(Conflict, match="Nothing to resume"):
        resumed_batch(original, tasks, ResumeRequest(), "n", "bob", NOW)
