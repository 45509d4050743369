"""Starting attempts: a concurrency-group slot, the claim (a unique insert of the attempt
document ``<task_id>:<n>``), the Running write and the run's process; and taking over
an attempt whose lease expired (attempt ``n+1``, or the task fails at its limit)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from provisioning_common.mongo import Document
from provisioning_common.timeutil import as_utc, utcnow

from . import metrics
from .events import Events
from .execution import Execution
from .finals import Finals
from .leases import lost_attempt
from .model import CANCELLED, FAILED, RUNNING, attempt_id, effective_attempts, slot_id
from .process import TailBuffer
from .state import EngineState, Run


class Attempts:
    def __init__(
        self, state: EngineState, events: Events, finals: Finals, execution: Execution
    ) -> None:
        self.state = state
        self.store = state.store
        self.settings = state.settings
        self.events = events
        self.finals = finals
        self.execution = execution

    async def _acquire_slot(
        self,
        task: Document,
        aid: str,
        expires: datetime,
        takeover: bool,
        held_slots: dict[str, Document] | None = None,
    ) -> str | None:
        """None: no concurrency group; "": every slot taken; else the slot id."""
        key = task.get("concurrency_key")
        if not key:
            return None
        fields = {
            "attempt_id": aid,
            "worker_id": self.state.worker_id,
            "lease_expires_at": expires,
        }
        mine = await self.store.slot_of_task(task["_id"]) if takeover else None
        if mine is not None:  # a taken-over attempt inherits its predecessor's slot
            await self.store.adopt_slot(mine["_id"], fields)
            return str(mine["_id"])
        now = utcnow()
        # The tick's snapshot of held slots spares a query per task; a slot taken
        # since then just loses the unique insert below. Concurrent starts of one
        # tick mark the slot they try in it, so they do not all race for the same one.
        held = (
            held_slots
            if held_slots is not None
            else {d["_id"]: d for d in await self.store.slots_for_key(key)}
        )
        for n in range(int(task.get("concurrency_limit") or 1)):
            sid = slot_id(key, n)
            current = held.get(sid)
            if current is not None:
                if as_utc(current["lease_expires_at"]) >= now:
                    continue
                await self.store.delete_expired_slot(sid, current["lease_expires_at"])
            doc = {"_id": sid, "key": key, "task_id": task["_id"], **fields}
            held[sid] = doc
            if await self.store.claim_slot(doc):
                return sid
        self.state.full_keys.add(str(key))
        return ""  # every slot is taken

    async def start(
        self,
        task: Document,
        n: int,
        previous: Document | None = None,
        held: dict[str, Document] | None = None,
    ) -> bool:
        """Claim attempt ``n`` of ``task`` (``previous``: the expired attempt it takes
        over) and start its process; False when it was not started."""
        state = self.state
        task_id = str(task["_id"])
        aid = attempt_id(task_id, n)
        now = utcnow()
        expires = now + timedelta(seconds=self.settings.lease_seconds)
        slot = await self._acquire_slot(task, aid, expires, previous is not None, held)
        if slot == "":
            return False
        won = await self.store.claim_attempt(
            {
                "_id": aid,
                "task_id": task_id,
                "attempt": n,
                "worker_id": state.worker_id,
                "status": RUNNING,
                "started_at": now,
                "ended_at": None,
                "heartbeat_at": now,
                "lease_expires_at": expires,
                "exit_code": None,
                "error": None,
            }
        )
        if not won:
            if slot and previous is None:
                await self.store.release_slot(slot, task_id)
            if previous is None:
                # The task still shows Pending although attempt n exists: its claimer
                # may have died before marking it Running. Take over once the lease is gone.
                att = await self.store.get_attempt(aid)
                if (
                    att is not None
                    and att["status"] == RUNNING
                    and as_utc(att["lease_expires_at"]) < utcnow()
                ):
                    await self.take_over(att)
            return False
        if previous is not None:
            await self.store.update_attempt(previous["_id"], lost_attempt(previous))
        # Re-read: a cancel or a final decision may have landed after we read the task
        # (the final from MongoDB, the truth; the cancel request from its Redis copy,
        # which the owner's periodic full read backs up).
        final, cancels = await asyncio.gather(
            self.store.get_final(task_id), self.store.cancel_requests([task_id])
        )
        cancel = cancels.get(task_id)
        fresh = dict(task)
        if final is not None or cancel is not None:
            await self.store.update_attempt(
                aid, {"status": CANCELLED, "ended_at": utcnow(), "error": "Cancelled before start"}
            )
            if slot:
                await self.store.release_slot(slot, task_id)
            if final is not None:
                await self.finals.repair(fresh, final)
            else:
                await self.finals.finalize(fresh, CANCELLED, cancel or "Cancelled")
            return False
        fields = {
            "status": RUNNING,
            "attempts": n,
            "not_before": None,
            "error": None,
            "started_at": fresh.get("started_at") or now,
        }
        await self.store.update_task(task_id, fields)
        fresh.update(fields)
        lease = timedelta(seconds=self.settings.lease_seconds)
        if utcnow() > expires - lease / 2:
            # The claim and the writes above were slow (a loaded database): renew before
            # the process starts, or it would start on a lease that is (nearly) spent and
            # be stopped as "lost" by the next lease check while the task shows Running.
            renewed = utcnow()
            expires = renewed + lease
            await self.store.renew_leases([aid], expires, renewed)
            if slot:
                await self.store.renew_slots([slot], expires)
        run = Run(
            task=fresh,
            attempt=n,
            slot=slot,
            lease_expires=expires,
            output=TailBuffer(self.settings.output_max_bytes),
            progress=float(fresh.get("progress") or 0.0),
        )
        state.runs[aid] = run
        metrics.RUNNING_TASKS.inc()
        # The Running event is stored while the process starts; execute waits for it
        # before recording the end, so the events keep their order.
        run.announced = asyncio.create_task(self.events.emit_status(fresh, RUNNING))
        run.handle = asyncio.create_task(self.execution.execute(run), name=f"task-{aid}")
        return True

    async def take_over(self, att: Document) -> None:
        """Attempt ``n+1`` for the expired attempt ``att`` (or the task fails at its
        attempt limit); a stale record is closed once its owner must have given up."""
        if att["_id"] in self.state.runs:
            return
        now = utcnow()
        # Past this, an owner that is still alive has stopped itself (Leases.check_own).
        long_dead = now - timedelta(seconds=self.settings.lease_seconds)
        n = int(att["attempt"])
        lease_end = as_utc(att["lease_expires_at"])
        lost = lost_attempt(att)
        task = await self.store.get(att["task_id"])
        final = await self.store.get_final(att["task_id"]) if task is not None else None
        superseded = await self.store.existing_attempts([attempt_id(att["task_id"], n + 1)])
        if task is None or final is not None or superseded:
            # A stale record. Its owner may still be writing its end (a slow
            # heartbeat), so only close it once the owner must have given up:
            # one writer per document (FerretDB updates are read-then-overwrite).
            if lease_end < long_dead:
                await self.store.update_attempt(att["_id"], lost)
                if task is None or final is not None:
                    await self.store.dequeue(str(att["task_id"]))
            if task is not None and final is not None and task["status"] != final["status"]:
                # The entry stays until the attempt is closed, or nobody would close it.
                await self.finals.repair(task, final, dequeue=lease_end < long_dead)
            return
        if effective_attempts(task, n) >= int(task["max_attempts"]):
            error = (
                f"Lease of attempt {n} expired (worker stopped); "
                f"attempt limit {task['max_attempts']} reached"
            )
            if await self.finals.finalize(task, FAILED, error, won_attempt=(att["_id"], lost)):
                slot = await self.store.slot_of_task(task["_id"])
                if slot is not None:
                    await self.store.release_slot(slot["_id"], task["_id"])
            return
        if await self.start(task, n + 1, previous=att):
            metrics.TAKEOVERS.inc()
