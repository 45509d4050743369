"""``Idempotency-Key`` on ``/batch/execute``, on the workflows feature's key store
and rules (same key format, per-user keys, request hash, 409 on reuse)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from orchestrator.workflows.service import body_hash
from provisioning_common.errors import Conflict

from .ports import IdempotencyKeys
from .repository import BatchRepository


async def submit_once(
    keys: IdempotencyKeys,
    batches: BatchRepository,
    *,
    key: str | None,
    user: str,
    path: str,
    body: Mapping[str, Any],
    run: Callable[[str], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    """Run ``run(batch_id)`` once per (user, key); a repeat with the same body gets
    the first batch's current document, a different body a 409."""
    batch_id = str(uuid.uuid4())
    if key is None:
        return await run(batch_id)
    key_id = hashlib.sha256(f"{user}\x00{key}".encode()).hexdigest()
    digest = body_hash(path, body)
    if not await keys.claim(key_id, digest, batch_id):
        existing = await keys.get(key_id)
        if existing is None:
            raise Conflict("Request with this Idempotency-Key is being processed, retry")
        if existing["body_hash"] != digest:
            raise Conflict("Idempotency-Key was already used with a different request")
        batch = await batches.get(str(existing["task_id"]))
        if batch is None:
            raise Conflict("Request with this Idempotency-Key is being processed, retry")
        return batch
    try:
        return await run(batch_id)
    except BaseException:
        await keys.release(key_id, batch_id)
        raise
