"""Batch, state and rollback settings (env), validated at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from provisioning_common.config import EnvReader


@dataclass(frozen=True)
class BatchSettings:
    max_parallel_limit: int = 100
    coordinator_interval_seconds: float = 1.0
    # A batch whose tasks were not all created this long after submission (its
    # submitter died half-way) has the missing ones created by the coordinator.
    orphan_after_seconds: float = 60.0
    rollback_wait_seconds: float = 600.0
    # Tasks one batch may expand to (500 operations x 200 items would be 100,000).
    max_tasks: int = 1000
    # Four-eyes: the submitter of a batch may not approve its own approval gates.
    allow_self_approval: bool = False

    @classmethod
    def from_env(cls, reader: EnvReader) -> BatchSettings:
        return cls(
            max_parallel_limit=reader.int("BATCH_MAX_PARALLEL_LIMIT", 100, low=1, high=10_000),
            coordinator_interval_seconds=reader.float(
                "BATCH_COORDINATOR_INTERVAL_SECONDS", 1.0, low=0.05
            ),
            orphan_after_seconds=reader.float("BATCH_ORPHAN_AFTER_SECONDS", 60.0, low=0.5),
            rollback_wait_seconds=reader.float("ROLLBACK_WAIT_SECONDS", 600.0, low=1.0),
            max_tasks=reader.int("BATCH_MAX_TASKS", 1000, low=1, high=1_000_000),
            allow_self_approval=reader.bool("BATCH_ALLOW_SELF_APPROVAL", False),
        )
