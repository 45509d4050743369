"""Rollback input validation and view rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.rollback import model
from orchestrator.rollback.schemas import (
    CheckpointDetailOut,
    CheckpointIn,
    CheckpointOut,
    RollbackIn,
)
from provisioning_common.errors import UnprocessableEntity
from provisioning_common.validation import validate

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"checkpoint_id": "a", "operation_ids": ["b"]},
        {"operation_ids": []},
        {"operation_ids": ["../x"]},
        {"checkpoint_id": 5},
        {"checkpoint_id": "a", "extra": True},
    ],
)
def test_rollback_body_needs_exactly_one_target(body: dict[str, object]) -> None:
    with pytest.raises(UnprocessableEntity):
        validate(RollbackIn(), body)


def test_valid_bodies() -> None:
    assert validate(RollbackIn(), {"checkpoint_id": "cp-1"}) == {"checkpoint_id": "cp-1"}
    assert validate(RollbackIn(), {"operation_ids": ["op-1", "op-2"]})["operation_ids"] == [
        "op-1",
        "op-2",
    ]
    loaded = validate(CheckpointIn(), {"name": "before_major_update"})
    assert loaded == {"name": "before_major_update", "description": None}
    with pytest.raises(UnprocessableEntity):
        validate(CheckpointIn(), {"name": ""})


def test_newest_first_and_statistics() -> None:
    entries = [{"_id": "a", "applied_at": T0}, {"_id": "b", "applied_at": T0 + timedelta(1)}]
    assert [e["_id"] for e in model.newest_first(entries)] == ["b", "a"]
    stats = model.statistics(
        3, 2, [{"success": True, "duration": 2.0}, {"success": False, "duration": 4.0}]
    )
    assert stats == {
        "total_checkpoints": 3,
        "total_rollbacks": 2,
        "success_rate": 50.0,
        "average_rollback_time": 3.0,
    }
    assert model.statistics(0, 0, [])["success_rate"] == 100.0


def test_checkpoint_view_has_contract_fields() -> None:
    doc = {
        "_id": "cp",
        "name": "n",
        "description": "d",
        "created_at": T0,
        "size_bytes": 150 * 1024 * 1024,
        "operations_count": 25,
    }
    view = CheckpointDetailOut().dump(doc)
    assert view["size"] == "150MB"
    assert view["operations_count"] == 25
    assert "operations_count" not in CheckpointOut().dump(doc)
    assert model.state_size({"batches": []}) > 0
