"""The pure parts of the batch and rollback slices, without a database: planning,
the views, an operation's results, the ledger entry and the compensation plan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator.batches.model import Operation
from orchestrator.batches.planning import new_batch, plan, specs_of
from orchestrator.batches.reconcile import operation_results
from orchestrator.batches.schemas import BatchOut, BatchSubmissionSchema, BatchSubmittedOut
from orchestrator.rollback.compensation import compensation_plan, compensation_spec
from orchestrator.rollback.ledger import applied_with_compensation, ledger_entry
from orchestrator.rollback.model import PURPOSE_COMPENSATION, PURPOSE_RUN
from provisioning_common.validation import validate
from tests.support.contract import CONTRACT_BATCH

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _stored() -> tuple[dict[str, Any], list[Operation]]:
    data = validate(BatchSubmissionSchema(), dict(CONTRACT_BATCH))
    ops = [Operation.from_dict(o) for o in data["operations"]]
    batch, specs = new_batch(data, ops, "b-1", "alice", T0)
    assert [s.id for s in specs] == [s.id for s in specs_of(batch)]  # deterministic
    return batch, ops


def test_plan_uses_placeholder_ids() -> None:
    data = validate(BatchSubmissionSchema(), dict(CONTRACT_BATCH))
    out = plan(data, "/bin/prov")
    ids = {t["id"] for op in out["operations"] for t in op["tasks"]}
    assert out["total_tasks"] == len(ids)
    for op in out["operations"]:
        for n, task in enumerate(op["tasks"], start=1):
            assert task["id"] == f"{op['id']}#{n}"
            assert set(task["dependencies"]) <= ids


def test_views_of_a_new_batch() -> None:
    batch, ops = _stored()
    assert batch["status"] == "Pending"
    assert batch["total_tasks"] == sum(len(op["task_ids"]) for op in batch["operations"])
    accepted = BatchSubmittedOut().dump({**batch, "status": "Running"})
    assert accepted == {
        "batch_id": "b-1",
        "status": "Running",
        "operations": [{"id": op.id, "status": "Pending", "progress": 0.0} for op in ops],
    }
    summary = BatchOut().dump(batch)
    assert summary["batch_id"] == "b-1"
    assert summary["rolled_back"] is False
    first = summary["operations"][0]
    assert first["results"] == {"task_ids": batch["operations"][0]["task_ids"]}


def test_operation_results_count_and_report_errors() -> None:
    op = {"task_ids": ["t1", "t2", "t3"]}
    tasks = {
        "t1": {"status": "Completed"},
        "t2": {"status": "Failed", "error": "x" * 600},
    }
    out = operation_results(op, tasks)
    assert out["tasks"] == {
        "pending": 1,
        "running": 0,
        "completed": 1,
        "failed": 1,
        "cancelled": 0,
    }
    assert out["summary"] == "1/3 tasks completed, 1 failed"
    assert out["errors"] == [{"task_id": "t2", "error": "x" * 500}]


def _task(tid: str, op: str, at: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "_id": tid,
        "name": f"create-{tid}",
        "operation_id": op,
        "status": "Completed",
        "completed_at": at,
        "command": "/bin/prov servers create",
        "args": ["--name", tid],
        "compensation": {"subcommand": ["servers", "delete"], "args": ["--name", tid]},
        "metadata": {"purpose": PURPOSE_RUN, "owner": "alice"},
        **extra,
    }


def test_ledger_entry_of_an_applied_task() -> None:
    task = _task("t1", "servers", T0, batch_id="b-1")
    assert applied_with_compensation(task)
    assert not applied_with_compensation({**task, "status": "Failed"})
    assert not applied_with_compensation({**task, "metadata": {"purpose": PURPOSE_COMPENSATION}})
    entry = ledger_entry(task, "/bin/prov")
    assert entry["_id"] == entry["task_id"] == "t1"
    assert entry["owner"] == "alice"
    assert entry["applied_at"] == T0
    assert entry["compensation"]["command"] == "/bin/prov servers delete"
    assert entry["compensated_by"] is None


def test_compensation_plan_is_newest_first_and_chained() -> None:
    tasks = {
        "a": _task("a", "servers", T0),
        "b": _task("b", "servers", T0 + timedelta(seconds=2)),
        "c": _task("c", "cluster", T0 + timedelta(seconds=1)),
        "d": _task("d", "taskservs", T0 + timedelta(seconds=3), status="Failed"),
    }
    batch = {
        "_id": "b-1",
        "operations": [
            {"id": "servers", "status": "Completed", "task_ids": ["a", "b"]},
            {"id": "cluster", "status": "Completed", "task_ids": ["c"]},
            {"id": "taskservs", "status": "Failed", "task_ids": ["d"]},
        ],
    }
    items = compensation_plan(batch, tasks)
    assert [t["_id"] for t, _ in items] == ["b", "c", "a"]
    assert items == compensation_plan(batch, tasks)  # deterministic ids
    previous = None
    for task, cid in items:
        spec = compensation_spec(task, cid, previous, batch_id="b-1", rollback_id="batch-b-1")
        assert spec.dependencies == ((previous,) if previous else ())
        assert spec.kind == "servers.delete"
        assert spec.metadata["purpose"] == PURPOSE_COMPENSATION
        assert spec.metadata["owner"] == "alice"
        previous = cid
    chosen = compensation_spec(tasks["a"], "x", None, batch_id=None, rollback_id="r", owner="bob")
    assert chosen.metadata["owner"] == "bob"
    assert chosen.batch_id is None
