"""Per-user bounds on queued work (issue 13): at most ``MAX_PENDING_TASKS_PER_USER``
unfinished (Pending or Running) tasks per user, counted on the task index's per-owner
set (one ZCARD, never a scan of the history, DESIGN §3), and the owner recorded on
every task a user creates (``metadata.owner``, the caller's ``sub``)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from aiohttp import web

from provisioning_common.config import EnvReader
from provisioning_common.errors import TooManyRequests

from ..deps import container_of
from ..engine import TaskSpec


@dataclass(frozen=True)
class Bounds:
    max_pending_per_user: int = 5000

    @classmethod
    def from_env(cls, env: EnvReader) -> Bounds:
        return cls(
            max_pending_per_user=env.int("MAX_PENDING_TASKS_PER_USER", 5000, low=1, high=10_000_000)
        )


def owned(spec: TaskSpec, owner: str) -> TaskSpec:
    """``spec`` with its owner recorded (``metadata.owner``)."""
    return replace(spec, metadata={**(spec.metadata or {}), "owner": owner})


async def check_pending(request: web.Request, owner: str, adding: int) -> None:
    """429 when ``adding`` more tasks would take ``owner`` past the per-user bound.
    Checked before anything is created; concurrent submissions of one user may
    overshoot by what they add at once (bounded by the batch size and rate limit)."""
    container = container_of(request)
    limit = container.settings.bounds.max_pending_per_user
    pending = await container.tasks.unfinished_of(owner)
    if pending + adding > limit:
        raise TooManyRequests(
            30,
            f"Too many pending tasks: {pending} pending, {adding} more would exceed the "
            f"limit of {limit} pending tasks per user; retry when some have finished",
        )
