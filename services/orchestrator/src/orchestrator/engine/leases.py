"""Keeping this replica's attempts owned: lease renewals in a loop of their own, the
check that stops a run whose lease could not be renewed or was taken over, and the
cancel requests the owner of a run acts on."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from provisioning_common.mongo import Document
from provisioning_common.timeutil import as_utc, utcnow

from .model import ATTEMPT_LOST, attempt_id
from .state import EngineState, Run

log = logging.getLogger(__name__)


def lost_attempt(attempt: Document) -> dict[str, Any]:
    """The end of an attempt whose owner stopped heartbeating: it ended with its lease."""
    return {
        "status": ATTEMPT_LOST,
        "ended_at": as_utc(attempt["lease_expires_at"]),
        "error": f"Lease expired (worker {attempt.get('worker_id')} stopped heartbeating)",
    }


class Leases:
    def __init__(self, state: EngineState) -> None:
        self.state = state
        self.store = state.store
        self.settings = state.settings

    async def loop(self) -> None:
        """Its own loop, so slow event or output writes never delay lease renewals."""
        while True:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            started = time.monotonic()
            # Only runs that this round renewed are checked: a run started during the
            # round holds the lease of its own start, checked after the next round.
            renewed = set(self.state.runs)
            try:
                await self.heartbeat()
                took = time.monotonic() - started
                if took > self.settings.lease_seconds / 3:
                    log.warning("slow lease renewal: %.2fs", took)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("lease renewal failed: %s", type(exc).__name__)
            self.check_own(renewed)

    async def heartbeat(self) -> None:
        runs = [r for r in self.state.runs.values() if r.reason != "lost" and not r.done]
        if not runs:
            return
        now = utcnow()
        expires = now + timedelta(seconds=self.settings.lease_seconds)
        await asyncio.gather(*(self._renew(run, now, expires) for run in runs))
        # Someone inserted our next attempt: our lease was considered dead; stop at once.
        successors = await self.store.existing_attempts(
            [attempt_id(r.task_id, r.attempt + 1) for r in runs]
        )
        for run in runs:
            if attempt_id(run.task_id, run.attempt + 1) in successors:
                log.warning("attempt %s was taken over; stopping it", run.aid)
                run.halt("lost")

    async def _renew(self, run: Run, now: datetime, expires: datetime) -> None:
        # Under the run's lock: the attempt's end is written under it too, and a
        # concurrent renewal would overwrite it on FerretDB (read-then-overwrite).
        async with run.lock:
            if run.done:
                return
            await self.store.renew_leases([run.aid], expires, now)
            if run.slot:
                await self.store.renew_slots([run.slot], expires)
            run.lease_expires = expires

    def check_own(self, aids: Iterable[str]) -> None:
        """If renewals keep failing, stop before another replica takes over."""
        now = utcnow()
        for aid in aids:
            run = self.state.runs.get(aid)
            if run is not None and run.reason is None and run.lease_expires <= now:
                log.warning("lease of %s could not be renewed; stopping it", run.aid)
                run.halt("lost")

    async def poll_cancels(self, *, fast: bool) -> None:
        """Stop the runs whose task a cancel request names (``fast``: from Redis's copy
        of the requests; else from MongoDB, in case a copy was lost)."""
        wanted = await self.store.cancel_requests(
            (r.task_id for r in self.state.runs.values()), fast=fast
        )
        for run in list(self.state.runs.values()):
            if run.task_id in wanted and run.reason is None:
                run.halt("cancel", wanted[run.task_id])
