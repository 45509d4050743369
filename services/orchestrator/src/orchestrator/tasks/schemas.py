"""Task query parameters and the task / attempt views."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import Schema, fields, validate

from provisioning_common.pagination import PageQuery

from ..engine import STATUSES


class TaskQuery(PageQuery):
    status = fields.String(validate=validate.OneOf(STATUSES))


class TaskView(Schema):
    id = fields.String()
    name = fields.String()
    command = fields.String()
    args = fields.List(fields.String())
    dependencies = fields.List(fields.String())
    status = fields.String()
    created_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    completed_at = fields.DateTime(allow_none=True)
    output = fields.String(allow_none=True)
    error = fields.String(allow_none=True)
    progress = fields.Float()
    current_step = fields.String(allow_none=True)
    attempts = fields.Integer()
    batch_id = fields.String(allow_none=True)
    operation_id = fields.String(allow_none=True)
    kind = fields.String(allow_none=True)


class AttemptView(Schema):
    id = fields.String()
    task_id = fields.String()
    attempt = fields.Integer()
    worker_id = fields.String()
    status = fields.String()
    started_at = fields.DateTime()
    ended_at = fields.DateTime(allow_none=True)
    lease_expires_at = fields.DateTime(allow_none=True)
    exit_code = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)


_TASK_FIELDS = (
    "name",
    "command",
    "args",
    "dependencies",
    "status",
    "created_at",
    "started_at",
    "completed_at",
    "output",
    "error",
    "current_step",
    "batch_id",
    "operation_id",
    "kind",
)


def task_view(doc: Mapping[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = {"id": doc["_id"]}
    for key in _TASK_FIELDS:
        view[key] = doc.get(key)
    view["progress"] = float(doc.get("progress") or 0.0)
    view["attempts"] = int(doc.get("attempts") or 0)
    return view


def attempt_view(doc: Mapping[str, Any]) -> dict[str, Any]:
    keys = (
        "task_id",
        "attempt",
        "worker_id",
        "status",
        "started_at",
        "ended_at",
        "lease_expires_at",
        "exit_code",
        "error",
    )
    return {"id": doc["_id"], **{k: doc.get(k) for k in keys}}
