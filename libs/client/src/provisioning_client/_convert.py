"""Build the SDK's dataclasses from JSON objects.

Servers may add fields over time, so unknown keys are kept in ``extra`` instead of
failing, and missing optional keys default to ``None``."""

from __future__ import annotations

import dataclasses
import types
import typing
from datetime import datetime
from functools import cache
from typing import Any, TypeVar, Union, get_args, get_origin

T = TypeVar("T")


def parse_datetime(value: Any) -> datetime | None:
    """ISO 8601 (``Z`` suffix accepted); anything unparsable becomes ``None``."""
    if value is None or isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not value:
        return None
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        for arg in get_args(tp):
            if arg is type(None):
                continue
            return _convert(arg, value)
        return value
    if tp is datetime:
        return parse_datetime(value)
    if origin is list and isinstance(value, list):
        (item_tp,) = get_args(tp) or (Any,)
        return [_convert(item_tp, v) for v in value]
    if isinstance(tp, type) and dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return from_dict(tp, value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def from_dict(cls: type[T], data: Any) -> T:
    """``cls(**data)`` with type conversion; non-dict data is wrapped in ``extra``."""
    if not isinstance(data, dict):
        data = {"value": data}
    hints = _hints(cls)  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key, value in data.items():
        if key in names and key != "extra":
            kwargs[key] = _convert(hints[key], value)
        else:
            extra[key] = value
    if "extra" in names:
        kwargs["extra"] = extra
    return cls(**kwargs)


def from_list(cls: type[T], data: Any) -> list[T]:
    return [from_dict(cls, item) for item in (data or [])]
