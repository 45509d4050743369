"""The pure rules of approval gates (``orchestrator.batches.approvals``) and how a
gated batch is planned and submitted."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator.batches.approvals import gate_status, held_operations, may_approve, topological
from orchestrator.batches.model import Operation
from orchestrator.batches.planning import new_batch, plan
from orchestrator.batches.resumption import ResumeRequest, resumed_batch, runnable
from orchestrator.batches.schemas import BatchSubmissionSchema
from provisioning_common.errors import Forbidden
from provisioning_common.validation import validate

NOW = datetime(2026, 1, 1, tzinfo=UTC)
BODY: dict[str, Any] = {
    "name": "gated",
    "version": "1.0.0",
    "operations": [
        {"id": "a", "type": "cluster_batch", "provider": "p", "cluster_type": "k"},
        {
            "id": "g",
            "type": "approval",
            "dependencies": ["a"],
            "approvers": ["operator", "u-7"],
            "timeout_seconds": 60,
            "message": "go?",
        },
        {
            "id": "b",
            "type": "taskserv_batch",
            "provider": "p",
            "dependencies": ["g"],
            "taskservs": ["t1"],
        },
        {
            "id": "c",
            "type": "cluster_batch",
            "provider": "p",
            "dependencies": ["b"],
            "cluster_type": "z",
        },
        {"id": "d", "type": "cluster_batch", "provider": "p", "cluster_type": "solo"},
    ],
}


def _batch() -> tuple[dict[str, Any], Any]:
    data = validate(BatchSubmissionSchema(), BODY)
    ops = [Operation.from_dict(o) for o in data["operations"]]
    return new_batch(data, ops, "b1", "alice", NOW)


def test_schema_accepts_a_gate_and_refuses_bad_ones() -> None:
    validate(BatchSubmissionSchema(), BODY)
    bad = [
        {"id": "g", "type": "approval"},  # no approvers
        {"id": "g", "type": "approval", "approvers": []},
        {"id": "g", "type": "approval", "approvers": ["x"], "timeout_seconds": 0},
        {"id": "x", "type": "cluster_batch", "cluster_type": "k"},  # no provider
        {
            "id": "x",
            "type": "cluster_batch",
            "provider": "p",
            "cluster_type": "k",
            "approvers": ["x"],
        },
    ]
    for op in bad:
        with pytest.raises(Exception, match="Validation error"):
            validate(BatchSubmissionSchema(), {**BODY, "operations": [op]})


def test_held_operations_get_no_tasks_until_approved() -> None:
    batch, specs = _batch()
    assert held_operations(batch["operations"]) == {"b", "c"}
    first = runnable(batch, specs)
    assert sorted(s.operation_id for s in first) == ["a", "d"]
    gate = next(o for o in batch["operations"] if o["id"] == "g")
    gate["approval"] = {"status": "approved"}
    assert held_operations(batch["operations"]) == set()
    assert sorted(s.operation_id for s in runnable(batch, specs)) == ["a", "b", "c", "d"]
    assert [o["id"] for o in topological(batch["operations"])] == ["a", "d", "g", "b", "c"]
    assert plan(validate(BatchSubmissionSchema(), BODY), "cli")["total_tasks"] == 4


@pytest.mark.parametrize(
    ("approval", "deps", "cancelled", "expected"),
    [
        (None, ["Running"], False, ("Pending", False)),
        (None, ["Completed"], False, ("Running", True)),
        ({"status": "waiting"}, ["Completed"], False, ("Running", True)),
        (None, ["Failed"], False, ("Cancelled", False)),
        ({"status": "waiting"}, ["Completed"], True, ("Cancelled", False)),
        ({"status": "approved"}, ["Completed"], True, ("Completed", False)),
        ({"status": "rejected"}, ["Completed"], False, ("Failed", False)),
        ({"status": "timed_out"}, ["Completed"], False, ("Failed", False)),
    ],
)
def test_gate_status(
    approval: dict[str, Any] | None, deps: list[str], cancelled: bool, expected: Any
) -> None:
    op = {"id": "g", "type": "approval", "approval": approval}
    assert gate_status(op, deps, cancelled) == expected


def test_who_may_approve() -> None:
    batch = {"created_by": "alice"}
    op = {"id": "g", "approvers": ["operator", "u-7"]}
    may_approve(op, batch, sub="bob", username="bob", roles=["operator"], allow_self=False)
    may_approve(op, batch, sub="u-7", username="carol", roles=["viewer"], allow_self=False)
    with pytest.raises(Forbidden, match="Not an approver"):
        may_approve(op, batch, sub="bob", username="bob", roles=["admin"], allow_self=False)
    with pytest.raises(Forbidden, match="submitter"):
        may_approve(op, batch, sub="alice", username="a", roles=["operator"], allow_self=False)
    may_approve(op, batch, sub="alice", username="a", roles=["operator"], allow_self=True)


def test_four_eyes_hold_across_a_resume_by_someone_else() -> None:
    """alice submits; bob (an operator) resumes the failed run: neither may approve the
    new run's gate, carol may."""
    batch, _ = _batch()
    batch["status"] = "Failed"
    new, _ = resumed_batch(batch, {}, ResumeRequest(), "b2", "bob", NOW)
    assert new["created_by"] == "bob"
    assert new["submitters"] == ["alice", "bob"]
    gate = next(o for o in new["operations"] if o["id"] == "g")
    for who in ("alice", "bob"):
        with pytest.raises(Forbidden, match="submitter"):
            may_approve(gate, new, sub=who, username=who, roles=["operator"], allow_self=False)
    may_approve(gate, new, sub="carol", username="carol", roles=["operator"], allow_self=False)
    again, _ = resumed_batch({**new, "status": "Failed"}, {}, ResumeRequest(), "b3", "dave", NOW)
    assert again["submitters"] == ["alice", "bob", "dave"]


def test_resume_keeps_an_approved_gate_and_asks_again_after_a_reject() -> None:
    batch, _ = _batch()
    batch["status"] = "Failed"
    ops = {o["id"]: o for o in batch["operations"]}
    statuses = {ops["a"]["task_ids"][0]: "Completed", ops["d"]["task_ids"][0]: "Completed"}
    ops["g"]["approval"] = {"status": "rejected"}
    new, specs = resumed_batch(batch, statuses, ResumeRequest(), "b2", "alice", NOW)
    gate = next(o for o in new["operations"] if o["id"] == "g")
    assert "approval" not in gate  # asked again
    assert specs == []  # b and c wait for the new decision
    ops["g"]["approval"] = {"status": "approved"}
    statuses[ops["b"]["task_ids"][0]] = "Failed"
    new, specs = resumed_batch(batch, statuses, ResumeRequest(), "b3", "alice", NOW)
    gate = next(o for o in new["operations"] if o["id"] == "g")
    assert gate["approval"] == {"status": "approved"}
    assert sorted(s.operation_id for s in specs) == ["b", "c"]


def test_self_approval_setting_is_read_from_the_environment() -> None:
    from orchestrator.batches.settings import BatchSettings
    from provisioning_common.config import EnvReader

    assert BatchSettings.from_env(EnvReader({})).allow_self_approval is False
    allowed = EnvReader({"BATCH_ALLOW_SELF_APPROVAL": "true"})
    assert BatchSettings.from_env(allowed).allow_self_approval is True
