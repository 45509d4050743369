"""The orchestrator's audit trail, delivered to the control center.

Call it after every mutating action (one line; never raises, never blocks on the
control center)::

    from orchestrator.audit import record_audit

    await record_audit(
        request,                       # or the app (background work)
        action="server.create",        # "<resource type>.<verb>"
        resource="servers/web-01",     # "<collection>/<name or id>"
        result="success",              # or "failure" / "denied"
        details={"task_id": task_id},  # free-form, no secrets
    )

A handler that has just authorized ``verb`` on the policy resource ``kind:name`` can
write ``await record_action(request, "create", "servers:web-01", details={...})``
(→ ``server.create`` on ``servers/web-01``).

With a request, ``user_id`` defaults to the caller (the token's ``sub``) and the
request id is added to ``details``. Actions used by the orchestrator:
``server.create``, ``taskserv.<operation>``, ``cluster.<operation>``,
``task.cancel``, ``batch.execute``, ``batch.cancel``, ``checkpoint.create``,
``rollback.execute``, ``rollback.restore``, ``webhook.redeliver``.

The record is written to a durable outbox in MongoDB (``audit_outbox``) in the
same call; a background worker on every replica POSTs the due records to the
control center's ``POST /audit/events`` with the orchestrator's service token,
up to ``AUDIT_BATCH_SIZE`` records per call (``{"events": [...]}``), retrying
with backoff while the control center is down. The control center is idempotent
by record ``id``, so a retry after a lost answer is not a duplicate. When it
rejects a batch (422/413/400: an invalid record, or a control center without the
batch form) the records of that batch are sent one per call, so that only an
invalid record fails. Delivered records move to ``audit_history``.

Settings (env): ``AUDIT_ENABLED`` (true), ``AUDIT_MAX_ATTEMPTS`` (10000),
``AUDIT_RETRY_MAX_DELAY_SECONDS`` (30), ``AUDIT_POLL_SECONDS`` (0.5),
``AUDIT_BATCH_SIZE`` (200, at most 500).
"""

from __future__ import annotations

from .record import record_action, record_audit
from .service import AuditService
from .settings import AuditSettings

__all__ = ["AuditService", "AuditSettings", "record_action", "record_audit"]
