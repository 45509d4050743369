"""Submit a workflow: one task, optionally deduplicated by an ``Idempotency-Key``."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from provisioning_common.errors import BadRequest, Conflict

from ..engine import Engine, TaskSpec
from ..engine.model import new_task_id
from ..tasks.service import TaskQueries
from .repository import IdempotencyRepository

_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def check_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not _KEY.match(key):
        raise BadRequest("Idempotency-Key must be 1-255 printable ASCII characters")
    return key


def body_hash(path: str, body: Mapping[str, Any]) -> str:
    canonical = json.dumps({"path": path, "body": body}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def submit(
    engine: Engine,
    tasks: TaskQueries,
    keys: IdempotencyRepository,
    spec: TaskSpec,
    *,
    path: str,
    body: Mapping[str, Any],
    user: str,
    idempotency_key: str | None,
) -> str:
    if idempotency_key is None:
        return await engine.create_task(spec)
    key_id = hashlib.sha256(f"{user}\x00{idempotency_key}".encode()).hexdigest()
    digest = body_hash(path, body)
    task_id = new_task_id()
    if not await keys.claim(key_id, digest, task_id):
        existing = await keys.get(key_id)
        if existing is None:  # released by a failed first request: treat as new
            raise Conflict("Request with this Idempotency-Key is being processed, retry")
        if existing["body_hash"] != digest:
            raise Conflict("Idempotency-Key was already used with a different request")
        task_id = str(existing["task_id"])
        if await tasks.summary(task_id) is None:
            # The first request claimed the key and died before creating its task (or
            # is still creating it): create it now under the same id. A task that was
            # created meanwhile is not an error; it is created, queued and announced once.
            await engine.create_task(replace(spec, task_id=task_id))
        return task_id
    try:
        return await engine.create_task(replace(spec, task_id=task_id))
    except BaseException:
        await keys.release(key_id, task_id)
        raise
