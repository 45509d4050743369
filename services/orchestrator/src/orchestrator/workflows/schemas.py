"""Workflow submission bodies (the contract's), validated strictly."""

from __future__ import annotations

import re

from marshmallow import Schema, fields, validate

from provisioning_common.fields import StrictBoolean

# Names end up as CLI arguments: a leading letter/digit keeps them from being read as
# flags, no '/' keeps settings from escaping the working directory.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
OPERATIONS = ("create", "delete", "update")
_NAME_ERROR = (
    "Must start with a letter or digit and contain only letters, digits, '.', '_' or '-' (max 128)"
)


def _name() -> fields.String:
    return fields.String(required=True, validate=validate.Regexp(SAFE_NAME, error=_NAME_ERROR))


class ServersCreate(Schema):
    infra = _name()
    settings = _name()
    check_mode = StrictBoolean(load_default=False)
    wait = StrictBoolean(load_default=False)


class TaskservCreate(ServersCreate):
    operation = fields.String(required=True, validate=validate.OneOf(OPERATIONS))
    taskserv = _name()


class ClusterCreate(ServersCreate):
    operation = fields.String(required=True, validate=validate.OneOf(OPERATIONS))
    cluster_type = _name()
