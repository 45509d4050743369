"""Approval gates: a batch operation of type ``approval`` blocks its dependents until
an allowed approver decides (``POST /batch/operations/{id}/approvals/{op}``), or its
``timeout_seconds`` pass. The operations downstream of an undecided gate have no
tasks yet: the reconciler creates them once every gate upstream is approved, so the
engine never sees them before. A reject or a timeout fails the gate (the batch then
fails, and rolls back when it has automatic rollback), and the held operations end
Cancelled without running.

Each request and decision is decided once cluster-wide by a claim (a unique insert,
``<batch>:approval:<op>:requested`` and ``<batch>:approval:<op>``, carrying the
record); the operation's ``approval`` on the batch document is a copy every pass
writes again. The winner of a claim publishes ``ApprovalRequested`` /
``ApprovalDecided`` and writes the audit record."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from orchestrator.event_types import EventType
from orchestrator.events import EventPublisher
from provisioning_common.envelope import format_timestamp
from provisioning_common.errors import Conflict, Forbidden, NotFound
from provisioning_common.timeutil import as_utc, utcnow

from .model import APPROVAL, CANCELLED, COMPLETED, FAILED, PENDING, RUNNING
from .ports import AuditRecorder
from .repository import BatchRepository

APPROVED = "approved"
REJECTED = "rejected"
TIMED_OUT = "timed_out"
WAITING = "waiting"
DECISIONS = {"approve": APPROVED, "reject": REJECTED}


def requested_key(batch_id: str, op_id: str) -> str:
    return f"{batch_id}:approval:{op_id}:requested"


def decision_key(batch_id: str, op_id: str) -> str:
    return f"{batch_id}:approval:{op_id}"


def is_gate(op: Mapping[str, Any]) -> bool:
    return op.get("type") == APPROVAL


def decided(op: Mapping[str, Any]) -> str | None:
    """The gate's decision as its batch document copy says (None: undecided)."""
    approval = op.get("approval")
    if isinstance(approval, Mapping) and approval.get("status") in (
        APPROVED,
        REJECTED,
        TIMED_OUT,
    ):
        return str(approval["status"])
    return None


def held_operations(ops: Sequence[Mapping[str, Any]]) -> set[str]:
    """Operations downstream (transitively) of a gate that is not approved: their
    tasks are not created (yet)."""
    deps = {str(o["id"]): list(o.get("dependencies") or ()) for o in ops}
    blocking = {str(o["id"]) for o in ops if is_gate(o) and decided(o) != APPROVED}
    held: set[str] = set()
    changed = True
    while changed:
        changed = False
        for op_id, upstream in deps.items():
            if op_id not in held and any(d in blocking or d in held for d in upstream):
                held.add(op_id)
                changed = True
    return held


def topological(ops: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The operations, each after its dependencies (submission order otherwise)."""
    done: set[str] = set()
    out: list[Mapping[str, Any]] = []
    remaining = list(ops)
    while remaining:
        progressed = [o for o in remaining if all(d in done for d in o.get("dependencies") or ())]
        if not progressed:  # a cycle: refused at submission; keep the rest as they are
            return [*out, *remaining]
        for o in progressed:
            done.add(str(o["id"]))
            out.append(o)
        remaining = [o for o in remaining if str(o["id"]) not in done]
    return out


def gate_status(
    op: Mapping[str, Any], dep_statuses: Iterable[str], cancelled: bool
) -> tuple[str, bool]:
    """The gate's operation status and whether it is to be requested now (all its
    dependencies completed and it is undecided)."""
    decision = decided(op)
    if decision == APPROVED:
        return COMPLETED, False
    if decision is not None:
        return FAILED, False
    statuses = list(dep_statuses)
    if cancelled or any(s in (FAILED, CANCELLED) for s in statuses):
        return CANCELLED, False
    if all(s == COMPLETED for s in statuses):
        return RUNNING, True
    return PENDING, False


def submitters_of(batch: Mapping[str, Any]) -> list[str]:
    """Who submitted the batch, and, for a resumed run, every earlier run's submitter
    and resumer (``submitters``)."""
    found = {str(s) for s in batch.get("submitters") or ()}
    if batch.get("created_by"):
        found.add(str(batch["created_by"]))
    return sorted(found)


def may_approve(
    op: Mapping[str, Any],
    batch: Mapping[str, Any],
    *,
    sub: str,
    username: str | None,
    roles: Iterable[str],
    allow_self: bool,
) -> None:
    """403 unless the caller is listed in the gate's ``approvers`` (a role, a user id
    or a username) and is not the batch's submitter (four-eyes, unless allowed)."""
    if not allow_self and sub in submitters_of(batch):
        raise Forbidden("The submitter of a batch may not approve its own gates")
    approvers = {str(a) for a in op.get("approvers") or ()}
    caller = {sub, *(r for r in roles), *([username] if username else [])}
    if not approvers & caller:
        raise Forbidden(f"Not an approver of gate '{op['id']}'")


class ApprovalGates:
    def __init__(
        self,
        *,
        repo: BatchRepository,
        publisher: EventPublisher,
        audit: AuditRecorder | None,
        worker_id: str,
    ) -> None:
        self.repo = repo
        self.publisher = publisher
        self.audit = audit
        self.worker_id = worker_id

    async def state(
        self, batch: Mapping[str, Any], op: Mapping[str, Any], request_now: bool, now: datetime
    ) -> dict[str, Any] | None:
        """The gate's ``approval`` record as it now stands: request it when asked (once
        cluster-wide), time it out when its time has passed, else read the claims."""
        batch_id = str(batch["_id"])
        op_id = str(op["id"])
        current = op.get("approval") if isinstance(op.get("approval"), Mapping) else None
        if decided(op) is not None:
            return dict(current) if current else None
        decision = await self.repo.claimed_record(decision_key(batch_id, op_id))
        requested = await self.repo.claimed_record(requested_key(batch_id, op_id))
        if requested is None and request_now:
            requested = await self._request(batch, op, now)
        if requested is None:
            return None
        record: dict[str, Any] = {
            "status": WAITING,
            "approvers": list(op.get("approvers") or ()),
            "message": op.get("message"),
            "timeout_seconds": op.get("timeout_seconds"),
            "requested_at": _stamp(requested["requested_at"]),
        }
        if decision is None and op.get("timeout_seconds"):
            deadline = as_utc(requested["requested_at"]) + timedelta(
                seconds=float(op["timeout_seconds"])
            )
            if now >= deadline:
                decision = await self._decide(
                    batch,
                    op,
                    {"status": TIMED_OUT, "decided_by": None, "comment": "timed out"},
                    None,
                )
        if decision is not None:
            record.update(decision)
            record["decided_at"] = _stamp(decision.get("decided_at"))
        return record

    async def _request(
        self, batch: Mapping[str, Any], op: Mapping[str, Any], now: datetime
    ) -> dict[str, Any] | None:
        batch_id = str(batch["_id"])
        key = requested_key(batch_id, str(op["id"]))
        record = {"requested_at": now}
        if not await self.repo.claim(key, self.worker_id, now, record=record):
            return await self.repo.claimed_record(key)
        await self.publisher.publish(
            EventType.APPROVAL_REQUESTED,
            data={
                "batch_id": batch_id,
                "operation_id": op["id"],
                "approvers": list(op.get("approvers") or ()),
                "message": op.get("message"),
                "timeout_seconds": op.get("timeout_seconds"),
                "requested_at": format_timestamp(now),
            },
            metadata=_meta(batch),
        )
        if self.audit is not None:
            await self.audit.record(
                action="batch.approval_requested",
                resource=f"batches/{batch_id}",
                user_id=batch.get("created_by"),
                result="success",
                details={"operation_id": op["id"], "approvers": list(op.get("approvers") or ())},
            )
        return record

    async def decide(
        self,
        batch: Mapping[str, Any],
        op_id: str,
        decision: str,
        *,
        sub: str,
        username: str | None,
        roles: Iterable[str],
        comment: str | None,
        allow_self: bool,
    ) -> dict[str, Any]:
        """Record an approver's decision once: 404 for no such gate, 403 for a caller
        who may not decide it, 409 when it is not waiting or was decided already."""
        batch_id = str(batch["_id"])
        op = next((o for o in batch["operations"] if o["id"] == op_id and is_gate(o)), None)
        if op is None:
            raise NotFound(f"Batch operation {batch_id} has no approval gate '{op_id}'")
        may_approve(op, batch, sub=sub, username=username, roles=roles, allow_self=allow_self)
        existing = await self.repo.claimed_record(decision_key(batch_id, op_id))
        if existing is not None:
            raise Conflict(f"Approval gate '{op_id}' was already decided: {existing['status']}")
        requested = await self.repo.claimed_record(requested_key(batch_id, op_id))
        if requested is None:
            raise Conflict(f"Approval gate '{op_id}' is not awaiting a decision (yet)")
        if op.get("timeout_seconds") and utcnow() >= as_utc(requested["requested_at"]) + timedelta(
            seconds=float(op["timeout_seconds"])
        ):
            # Past the deadline the gate has timed out, whether or not a reconcile pass
            # has recorded it yet: that decision wins, not a late approval.
            await self._decide(
                batch, op, {"status": TIMED_OUT, "decided_by": None, "comment": "timed out"}, None
            )
            raise Conflict(f"Approval gate '{op_id}' timed out")
        record = {"status": DECISIONS[decision], "decided_by": sub, "comment": comment}
        won = await self._decide(batch, op, record, sub)
        if won is None or won.get("decided_by") != sub or won.get("status") != record["status"]:
            status = won.get("status") if won else "decided"
            raise Conflict(f"Approval gate '{op_id}' was already decided: {status}")
        return won

    async def _decide(
        self,
        batch: Mapping[str, Any],
        op: Mapping[str, Any],
        record: Mapping[str, Any],
        user_id: str | None,
    ) -> dict[str, Any] | None:
        """Claim the decision; the winner announces and audits it. The decided record."""
        batch_id = str(batch["_id"])
        op_id = str(op["id"])
        key = decision_key(batch_id, op_id)
        now = utcnow()
        full = {**record, "decided_at": now}
        if not await self.repo.claim(key, self.worker_id, now, record=full):
            return await self.repo.claimed_record(key)
        await self.publisher.publish(
            EventType.APPROVAL_DECIDED,
            data={
                "batch_id": batch_id,
                "operation_id": op_id,
                "decision": full["status"],
                "decided_by": full.get("decided_by"),
                "comment": full.get("comment"),
                "decided_at": format_timestamp(now),
            },
            metadata=_meta(batch),
        )
        # A decision over HTTP is audited by its route (with the request's context).
        if self.audit is not None and user_id is None:
            await self.audit.record(
                action=f"batch.approval_{full['status']}",
                resource=f"batches/{batch_id}",
                user_id=user_id,
                result="success",
                details={"operation_id": op_id, "comment": full.get("comment")},
            )
        return {**full, "decided_at": _stamp(now)}


def _stamp(value: Any) -> str | None:
    return format_timestamp(as_utc(value)) if isinstance(value, datetime) else value


def _meta(batch: Mapping[str, Any]) -> dict[str, Any]:
    return {"batch_id": batch["_id"], "name": batch["name"], "owner": batch.get("created_by")}
