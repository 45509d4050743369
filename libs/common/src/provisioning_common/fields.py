"""Marshmallow fields both services' schemas share, defined once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from marshmallow import fields

from .envelope import format_timestamp


class Timestamp(fields.DateTime):
    """An instant as the contract writes it (``2025-09-26T10:00:00Z``, milliseconds
    when there are any; :func:`~provisioning_common.envelope.format_timestamp`),
    documented as ``string``/``date-time``; a value that is already text is passed
    through. The one datetime field of every response schema."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if isinstance(value, datetime):
            return format_timestamp(value)
        return value


class StrictBoolean(fields.Boolean):
    """JSON ``true`` / ``false`` only: ``"yes"``, ``"true"`` or ``1`` in a body is a
    type error, not ``True``. (Not ``truthy = {True}``: ``1 in {True}`` holds.)"""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value
