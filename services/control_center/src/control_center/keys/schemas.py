"""Schemas of the key endpoints."""

from __future__ import annotations

from marshmallow import Schema, fields


class RotateOut(Schema):
    kid = fields.String()
