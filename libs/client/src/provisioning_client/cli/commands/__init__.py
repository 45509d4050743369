"""provctl's commands, one module per command group. Each module's ``register(cli)``
adds its subcommands; :data:`GROUPS` is the order they appear in ``provctl --help``."""

from __future__ import annotations

from collections.abc import Callable

from ..registry import Commands
from . import (
    audit,
    batch,
    checkpoint,
    mfa,
    policies,
    rollback,
    session,
    state,
    tasks,
    users,
    watch,
    webhooks,
    workflow,
)

GROUPS: tuple[Callable[[Commands], None], ...] = (
    session.register,
    workflow.register,
    batch.register,
    watch.register,
    tasks.register,
    checkpoint.register,
    rollback.register,
    state.register,
    users.register,
    mfa.register,
    policies.register,
    audit.register,
    webhooks.register,
)
