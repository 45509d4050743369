"""Running one attempt's process and recording its end: output and progress gathered
into the run (flushed to the task document and as events), then the end judged
(``outcome.classify``) and written: a retry, a hand-back at shutdown, or the final."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from provisioning_common.timeutil import utcnow

from . import metrics
from .events import Events
from .finals import Finals
from .model import ATTEMPT_RELEASED, COMPLETED, PENDING, attempt_id
from .outcome import classify
from .process import ProcessResult, run_process
from .state import EngineState, Run

log = logging.getLogger(__name__)


class Execution:
    def __init__(
        self, state: EngineState, events: Events, finals: Finals, child_env: Mapping[str, str]
    ) -> None:
        self.state = state
        self.store = state.store
        self.settings = state.settings
        self.events = events
        self.finals = finals
        self.child_env = child_env

    async def execute(self, run: Run) -> None:
        task = run.task
        argv = [self.settings.cli, *task["subcommand"], *task["args"]]

        def on_output(text: str) -> None:
            run.output.append(text)
            run.lines.append(text.rstrip("\n"))
            run.doc_dirty = True

        def on_progress(pct: float, step: str) -> None:
            run.progress, run.current_step = pct, step or run.current_step
            run.progress_dirty = run.doc_dirty = True

        try:
            result = await run_process(
                argv,
                # At-least-once: a task may run again when its replica dies between the
                # CLI's exit and the recorded end; these let the CLI make that harmless.
                env={
                    **self.child_env,
                    "PROVISIONING_TASK_ID": run.task_id,
                    "PROVISIONING_ATTEMPT": str(run.attempt),
                },
                timeout=float(task["timeout_seconds"]),
                kill_grace=self.settings.kill_grace_seconds,
                stop=run.stop,
                on_output=on_output,
                on_progress=on_progress,
            )
            run.exited = True
            self.state.wake.set()
            if run.announced is not None:
                await run.announced
            await self.events.flush_run(run)
            async with run.lock:
                run.done = True
                await self._conclude(run, result)
        except Exception:
            log.exception("task %s attempt %s: could not record its end", run.task_id, run.attempt)
        finally:
            self.state.runs.pop(run.aid, None)
            metrics.RUNNING_TASKS.dec()
            self.state.wake.set()

    async def _conclude(self, run: Run, result: ProcessResult) -> None:
        task, now = run.task, utcnow()
        output = run.output.text() or None
        if run.reason is None and await self.store.existing_attempts(
            [attempt_id(run.task_id, run.attempt + 1)]
        ):
            run.reason = "lost"  # our lease lapsed and another replica took over
        if run.reason == "lost":
            return  # another replica owns the task now; it records everything
        if run.reason == "release":
            await self.store.update_attempt(
                run.aid,
                {
                    "status": ATTEMPT_RELEASED,
                    "ended_at": now,
                    "exit_code": result.exit_code,
                    "error": "Handed back at shutdown",
                },
            )
            await self.store.increment_released(run.task_id)
            await self.store.update_task(run.task_id, {"status": PENDING, "output": output})
            await self.release(run)
            await self.events.emit_status(task, PENDING)
            return
        outcome = classify(
            result,
            reason=run.reason,
            cancel_reason=run.cancel_reason,
            task=task,
            attempt=run.attempt,
            backoff_base=self.settings.retry_backoff_seconds,
        )
        attempt_fields = {
            "status": outcome.attempt_status,
            "ended_at": now,
            "exit_code": result.exit_code,
            "error": outcome.error,
        }
        if outcome.retry:
            await self.store.update_attempt(run.aid, attempt_fields)
            await self.store.update_task(
                run.task_id,
                {
                    "status": PENDING,
                    "failures": outcome.failures,
                    "output": output,
                    "error": outcome.error,
                    "not_before": now + timedelta(seconds=outcome.delay),
                },
            )
            await self.release(run)
            await self.events.emit_status(task, PENDING)
            return
        extra: dict[str, Any] = {
            "failures": outcome.failures,
            "progress": 100.0 if outcome.status == COMPLETED else run.progress,
            "current_step": run.current_step,
        }
        if output is not None or task.get("output") is not None:
            extra["output"] = output  # a silent task that never had output writes none
        # The process has ended: free its group slot first, so that a task shown final
        # never still holds one (and the next task of the group can start sooner).
        await self.release(run)
        await self.finals.finalize(
            task, outcome.status, outcome.error, attempt=(run.aid, attempt_fields), extra=extra
        )

    async def release(self, run: Run) -> None:
        if run.slot:
            await self.store.release_slot(run.slot, run.task_id)

    async def flush_docs(self) -> None:
        """Write the output and progress that runs gathered to their task documents."""
        for run in list(self.state.runs.values()):
            async with run.lock:  # one writer of the task document at a time
                if run.doc_dirty and not run.done:
                    run.doc_dirty = False
                    await self.store.update_task(
                        run.task_id,
                        {
                            "output": run.output.text() or None,
                            "progress": run.progress,
                            "current_step": run.current_step,
                        },
                    )
