"""Rendering of results: JSON for scripts (``--output json``) or rich tables."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def to_jsonable(value: Any) -> Any:
    """Dataclasses become the wire-shaped dict again (``extra`` folded back in)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if f.name == "extra":
                out.update({k: to_jsonable(v) for k, v in item.items()})
            else:
                out[f.name] = to_jsonable(item)
        return out
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, list | dict):
        return json.dumps(to_jsonable(value), separators=(",", ":"))
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


class Printer:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.console = Console(soft_wrap=True)
        self.err = Console(stderr=True)

    @property
    def json(self) -> bool:
        return self.mode == "json"

    def emit(
        self, value: Any, *, columns: Sequence[str] | None = None, title: str | None = None
    ) -> None:
        """Print one result: a JSON document, a table (lists) or key/value lines."""
        data = to_jsonable(value)
        if self.json:
            sys.stdout.write(json.dumps(data, indent=2) + "\n")
            sys.stdout.flush()
            return
        if isinstance(data, list):
            self.table(data, columns, title)
        elif isinstance(data, dict):
            table = Table(show_header=False, box=None, title=title)
            for key, item in data.items():
                table.add_row(f"[bold]{key}[/bold]", _cell(item))
            self.console.print(table)
        else:
            self.console.print(_cell(data), markup=False, highlight=False)

    def table(self, rows: list[Any], columns: Sequence[str] | None, title: str | None) -> None:
        if not rows:
            self.console.print("(none)")
            return
        cols = list(columns or (rows[0].keys() if isinstance(rows[0], dict) else ["value"]))
        table = Table(title=title)
        for col in cols:
            table.add_column(col)
        for row in rows:
            if isinstance(row, dict):
                table.add_row(*(_cell(row.get(c)) for c in cols))
            else:
                table.add_row(_cell(row))
        self.console.print(table)

    def error(self, message: str, *, status: int | None = None) -> None:
        if self.json:
            payload: dict[str, Any] = {"success": False, "error": message}
            if status:
                payload["status"] = status
            sys.stderr.write(json.dumps(payload) + "\n")
        else:
            self.err.print(f"[red]Error:[/red] {escape(message)}", highlight=False)

    def info(self, message: str) -> None:
        """Human-only chatter; suppressed in JSON mode so stdout stays parseable."""
        if not self.json:
            self.err.print(message, highlight=False)
