"""The storage rule (DESIGN §3 cost rule, ``docs/storage.md``) as data and one check.

In steady state every MongoDB command a service sends is one of:

* an **insert**;
* a read, update, delete or count filtered by exactly ``{_id: <value>}`` (or an
  aggregate led by such a ``$match``): the only filter FerretDB v1's SQLite backend
  pushes into SQL (``internal/backends/sqlite/collection.go``: a one-key filter on
  ``_id`` whose value is a string or an ObjectId; ``{_id: v, other: w}``, ``$in`` and
  numeric ids read the whole collection);
* anything at all against a collection **bounded by in-flight work**, declared below.

History (tasks, attempts, events, audit records, ...) is read only by ``_id`` on a hot
path and is bounded by retention. Start-up work (index creation, sweeps) and
connection handshakes are not steady state.

The declarations below are reviewed like a schema: adding a collection says "this
collection only ever holds work in flight, so it is empty when the service is idle,
and any query against it is cheap on every backend". The storage-rule test
(``tests/integration/test_storage_rule.py``) checks both halves: no other command
reaches the database while a task goes through submit → claim → run → finalize →
events → audit → webhooks → ``/ws``, and every bounded collection is empty again
once that work is done.

Use::

    from provisioning_common.storage_rules import ORCHESTRATOR_BOUNDED, classify

    access, problems = classify("find", {"find": "tasks", "filter": {...}},
                                ORCHESTRATOR_BOUNDED)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from bson import ObjectId

ORCHESTRATOR_BOUNDED: Final[frozenset[str]] = frozenset(
    {
        # One small immutable entry per task that is not final yet (engine/store.py).
        "task_queue",
        # One document per running task of a concurrency group (engine/store.py).
        "task_slots",
        # One document per batch the coordinator still looks after: not finished, or a
        # rollback due or running (batches/repository.py; deleted when it is done).
        "batches_active",
        # Outbox items not delivered yet: audit records for the control center and
        # webhook deliveries (provisioning_common.outbox, ``<name>_outbox``). Holding
        # only pending items is what makes their due-item poll cheap; finished items
        # move to ``<name>_history``, read by ``_id`` or off the hot path.
        "audit_outbox",
        "webhook_outbox",
        # Events the webhooks feature has still to turn into outbox items: inserted by
        # the event publisher next to ``events``, deleted by ``_id`` by the webhook
        # scan once their deliveries are enqueued (events/repository.py).
        "event_inbox",
    }
)
"""Orchestrator collections bounded by in-flight work: empty when nothing is in flight."""

CONTROL_CENTER_BOUNDED: Final[frozenset[str]] = frozenset()
"""The control center has no collection bounded by in-flight work: on its hot paths
(token introspection, audit ingestion) it reads and writes by ``_id`` only."""

BOUNDED_BY_SERVICE: Final[Mapping[str, frozenset[str]]] = {
    "orchestrator": ORCHESTRATOR_BOUNDED,
    "control_center": CONTROL_CENTER_BOUNDED,
}

SETUP_COMMANDS: Final[frozenset[str]] = frozenset(
    {
        # connection handshake and monitoring
        "hello",
        "isMaster",
        "ismaster",
        "ping",
        "buildInfo",
        "buildinfo",
        "saslStart",
        "saslContinue",
        "endSessions",
        # index management and collection metadata (start-up)
        "createIndexes",
        "listIndexes",
        "listCollections",
        "create",
    }
)
"""Commands that are not storage access: handshakes, sessions, index management."""

CURSOR_COMMANDS: Final[frozenset[str]] = frozenset({"getMore", "killCursors"})
"""Continuations of a command already classified on its own."""

_ID_TYPES = (str, ObjectId)


class Access(StrEnum):
    """How one command touches storage."""

    INSERT = "insert"
    POINT = "point"  # filtered by exactly {_id: <str | ObjectId>}
    BOUNDED = "bounded"  # any command against a collection bounded by in-flight work
    SETUP = "setup"
    CURSOR = "cursor"
    VIOLATION = "violation"


@dataclass(frozen=True, slots=True)
class Violation:
    """One statement that breaks the rule: which collection, which command (``find``,
    ``update(multi)``, ``aggregate``...), the shape of its filter (values replaced by
    their types) and what else made it expensive (sort, pipeline)."""

    collection: str
    command: str
    filter_shape: str
    detail: str = ""

    def __str__(self) -> str:
        extra = f" {self.detail}" if self.detail else ""
        return f"{self.collection}: {self.command} {self.filter_shape}{extra}"


def is_point_filter(query: Any) -> bool:
    """True for exactly ``{_id: <str | ObjectId>}``, the filter FerretDB serves by key."""
    return (
        isinstance(query, Mapping)
        and len(query) == 1
        and "_id" in query
        and isinstance(query["_id"], _ID_TYPES)
    )


def shape(value: Any) -> str:
    """A filter with its values replaced by their type names, operators kept:
    ``{"_id": {"$in": ["a", "b"]}}`` → ``{_id: {$in: [str]}}``."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {shape(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(sorted({shape(v) for v in value})) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, datetime):
        return "date"
    return type(value).__name__


def _sort_text(sort: Any) -> str:
    if not sort:
        return ""
    if isinstance(sort, Mapping):
        return "sort {" + ", ".join(f"{k}: {v}" for k, v in sort.items()) + "}"
    return f"sort {sort}"


def _pipeline_text(pipeline: Any) -> str:
    stages: list[str] = []
    for stage in pipeline if isinstance(pipeline, list) else []:
        for op, body in stage.items() if isinstance(stage, Mapping) else ():
            stages.append(f"{op} {shape(body)}" if op == "$match" else str(op))
    return "[" + ", ".join(stages) + "]"


def _statements(name: str, command: Mapping[str, Any]) -> Iterator[tuple[str, Any, str]]:
    """(command label, filter, detail) of each statement of a read or write command."""
    if name == "find":
        yield "find", command.get("filter") or {}, _sort_text(command.get("sort"))
    elif name in ("count", "distinct"):
        yield name, command.get("query") or {}, ""
    elif name.lower() == "findandmodify":
        yield "findAndModify", command.get("query") or {}, _sort_text(command.get("sort"))
    elif name == "update":
        for stmt in command.get("updates") or []:
            label = "update(multi)" if stmt.get("multi") else "update"
            yield label, stmt.get("q") or {}, ""
    elif name == "delete":
        for stmt in command.get("deletes") or []:
            label = "delete(many)" if not stmt.get("limit") else "delete"
            yield label, stmt.get("q") or {}, ""


def classify(
    command_name: str, command: Mapping[str, Any], bounded: Iterable[str]
) -> tuple[Access, list[Violation]]:
    """How ``command`` (as sent on the wire, e.g. by a ``CommandListener``) touches
    storage, and the statements of it that break the rule (empty when allowed)."""
    if command_name in SETUP_COMMANDS:
        return Access.SETUP, []
    if command_name in CURSOR_COMMANDS:
        return Access.CURSOR, []
    target = command.get(command_name)
    collection = target if isinstance(target, str) else f"<{command_name}:{target}>"
    if command_name == "insert":
        return Access.INSERT, []
    if collection in set(bounded):
        return Access.BOUNDED, []
    if command_name == "aggregate":
        # FerretDB pushes a leading ``$match`` down like a find filter.
        pipeline = command.get("pipeline") or []
        first = pipeline[0] if isinstance(pipeline, list) and pipeline else {}
        if isinstance(first, Mapping) and is_point_filter(first.get("$match")):
            return Access.POINT, []
        return Access.VIOLATION, [Violation(collection, "aggregate", _pipeline_text(pipeline))]
    statements = list(_statements(command_name, command))
    if not statements:
        return Access.VIOLATION, [Violation(collection, command_name, "", "unclassified command")]
    problems = [
        Violation(collection, label, shape(query), detail)
        for label, query, detail in statements
        if not is_point_filter(query)
    ]
    return (Access.VIOLATION if problems else Access.POINT), problems


def is_allowed(
    command_name: str, command: Mapping[str, Any], bounded: Iterable[str]
) -> Violation | None:
    """None when ``command`` keeps the rule, else its first offending statement."""
    _, problems = classify(command_name, command, bounded)
    return problems[0] if problems else None
