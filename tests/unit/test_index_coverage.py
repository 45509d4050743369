"""Every repository query that is not by exact ``_id`` is served by a declared index
on MongoDB (DESIGN §3, ``docs/storage.md``).

``QUERIES`` is the table of those queries: where each one is sent
(``file:Class.method``), on which collection, with a filter of the same shape as the
code's (values are placeholders; ``$or`` branches are checked one by one) and its sort.
Three checks keep it honest:

* the table lists exactly the calls found in the source (an AST scan of
  ``services/*/src`` and ``libs/common/src`` for collection methods whose filter is not
  a literal ``{"_id": value}``): a new query needs a row, a removed one loses its row;
* each row is served by an index its repository declares (collected by running every
  repository's ``ensure_indexes`` against a recording stand-in database) or the
  implicit ``_id`` index: its equality fields form the index's leading keys (any
  order), its sort follows them (all directions equal or all reversed), and a query
  without equality fields is bounded by its first key (a range) or ordered by it (a
  page). A collection bounded by in-flight work
  (``provisioning_common.storage_rules``) needs no index; a full read (no filter, no
  sort) of any other collection must say why it is acceptable;
* every collection declared bounded exists.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from unittest.mock import MagicMock

import pytest
from bson import ObjectId

from provisioning_common.mongo import IndexSpec
from provisioning_common.storage_rules import (
    CONTROL_CENTER_BOUNDED,
    ORCHESTRATOR_BOUNDED,
    Access,
    classify,
    is_allowed,
)

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("services/orchestrator/src", "services/control_center/src", "libs/common/src")
V = "<value>"  # a placeholder value in a filter: the key is an equality
R = {"$gt": V}  # a placeholder range

# Collection methods whose first argument is a filter (``bulk_write`` carries its
# filters in the operations below).
FILTER_METHODS = frozenset(
    {
        "find",
        "find_one",
        "count_documents",
        "aggregate",
        "distinct",
        "update_one",
        "update_many",
        "replace_one",
        "delete_one",
        "delete_many",
        "find_one_and_update",
        "find_one_and_replace",
        "find_one_and_delete",
        "estimated_document_count",
    }
)
BULK_OPERATIONS = frozenset({"DeleteOne", "DeleteMany", "UpdateOne", "UpdateMany", "ReplaceOne"})
RANGE_OPERATORS = frozenset(
    {"$gt", "$gte", "$lt", "$lte", "$ne", "$nin", "$regex", "$exists", "$not"}
)
EQUALITY_OPERATORS = frozenset({"$eq", "$in"})

HOT = "hot path"


@dataclass(frozen=True, slots=True)
class Query:
    """One query sent by ``where`` (``<package path>:<qualname>``) with ``method``."""

    where: str
    method: str
    collection: str
    filter: Mapping[str, Any]
    sort: tuple[tuple[str, int], ...] = ()
    service: str = "orchestrator"
    why: str = ""  # when it runs; for a full read of history, why that is acceptable


def _o(where: str, method: str, collection: str, flt: Mapping[str, Any], **kw: Any) -> Query:
    return Query(f"orchestrator/{where}", method, collection, flt, **kw)


def _c(where: str, method: str, collection: str, flt: Mapping[str, Any], **kw: Any) -> Query:
    return Query(f"control_center/{where}", method, collection, flt, service="control_center", **kw)


def _lib(where: str, method: str, collection: str, flt: Mapping[str, Any], **kw: Any) -> Query:
    return Query(f"provisioning_common/{where}", method, collection, flt, **kw)


NEWEST = (("created_at", -1), ("_id", -1))
OLDEST = (("created_at", 1), ("_id", 1))
UNFINISHED_BATCH = {
    "$or": [
        {"status": {"$nin": [V]}},
        {"rollback.status": {"$in": [V]}},
        {"status": V, "rollback_enabled": V, "rollback": V},
    ]
}
DELIVERY_FILTERS: tuple[dict[str, Any], ...] = (
    {},
    {"status": V},
    {"event": V},
    {"endpoint_id": V},
    {"event_id": V},
)
AUDIT_FILTERS: tuple[dict[str, Any], ...] = (
    {},
    {"user_id": V},
    {"action": V},
    {"resource": V},
    {"timestamp": R},
    {"user_id": V, "timestamp": R},
    {"action": V, "timestamp": R},
)
USER_FILTERS: tuple[dict[str, Any], ...] = (
    {},
    {"roles": V},
    {"enabled": V},
    {"roles": V, "enabled": V},
)
POLICY_FILTERS: tuple[dict[str, Any], ...] = ({}, {"enabled": V})
OUTBOXES = ("audit", "webhook")

QUERIES: tuple[Query, ...] = (
    # ---------------------------------------------------------------- engine
    _o("engine/store.py:TaskStore.queue_entries", "find", "task_queue", {}, sort=OLDEST, why=HOT),
    _o("engine/store.py:TaskStore.queued_ids", "find", "task_queue", {}, why="queue sweep"),
    _o(
        "engine/store.py:TaskStore.unfinished_tasks_scan",
        "find",
        "tasks",
        {"status": V},
        why="the first queue sweep of a replica's life: once per start",
    ),
    _o(
        "engine/store.py:TaskStore._index_source",
        "find",
        "tasks",
        {},
        why="Redis task index rebuild: a full read by design, only when the index is lost",
    ),
    _o(
        "engine/store.py:TaskStore.attempts",
        "find",
        "task_attempts",
        {"task_id": V},
        sort=(("attempt", 1),),
        why="GET /tasks/{id}/attempts, GET /state/workflows/{id}/progress",
    ),
    _o("engine/store.py:TaskStore.slots_for_key", "find", "task_slots", {"key": V}, why=HOT),
    _o("engine/store.py:TaskStore.all_slots", "find", "task_slots", {}, why=HOT),
    _o("engine/store.py:TaskStore.slot_of_task", "find_one", "task_slots", {"task_id": V}, why=HOT),
    _o(
        "engine/store.py:TaskStore.delete_expired_slot",
        "delete_one",
        "task_slots",
        {"_id": V, "lease_expires_at": V},
        why=HOT,
    ),
    _o(
        "engine/store.py:TaskStore.release_slot",
        "delete_one",
        "task_slots",
        {"_id": V, "task_id": V},
        why=HOT,
    ),
    # ---------------------------------------------------------------- events
    *(
        _o(
            "events/repository.py:EventRepository.since",
            "find",
            "events",
            flt,
            sort=(("_id", 1),),
            why="/ws?since= replay older than the Redis replay stream (events/replay.py)",
        )
        for flt in ({"_id": R}, {"_id": R, "event_type": {"$in": [V]}})
    ),
    _o(
        "events/repository.py:EventRepository.inbox_page",
        "find",
        "event_inbox",
        {},
        sort=(("_id", 1),),
        why="webhook scan, every poll",
    ),
    # ------------------------------------------------------ workflows, batches
    _o(
        "workflows/repository.py:IdempotencyRepository.release",
        "delete_one",
        "idempotency_keys",
        {"_id": V, "task_id": V},
        why="a submission whose task insert failed",
    ),
    _o(
        "batches/repository.py:BatchRepository.active_set_ids",
        "find",
        "batches_active",
        {},
        why="batch coordinator, every interval",
    ),
    _o(
        "batches/repository.py:BatchRepository.page",
        "count_documents",
        "batches",
        {},
        why="GET /batch/operations X-Total-Count (counts history: open, DESIGN §3)",
    ),
    _o(
        "batches/repository.py:BatchRepository.page",
        "find",
        "batches",
        {},
        sort=NEWEST,
        why="GET /batch/operations",
    ),
    _o(
        "batches/repository.py:BatchRepository.all",
        "find",
        "batches",
        {},
        why="checkpoint snapshot and restore: the whole batch state by definition",
    ),
    _o(
        "batches/repository.py:BatchRepository.active",
        "find",
        "batches",
        UNFINISHED_BATCH,
        why="no caller",
    ),
    _o(
        "batches/repository.py:BatchRepository.active_ids",
        "find",
        "batches",
        UNFINISHED_BATCH,
        why="coordinator start-up; rollback and restore (refuse while busy)",
    ),
    _o(
        "batches/repository.py:BatchRepository.running_ids",
        "find",
        "batches",
        {"status": {"$nin": [V]}},
        why="no caller",
    ),
    _o(
        "batches/repository.py:BatchRepository.recent_finished",
        "find",
        "batches",
        {"status": {"$in": [V]}},
        sort=(("created_at", -1),),
        why="GET /state/statistics",
    ),
    _o(
        "batches/repository.py:BatchRepository.count_by_status",
        "aggregate",
        "batches",
        {},
        why="GET /state/system/metrics (aggregates history: open, DESIGN §3)",
    ),
    _o(
        "batches/repository.py:BatchRepository.replace_all",
        "delete_many",
        "batches",
        {"_id": {"$nin": [V]}},
        why="checkpoint restore",
    ),
    _o(
        "batches/repository.py:BatchRepository.delete_claims",
        "delete_many",
        "batch_claims",
        {"_id": {"$regex": V}},
        why="no caller",
    ),
    # ----------------------------------------------------------- state
    _o(
        "state/repository.py:SnapshotRepository.for_workflow",
        "find",
        "state_snapshots",
        {"workflow_id": V},
        sort=(("timestamp", 1), ("_id", 1)),
        why="GET /state/workflows/{id}/snapshots",
    ),
    _o(
        "state/repository.py:SnapshotRepository.count",
        "count_documents",
        "state_snapshots",
        {},
        why="GET /state/statistics (counts history: open, DESIGN §3)",
    ),
    _o(
        "state/repository.py:SnapshotRepository.count_for",
        "count_documents",
        "state_snapshots",
        {"workflow_id": {"$in": [V]}},
        why="no caller",
    ),
    _o(
        "state/repository.py:SnapshotRepository.delete_for",
        "delete_many",
        "state_snapshots",
        {"workflow_id": {"$in": [V]}},
        why="checkpoint restore",
    ),
    # -------------------------------------------------------- rollback
    _o(
        "rollback/repository.py:RollbackRepository.list_ledger",
        "count_documents",
        "operations_ledger",
        {},
        why="GET /rollback/operations X-Total-Count (counts history: open, DESIGN §3)",
    ),
    _o(
        "rollback/repository.py:RollbackRepository.list_ledger",
        "find",
        "operations_ledger",
        {},
        sort=(("applied_at", -1), ("_id", -1)),
        why="GET /rollback/operations",
    ),
    _o(
        "rollback/repository.py:RollbackRepository.ledger_after",
        "find",
        "operations_ledger",
        {"applied_at": R},
        sort=(("applied_at", -1), ("_id", -1)),
        why="rollback to a checkpoint",
    ),
    *(
        _o(
            "rollback/repository.py:RollbackRepository.ledger_count",
            "count_documents",
            "operations_ledger",
            flt,
            why="checkpoint creation (counts history: open, DESIGN §3)",
        )
        for flt in ({}, {"applied_at": R})
    ),
    _o(
        "rollback/repository.py:RollbackRepository.list_checkpoints",
        "count_documents",
        "checkpoints",
        {},
        why="GET /rollback/checkpoints X-Total-Count (counts history: open, DESIGN §3)",
    ),
    _o(
        "rollback/repository.py:RollbackRepository.list_checkpoints",
        "find",
        "checkpoints",
        {},
        sort=NEWEST,
        why="GET /rollback/checkpoints",
    ),
    _o(
        "rollback/repository.py:RollbackRepository.count_checkpoints",
        "count_documents",
        "checkpoints",
        {},
        why="GET /rollback/statistics (counts history: open, DESIGN §3)",
    ),
    _o(
        "rollback/repository.py:RollbackRepository.finished_rollbacks",
        "find",
        "rollbacks",
        {"status": {"$in": [V]}},
        why="GET /rollback/statistics",
    ),
    _o(
        "rollback/repository.py:RollbackRepository.count_rollbacks",
        "count_documents",
        "rollbacks",
        {},
        why="GET /rollback/statistics (counts history: open, DESIGN §3)",
    ),
    # ------------------------------------------------------- retention
    _o(
        "retention/repository.py:RetentionRepository.delete_events_before",
        "delete_many",
        "events",
        {"_id": {"$lt": V}},
        why="retention pass",
    ),
    *(
        _o(
            "retention/repository.py:RetentionRepository.delete_outbox_history_before",
            "delete_many",
            f"{name}_history",
            {"created_at": {"$lt": V}},
            why="retention pass",
        )
        for name in OUTBOXES
    ),
    _o(
        "retention/repository.py:RetentionRepository.delete_runs_before",
        "delete_many",
        "retention_runs",
        {"_id": {"$lt": V}},
        why="retention pass",
    ),
    # ---------------------------------------------- outboxes (audit, webhook)
    *(
        q
        for name in OUTBOXES
        for q in (
            _lib("outbox/store.py:OutboxCollections._in_flight_ids", "find", f"{name}_outbox", {}),
            _lib(
                "outbox/delivery.py:Delivery.archive_finished",
                "find",
                f"{name}_outbox",
                {"status": {"$in": [V]}},
                why="start-up sweep",
            ),
            _lib(
                "outbox/delivery.py:Delivery.run_once",
                "find",
                f"{name}_outbox",
                {"next_attempt_at": {"$lte": V}},
                sort=(("next_attempt_at", 1),),
                why=HOT,
            ),
        )
    ),
    # Only the webhook outbox is listed (GET /webhooks/deliveries); Outbox.count has
    # no caller yet: its rows say what it would send for the same filters.
    *(
        q
        for flt in DELIVERY_FILTERS
        for q in (
            _lib(
                "outbox/store.py:OutboxCollections.find_items",
                "find",
                "webhook_outbox",
                flt,
                sort=NEWEST,
                why="GET /webhooks/deliveries",
            ),
            *(
                _lib(
                    "outbox/store.py:OutboxCollections.find_items",
                    method,
                    "webhook_history",
                    history_filter,
                    sort=NEWEST if method == "find" else (),
                    why="GET /webhooks/deliveries",
                )
                for history_filter in (flt, {**flt, "_id": {"$nin": [V]}})
                for method in ("find", "count_documents")
            ),
            _lib(
                "outbox/store.py:OutboxCollections.count", "count_documents", "webhook_outbox", flt
            ),
            *(
                _lib(
                    "outbox/store.py:OutboxCollections.count",
                    "count_documents",
                    "webhook_history",
                    history_filter,
                    why="no caller yet",
                )
                for history_filter in (flt, {**flt, "_id": {"$nin": [V]}})
            ),
        )
    ),
    # ---------------------------------------------------------- control center
    _c(
        "users/repository.py:UserRepository.by_username_key",
        "find_one",
        "users",
        {"username_key": V},
        why="login",
    ),
    *(
        _c(
            "users/repository.py:UserRepository.find_page",
            method,
            "users",
            flt,
            sort=OLDEST if method == "find" else (),
            why="GET /users",
        )
        for flt in USER_FILTERS
        for method in ("find", "count_documents")
    ),
    *(
        _c(
            "users/repository.py:UserRepository.count_enabled_admins",
            "count_documents",
            "users",
            flt,
            why="user changes that could remove the last admin",
        )
        for flt in (
            {"roles": V, "enabled": V},
            {"roles": V, "enabled": V, "_id": {"$ne": V}},
        )
    ),
    *(
        _c(
            f"users/repository.py:UserRepository.{fn}",
            "delete_one",
            "user_locks",
            {"_id": V, "holder": V},
        )
        for fn in ("lock_admins", "unlock_admins")
    ),
    _c(
        "auth/repository.py:SessionRepository.revoke_user",
        "find",
        "sessions",
        {"user_id": V, "revoked_at": V},
        why="disabling or deleting a user",
    ),
    _c(
        "auth/repository.py:SessionRepository.revoke_user",
        "update_many",
        "sessions",
        {"_id": {"$in": [V]}},
        why="disabling or deleting a user",
    ),
    _c(
        "auth/repository.py:TokenRepository.live_of_session",
        "find",
        "issued_tokens",
        {"sid": V, "exp": R},
        why="logout, refresh reuse",
    ),
    *(
        _c(
            "auth/repository.py:TokenRepository.purge_expired",
            "delete_many",
            collection,
            {"exp": {"$lt": V}},
            why="purge loop",
        )
        for collection in ("issued_tokens", "revoked_tokens")
    ),
    _c(
        "auth/repository.py:UseRepository.purge_expired",
        "delete_many",
        "single_use",
        {"expires": {"$lt": V}},
        why="purge loop",
    ),
    *(
        _c(
            "auth/repository.py:LoginRepository.purge",
            "delete_many",
            collection,
            {"at": {"$lt": V}},
            why="purge loop",
        )
        for collection in ("login_slots", "login_known")
    ),
    _c(
        "keys/repository.py:KeyRepository.recent",
        "find",
        "signing_keys",
        {},
        sort=(("generation", -1),),
        why="key reload loop",
    ),
    *(
        _c(
            "policies/repository.py:PolicyRepository.find_page",
            method,
            "policies",
            flt,
            sort=OLDEST if method == "find" else (),
            why="GET /policies",
        )
        for flt in POLICY_FILTERS
        for method in ("find", "count_documents")
    ),
    _c(
        "policies/repository.py:PolicyRepository.all_enabled",
        "find",
        "policies",
        {"enabled": V},
        why="policy set for the services",
    ),
    *(
        _c(
            "audit/repository.py:AuditRepository.search",
            method,
            "audit_logs",
            flt,
            sort=(("timestamp", -1), ("_id", -1)) if method == "find" else (),
            why="GET /audit/logs",
        )
        for flt in AUDIT_FILTERS
        for method in ("find", "count_documents")
    ),
)

BOUNDED = {"orchestrator": ORCHESTRATOR_BOUNDED, "control_center": CONTROL_CENTER_BOUNDED}


# ------------------------------------------------------------------ the source scan
def _package_path(path: Path) -> str:
    parts = path.parts
    return "/".join(parts[len(parts) - parts[::-1].index("src") :])


def _is_exact_id(node: ast.expr | None) -> bool:
    """A literal ``{"_id": <expression that is not a document or list>}``."""
    return (
        isinstance(node, ast.Dict)
        and len(node.keys) == 1
        and isinstance(node.keys[0], ast.Constant)
        and node.keys[0].value == "_id"
        and not isinstance(node.values[0], ast.Dict | ast.List | ast.Set | ast.Tuple)
    )


class _Scanner(ast.NodeVisitor):
    def __init__(self, module: str) -> None:
        self.module = module
        self.scope: list[str] = []
        self.found: set[tuple[str, str]] = set()

    def _enter(self, node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_ClassDef = _enter
    visit_FunctionDef = _enter
    visit_AsyncFunctionDef = _enter

    def visit_Call(self, node: ast.Call) -> None:
        method = None
        if isinstance(node.func, ast.Attribute) and node.func.attr in FILTER_METHODS:
            method = node.func.attr
        elif isinstance(node.func, ast.Name) and node.func.id in BULK_OPERATIONS:
            method = node.func.id
        if method is not None:
            first = node.args[0] if node.args else None
            first = next((k.value for k in node.keywords if k.arg == "filter"), first)
            text = isinstance(first, ast.Constant) and isinstance(first.value, str | bytes)
            if not text and not _is_exact_id(first):  # str.find(...) is not a query
                self.found.add((f"{self.module}:{'.'.join(self.scope)}", method))
        self.generic_visit(node)


def scan_sources() -> set[tuple[str, str]]:
    """(where, method) of every query call whose filter is not a literal exact ``_id``."""
    found: set[tuple[str, str]] = set()
    for base in SOURCES:
        for path in sorted((ROOT / base).rglob("*.py")):
            scanner = _Scanner(_package_path(path))
            scanner.visit(ast.parse(path.read_text(), filename=str(path)))
            found |= scanner.found
    return found


# ------------------------------------------------------------ the declared indexes
class _Collection:
    def __init__(self, db: _Database, name: str) -> None:
        self.db, self.name = db, name

    async def create_index(self, keys: Sequence[tuple[str, int]], **kw: Any) -> str:
        spec = IndexSpec(tuple(keys), str(kw["name"]), bool(kw.get("unique", False)))
        self.db.indexes.setdefault(self.name, []).append(spec)
        return spec.name


class _Database:
    """Stands in for an ``AsyncDatabase``: records the collections named and the
    indexes created through :func:`provisioning_common.mongo.ensure_indexes`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.names: set[str] = set()
        self.indexes: dict[str, list[IndexSpec]] = {}

    def __getitem__(self, name: str) -> _Collection:
        self.names.add(name)
        return _Collection(self, name)

    get_collection = __getitem__


async def _orchestrator_repositories(db: Any) -> list[Any]:
    from orchestrator.audit.service import AuditService, AuditSettings
    from orchestrator.batches.repository import BatchRepository
    from orchestrator.engine import TaskStore
    from orchestrator.events import EventRepository
    from orchestrator.retention.repository import RetentionRepository
    from orchestrator.rollback.repository import RollbackRepository
    from orchestrator.state.repository import SnapshotRepository
    from orchestrator.webhooks.config import WebhookSettings
    from orchestrator.webhooks.service import WebhookService
    from orchestrator.workflows.repository import IdempotencyRepository

    async def never(event: Mapping[str, Any]) -> tuple[int, Any]:
        raise AssertionError("not sent")

    store = TaskStore(db, MagicMock())  # the Redis task index is not used here
    return [
        store,
        EventRepository(db),
        BatchRepository(db),
        SnapshotRepository(db),
        RollbackRepository(db),
        IdempotencyRepository(db),
        RetentionRepository(store, db, BatchRepository(db)),
        AuditService(db, never, AuditSettings()).outbox,
        WebhookService(WebhookSettings(), db, EventRepository(db)).outbox,
    ]


async def _control_center_repositories(db: Any) -> list[Any]:
    from control_center.audit.repository import AuditRepository
    from control_center.auth.repository import (
        LoginRepository,
        SecretRepository,
        SessionRepository,
        TokenRepository,
        UseRepository,
    )
    from control_center.keys.repository import KeyRepository
    from control_center.policies.repository import PolicyRepository
    from control_center.users.repository import UserRepository

    return [
        UserRepository(db),
        SessionRepository(db),
        TokenRepository(db),
        UseRepository(db),
        LoginRepository(db),
        SecretRepository(db),
        PolicyRepository(db),
        AuditRepository(db),
        KeyRepository(db),
    ]


@pytest.fixture(scope="module")
def declared() -> dict[str, _Database]:
    """Per service: the collections its repositories name and the indexes they create."""
    import asyncio

    async def collect() -> dict[str, _Database]:
        out: dict[str, _Database] = {}
        for service, repositories in (
            ("orchestrator", _orchestrator_repositories),
            ("control_center", _control_center_repositories),
        ):
            db = _Database(service)
            for repo in await repositories(cast(Any, db)):
                ensure = getattr(repo, "ensure_indexes", None)
                if ensure is not None:
                    await ensure()
            out[service] = db
        return out

    return asyncio.run(collect())


# ------------------------------------------------------------------ the index rule
@dataclass(frozen=True, slots=True)
class Shape:
    equality: frozenset[str]
    ranges: frozenset[str]
    sort: tuple[tuple[str, int], ...]


def branches(flt: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The filter as a list of ``$or``-free conjunctions (``$and`` merged)."""
    base = {k: v for k, v in flt.items() if k not in ("$or", "$and")}
    parts: list[list[dict[str, Any]]] = [[base]]
    for sub in flt.get("$and", []):
        parts.append(list(branches(sub)))
    if "$or" in flt:
        parts.append([b for sub in flt["$or"] for b in branches(sub)])
    combos: list[dict[str, Any]] = [{}]
    for options in parts:
        combos = [{**c, **o} for c in combos for o in options]
    yield from combos


def shape_of(flt: Mapping[str, Any], sort: Sequence[tuple[str, int]]) -> Shape:
    equality: set[str] = set()
    ranges: set[str] = set()
    for field, value in flt.items():
        ops = set(value) if isinstance(value, Mapping) else set()
        if ops and ops <= RANGE_OPERATORS:
            ranges.add(field)
        elif not ops or ops <= EQUALITY_OPERATORS:
            equality.add(field)
        else:
            raise AssertionError(f"unknown operators {sorted(ops)} on {field}")
    # Sorting on a field fixed by an equality is free.
    return Shape(
        frozenset(equality), frozenset(ranges), tuple(s for s in sort if s[0] not in equality)
    )


def serves(index: Sequence[tuple[str, int]], q: Shape) -> bool:
    """Does an index with these keys serve the query (see the module docstring)?"""
    fields = [k for k, _ in index]
    for k in range(len(fields) + 1):
        if len(set(fields[:k])) != k or not set(fields[:k]) <= q.equality:
            break
        rest = list(index[k:])
        if q.sort:
            if len(rest) < len(q.sort) or [f for f, _ in rest[: len(q.sort)]] != [
                f for f, _ in q.sort
            ]:
                continue
            signs = {d * i for (_, d), (_, i) in zip(q.sort, rest, strict=False)}
            if len(signs) != 1:
                continue
        if k >= 1:
            return True
        # No equality prefix: the first key must bound the scan (a range) or, without
        # equality filters, give the order of a page.
        if rest and rest[0][0] in q.ranges and (not q.sort or q.sort[0][0] == rest[0][0]):
            return True
        if not q.equality and q.sort:
            return True
    return False


def _indexes_of(db: _Database, collection: str) -> list[IndexSpec]:
    return [IndexSpec((("_id", 1),), "_id_", unique=True), *db.indexes.get(collection, [])]


# ------------------------------------------------------------------------ tests
def test_the_table_lists_every_query_in_the_source() -> None:
    found = scan_sources()
    listed = {(q.where, q.method) for q in QUERIES}
    missing = sorted(found - listed)
    stale = sorted(listed - found)
    report = (
        "QUERIES must list exactly the non-_id queries of the source.\n"
        + "".join(f"  missing: {w} {m}\n" for w, m in missing)
        + "".join(f"  stale:   {w} {m}\n" for w, m in stale)
    )
    assert (missing, stale) == ([], []), report


def test_every_query_is_served_by_a_declared_index(declared: dict[str, _Database]) -> None:
    problems: list[str] = []
    for q in QUERIES:
        db = declared[q.service]
        bounded = q.collection in BOUNDED[q.service]
        for branch in branches(q.filter):
            shape = shape_of(branch, q.sort)
            if bounded:
                continue  # its size follows the work in flight: any query is cheap
            if not (shape.equality or shape.ranges or shape.sort):
                if not q.why:
                    problems.append(f"{q.where} {q.method} reads all of {q.collection}: say why")
                continue
            indexes = _indexes_of(db, q.collection)
            if not any(serves(spec.keys, shape) for spec in indexes):
                declared_keys = [list(s.keys) for s in indexes]
                problems.append(
                    f"{q.collection}: {q.method} {branch} sort {list(q.sort)} at {q.where} "
                    f"({q.why or 'no note'}) - no declared index serves it; declared: "
                    f"{declared_keys}"
                )
    assert not problems, f"{len(problems)} queries without an index:\n" + "\n".join(problems)


def test_every_collection_of_the_table_is_named_by_a_repository(
    declared: dict[str, _Database],
) -> None:
    unknown = sorted(
        {
            (q.service, q.collection)
            for q in QUERIES
            if q.collection not in declared[q.service].names
        }
    )
    assert not unknown, f"collections no repository names: {unknown}"


def test_bounded_collections_exist(declared: dict[str, _Database]) -> None:
    for service, bounded in BOUNDED.items():
        missing = sorted(bounded - declared[service].names)
        assert not missing, f"{service}: declared bounded but no repository names {missing}"


@pytest.mark.parametrize(
    ("index", "flt", "sort", "served"),
    [
        ([("status", 1), ("created_at", 1)], {"status": V}, [("created_at", -1)], True),
        (
            [("status", 1), ("created_at", 1)],
            {"status": V},
            [("created_at", -1), ("_id", -1)],
            False,
        ),
        ([("created_at", -1), ("_id", -1)], {}, [("created_at", 1), ("_id", 1)], True),
        ([("created_at", -1), ("_id", 1)], {}, [("created_at", -1), ("_id", -1)], False),
        ([("created_at", -1)], {"status": V}, [("created_at", -1)], False),
        ([("key", 1), ("at", 1)], {"at": R}, [], False),
        ([("key", 1), ("at", 1)], {"key": V, "at": R}, [], True),
        ([("_id", 1)], {"_id": R, "event_type": {"$in": [V]}}, [("_id", 1)], True),
        ([("roles", 1)], {"roles": V, "enabled": V}, [], True),
        ([("a", 1), ("b", 1)], {"b": V}, [], False),
    ],
)
def test_the_index_rule(
    index: list[tuple[str, int]], flt: dict[str, Any], sort: list[tuple[str, int]], served: bool
) -> None:
    assert serves(index, shape_of(flt, sort)) is served


# ------------------------------------------- the command classifier (storage_rules)
@pytest.mark.parametrize(
    ("name", "command", "access"),
    [
        ("insert", {"insert": "tasks", "documents": [{"_id": "a"}]}, Access.INSERT),
        ("find", {"find": "tasks", "filter": {"_id": "a"}, "limit": 1}, Access.POINT),
        ("find", {"find": "tasks", "filter": {"_id": ObjectId()}}, Access.POINT),
        ("update", {"update": "tasks", "updates": [{"q": {"_id": "a"}, "u": {}}]}, Access.POINT),
        ("delete", {"delete": "tasks", "deletes": [{"q": {"_id": "a"}, "limit": 1}]}, Access.POINT),
        ("findAndModify", {"findAndModify": "tasks", "query": {"_id": "a"}}, Access.POINT),
        ("find", {"find": "task_queue", "filter": {}, "sort": {"created_at": 1}}, Access.BOUNDED),
        ("aggregate", {"aggregate": "task_slots", "pipeline": []}, Access.BOUNDED),
        ("createIndexes", {"createIndexes": "tasks", "indexes": []}, Access.SETUP),
        ("getMore", {"getMore": 1, "collection": "tasks"}, Access.CURSOR),
        ("find", {"find": "tasks", "filter": {"_id": 1}}, Access.VIOLATION),  # not pushed down
        ("find", {"find": "tasks", "filter": {"_id": {"$in": ["a"]}}}, Access.VIOLATION),
        (
            "delete",
            {"delete": "t", "deletes": [{"q": {"_id": "a", "x": 1}, "limit": 1}]},
            Access.VIOLATION,
        ),
        ("count", {"count": "tasks", "query": {}}, Access.VIOLATION),
        ("aggregate", {"aggregate": "tasks", "pipeline": [{"$match": {}}]}, Access.VIOLATION),
        ("aggregate", {"aggregate": "t", "pipeline": [{"$match": {"_id": "a"}}]}, Access.POINT),
        ("count", {"count": "tasks", "query": {"_id": "a"}}, Access.POINT),
        ("dbStats", {"dbStats": 1}, Access.VIOLATION),
    ],
)
def test_commands_are_classified(name: str, command: dict[str, Any], access: Access) -> None:
    got, problems = classify(name, command, ORCHESTRATOR_BOUNDED)
    assert got is access
    assert bool(problems) is (access is Access.VIOLATION)


def test_a_violation_names_collection_command_and_filter_shape() -> None:
    command = {
        "update": "tasks",
        "updates": [
            {"q": {"_id": "a"}, "u": {}},
            {"q": {"status": "Pending", "at": {"$lt": 1}}, "u": {}, "multi": True},
        ],
    }
    problem = is_allowed("update", command, ORCHESTRATOR_BOUNDED)
    assert problem is not None
    assert str(problem) == "tasks: update(multi) {status: str, at: {$lt: number}}"
    sort = {"find": "events", "filter": {"_id": {"$gt": "x"}}, "sort": {"_id": 1}}
    assert str(is_allowed("find", sort, ())) == "events: find {_id: {$gt: str}} sort {_id: 1}"
