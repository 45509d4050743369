"""Schema fields shared by the slices."""

from __future__ import annotations

from marshmallow import fields


class StrictBoolean(fields.Boolean):
    """JSON ``true`` / ``false`` only: ``"yes"`` or ``1`` in a body is a type error."""

    truthy = {True}
    falsy = {False}
