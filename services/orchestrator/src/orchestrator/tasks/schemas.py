"""Task query parameters and the wire schemas of ``/tasks``: the responses are these
schemas' dumps of the stored documents, and the OpenAPI document is generated from
the same classes."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from provisioning_common.fields import Timestamp
from provisioning_common.pagination import PageQuery

from ..engine import STATUSES


class TaskQuery(PageQuery):
    status = fields.String(validate=validate.OneOf(STATUSES))


class TaskView(Schema):
    """A task document (``_id`` is the ``id``); absent optional fields are ``null``."""

    id = fields.String(attribute="_id")
    name = fields.String(dump_default=None)
    command = fields.String(dump_default=None)
    args = fields.List(fields.String(), dump_default=None)
    dependencies = fields.List(fields.String(), dump_default=None)
    status = fields.String(dump_default=None)
    created_at = Timestamp(dump_default=None)
    started_at = Timestamp(allow_none=True, dump_default=None)
    completed_at = Timestamp(allow_none=True, dump_default=None)
    output = fields.String(allow_none=True, dump_default=None)
    error = fields.String(allow_none=True, dump_default=None)
    progress = fields.Float(dump_default=0.0)
    current_step = fields.String(allow_none=True, dump_default=None)
    attempts = fields.Integer(dump_default=0)
    batch_id = fields.String(allow_none=True, dump_default=None)
    operation_id = fields.String(allow_none=True, dump_default=None)
    kind = fields.String(allow_none=True, dump_default=None)


class AttemptView(Schema):
    """An attempt document (``_id`` is the ``id``)."""

    id = fields.String(attribute="_id")
    task_id = fields.String(dump_default=None)
    attempt = fields.Integer(dump_default=None)
    worker_id = fields.String(dump_default=None)
    status = fields.String(dump_default=None)
    started_at = Timestamp(dump_default=None)
    ended_at = Timestamp(allow_none=True, dump_default=None)
    lease_expires_at = Timestamp(allow_none=True, dump_default=None)
    exit_code = fields.Integer(allow_none=True, dump_default=None)
    error = fields.String(allow_none=True, dump_default=None)
