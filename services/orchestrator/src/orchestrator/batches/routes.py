"""Thin handlers for ``/batch/*``: authorize, rate-limit (batch tier), validate,
call the service, answer the envelope."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from orchestrator.audit import record_action
from orchestrator.auth import PRINCIPAL, authorize, authorize_all
from orchestrator.auth.resources import command_action, command_resource
from orchestrator.deps import container_of
from orchestrator.workflows.bounds import check_pending
from orchestrator.workflows.service import check_key
from provisioning_common.envelope import ok
from provisioning_common.errors import Unauthorized, UnprocessableEntity
from provisioning_common.openapi import api_doc
from provisioning_common.pagination import paginated, parse_page
from provisioning_common.validation import load_body, validate
from provisioning_common.webapp import enforce_rate_limit

from . import model
from .model import Operation, operation_task_count
from .planning import parse_operations
from .schemas import (
    ApprovalDecisionSchema,
    BatchOut,
    BatchSubmissionSchema,
    BatchSubmittedOut,
    PlanOut,
    ResumeSchema,
)

routes = web.RouteTableDef()
_SUBMITTED = BatchSubmittedOut()
_PLAN = PlanOut()
_BATCH = BatchOut()
_BATCHES = BatchOut(many=True)


async def _batch_tier(request: web.Request) -> None:
    """10/min per user (counted before the body is read, like the general tier)."""
    principal = request.get(PRINCIPAL)
    if principal is None:
        raise Unauthorized()
    limit = container_of(request).settings.common.rate_limits.batch_per_minute
    await enforce_rate_limit(request, "batch", f"user:{principal.sub}", limit)


def _schema(request: web.Request) -> BatchSubmissionSchema:
    return BatchSubmissionSchema(
        max_parallel_limit=container_of(request).settings.batches.max_parallel_limit
    )


async def _body(request: web.Request) -> dict[str, Any]:
    """The validated body, refused (422) when it would expand to more than
    ``BATCH_MAX_TASKS`` tasks: counted from the body, before anything is expanded."""
    data = await load_body(request, _schema(request))
    limit = container_of(request).settings.batches.max_tasks
    total = sum(operation_task_count(Operation.from_dict(o)) for o in data["operations"])
    if total > limit:
        raise UnprocessableEntity(
            f"Batch would create {total} tasks; at most {limit} tasks per batch are allowed",
            details={"operations": [f"{total} tasks exceed the limit of {limit} per batch"]},
        )
    return data


def _checks(data: Mapping[str, Any], owner: str, verb: str) -> list[tuple[str, str, str | None]]:
    """What a batch needs allowed: ``verb`` on the batch, each task's action on its
    resource and, with automatic rollback, the ``delete`` each compensation would run
    (auth/resources.py; the same names as the workflows and the rollback use)."""
    checks: list[tuple[str, str, str | None]] = [(verb, f"batches:{data['name']}", owner)]
    for spec in model.expand_batch("authorization", parse_operations(data)):
        checks.append(
            (command_action(spec.subcommand), command_resource(spec.subcommand, spec.args), owner)
        )
        if data.get("rollback_enabled"):
            checks.append(
                (
                    command_action(spec.compensation_subcommand),
                    command_resource(spec.compensation_subcommand, spec.compensation_args),
                    owner,
                )
            )
    return checks


def _caller(request: web.Request) -> str:
    principal = request.get(PRINCIPAL)
    if principal is None:
        raise Unauthorized()
    return str(principal.sub)


@routes.post("/batch/execute")
@api_doc(
    summary="Execute a batch workflow (DAG of operations)",
    tags=["batch"],
    body=BatchSubmissionSchema,
    response=BatchSubmittedOut,
    responses={
        200: "Batch accepted and running",
        409: "Idempotency-Key reused with a different body",
    },
)
async def execute_batch(request: web.Request) -> web.Response:
    await _batch_tier(request)
    key = check_key(request.headers.get("Idempotency-Key"))
    data = await _body(request)
    # Every task and compensation, on its real resource, before anything is created.
    principal = await authorize_all(request, _checks(data, _caller(request), "execute"))
    total = sum(operation_task_count(Operation.from_dict(o)) for o in data["operations"])
    await check_pending(request, principal.sub, total)
    batch = await container_of(request).batches.execute(
        data, principal.sub, key=key, path=request.path
    )
    await record_action(
        request, "execute", f"batches:{data['name']}", details={"batch_id": batch.get("_id")}
    )
    return ok(_SUBMITTED.dump(batch))


@routes.post("/batch/plan")
@api_doc(
    summary="Validate a batch and show its execution plan; nothing runs",
    tags=["batch"],
    body=BatchSubmissionSchema,
    response=PlanOut,
)
async def plan_batch(request: web.Request) -> web.Response:
    await _batch_tier(request)
    data = await _body(request)
    await authorize_all(request, _checks(data, _caller(request), "plan"))
    return ok(_PLAN.dump(container_of(request).batches.plan(data)))


@routes.get("/batch/operations")
@api_doc(
    summary="List batch operations, newest first", tags=["batch"], response=BatchOut, many=True
)
async def list_batches(request: web.Request) -> web.Response:
    await authorize(request, "read", "batches:*")
    page = parse_page(request)
    docs, total = await container_of(request).batches.page(page.offset, page.limit)
    return paginated(request, _BATCHES.dump(docs), total, page)


@routes.get("/batch/operations/{id}")
@api_doc(summary="Get a batch operation's status", tags=["batch"], response=BatchOut)
async def get_batch(request: web.Request) -> web.Response:
    batch_id = request.match_info["id"]
    batches = container_of(request).batches
    found = await batches.lookup(batch_id)
    await authorize(request, "read", f"batches:{batch_id}", owner=_owner(found))
    return ok(_BATCH.dump(await batches.get(batch_id)))


def _owner(batch: Mapping[str, Any] | None) -> str | None:
    return str(batch.get("created_by") or "") if batch is not None else None


@routes.post("/batch/operations/{id}/cancel")
@api_doc(
    summary="Cancel a running batch operation",
    tags=["batch"],
    responses={200: "Operation cancelled", 404: "Unknown batch", 409: "Batch already finished"},
)
async def cancel_batch(request: web.Request) -> web.Response:
    await _batch_tier(request)
    batch_id = request.match_info["id"]
    batches = container_of(request).batches
    found = await batches.lookup(batch_id)
    await authorize(request, "cancel", f"batches:{batch_id}", owner=_owner(found))
    await batches.cancel(batch_id)
    await record_action(request, "cancel", f"batches:{batch_id}")
    return ok("Operation cancelled")


@routes.post("/batch/operations/{id}/resume")
@api_doc(
    summary="Resume a finished batch: a new run that skips what completed",
    tags=["batch"],
    body=ResumeSchema,
    response=BatchOut,
    responses={
        200: "New run accepted and running",
        404: "Unknown batch",
        409: "Batch still running, rolled back or already resumed; or key reused",
        422: "Unknown operation, or a dependency that neither completed nor runs",
    },
)
async def resume_batch(request: web.Request) -> web.Response:
    await _batch_tier(request)
    key = check_key(request.headers.get("Idempotency-Key"))
    batch_id = request.match_info["id"]
    batches = container_of(request).batches
    # The body is optional: no body resumes everything that did not complete.
    data = (
        await load_body(request, ResumeSchema())
        if request.body_exists
        else validate(ResumeSchema(), {})
    )
    found = await batches.lookup(batch_id)
    checks: list[tuple[str, str, str | None]] = [("resume", f"batches:{batch_id}", _owner(found))]
    if found is not None:
        # The new run's tasks and compensations, as /batch/execute checks them.
        checks += _checks(found, _caller(request), "execute")
    principal = await authorize_all(request, checks)

    async def admit(tasks: int) -> None:
        await check_pending(request, principal.sub, tasks)

    batch = await batches.resume(
        batch_id, data, principal.sub, key=key, path=request.path, admit=admit
    )
    await record_action(
        request,
        "resume",
        f"batches:{batch_id}",
        details={"batch_id": batch.get("_id"), "resumed_from": batch_id},
    )
    return ok(_BATCH.dump(batch))


@routes.post("/batch/operations/{id}/approvals/{operation_id}")
@api_doc(
    summary="Approve or reject a batch's approval gate",
    tags=["batch"],
    body=ApprovalDecisionSchema,
    response=BatchOut,
    responses={
        200: "Decision recorded; the batch as it stands",
        403: "Not an approver of the gate, or the batch's own submitter",
        404: "Unknown batch or gate",
        409: "Gate not awaiting a decision, already decided, or batch finished",
    },
)
async def decide_approval(request: web.Request) -> web.Response:
    await _batch_tier(request)
    batch_id = request.match_info["id"]
    operation_id = request.match_info["operation_id"]
    data = await load_body(request, ApprovalDecisionSchema())
    batches = container_of(request).batches
    found = await batches.lookup(batch_id)
    principal = await authorize(request, "approve", f"batches:{batch_id}", owner=_owner(found))
    batch = await batches.decide(
        batch_id,
        operation_id,
        data["decision"],
        comment=data["comment"],
        sub=principal.sub,
        username=principal.username,
        roles=principal.roles,
    )
    await record_action(
        request,
        data["decision"],
        f"batches:{batch_id}",
        details={"operation_id": operation_id, "comment": data["comment"]},
    )
    return ok(_BATCH.dump(batch))
