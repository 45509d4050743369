"""Response schemas of ``/state/*``: the routes answer their dumps of what the
service computes, and the OpenAPI document is generated from them."""

from __future__ import annotations

from marshmallow import Schema, fields

from provisioning_common.fields import Timestamp


class ProgressOut(Schema):
    workflow_id = fields.String()
    type = fields.String()
    status = fields.String()
    progress = fields.Float()
    current_step = fields.String(allow_none=True, dump_default=None)
    total_steps = fields.Integer()
    completed_steps = fields.Integer()
    estimated_time_remaining = fields.Integer(allow_none=True, dump_default=None)


class SnapshotOut(Schema):
    snapshot_id = fields.String()
    timestamp = Timestamp()
    state = fields.String()
    details = fields.Dict(dump_default=dict)


class SystemLoadOut(Schema):
    cpu_usage = fields.Float()
    memory_usage = fields.Float()
    memory_percent = fields.Float()
    disk_usage = fields.Float()


class MetricsOut(Schema):
    total_workflows = fields.Integer()
    active_workflows = fields.Integer()
    completed_workflows = fields.Integer()
    failed_workflows = fields.Integer()
    cancelled_workflows = fields.Integer()
    system_load = fields.Nested(SystemLoadOut)


class HealthOut(Schema):
    overall_status = fields.String()
    components = fields.Dict(keys=fields.String(), values=fields.String())
    last_check = Timestamp()


class StatisticsOut(Schema):
    total_workflows = fields.Integer()
    active_snapshots = fields.Integer()
    storage_usage = fields.String()
    storage_usage_bytes = fields.Integer()
    average_workflow_duration = fields.Float()
