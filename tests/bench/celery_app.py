"""The Celery baseline of the storage bench (issue 11): Celery 5, Redis broker and Redis
result backend, one task doing the orchestrator's no-op work (spawn the CLI, wait, keep
its output). Needs the ``bench`` dependency group (``make bench`` installs it).

The bench starts the worker as a real process::

    BENCH_CELERY_URL=redis://127.0.0.1:PORT/13 \\
        python -m celery -A tests.bench.celery_app worker --pool prefork --concurrency 8

and submits with :func:`make_app` (one app per client thread) by the task's name."""

from __future__ import annotations

import os
import subprocess
from typing import Any

from celery import Celery

TASK_NAME = "bench.run_cli"
CLI = os.environ.get("BENCH_CELERY_CLI", "/bin/true")


def make_app(url: str) -> Any:
    """Stock settings but for JSON only and quiet start-up (no retry warning)."""
    celery = Celery("bench", broker=url, backend=url)
    celery.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        result_expires=3600,
        worker_hijack_root_logger=False,
    )
    return celery


app = make_app(os.environ.get("BENCH_CELERY_URL", "redis://127.0.0.1:6379/13"))


def run_cli(infra: str) -> dict[str, Any]:
    """What the orchestrator does for ``POST /workflows/servers/create``: run the CLI
    with the task's argv, capture its output, report the exit code."""
    proc = subprocess.run(
        [CLI, "servers", "create", "--infra", infra, "--settings", "c.k"],
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
    )
    return {"exit_code": proc.returncode, "output": proc.stdout[-1024:]}


app.task(name=TASK_NAME)(run_cli)
