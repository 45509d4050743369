"""A recording ``PROVISIONING_CLI`` for multi-replica tests (the approach of
``tests/e2e/test_chaos.py``): a bash script that appends a JSON line per start and
end of a run (``PROVISIONING_TASK_ID``, ``PROVISIONING_ATTEMPT``, epoch time, its
parent = the replica's pid) to a log, so tests judge what really ran (on which
replica, when) rather than the engine's own records.

A run whose replica was SIGKILLed has a start and no end."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

# Bash, not Python: a start costs a few milliseconds on a loaded machine. `sleep & wait`
# lets the TERM trap run at once (cancellation, lost lease): such a run logs its end too.
_SCRIPT = """#!/bin/bash
ev() {{
  printf '{{"task": "%s", "attempt": %s, "event": "%s", "t": %s, "ppid": %s, "how": "%s"}}\\n' \\
    "$PROVISIONING_TASK_ID" "${{PROVISIONING_ATTEMPT:-0}}" "$1" "${{EPOCHREALTIME/,/.}}" \\
    "$PPID" "$2" >> '{log}'
}}
ev start ""
trap 'ev end term; exit 143' TERM
d={run}
case "$*" in *{slow_tag}*) d={slow_run};; esac
sleep "$d" & wait $!
ev end exit
"""


@dataclass
class Run:
    task: str
    attempt: int
    ppid: int
    start: float
    end: float | None = None


@dataclass
class CliLog:
    path: Path
    runs: list[Run] = field(default_factory=list)

    def read(self) -> list[Run]:
        """Every run so far, a start matched with the end of the same process."""
        open_runs: dict[tuple[str, int, int], Run] = {}
        runs: list[Run] = []
        if not self.path.exists():
            return runs
        for line in self.path.read_text().splitlines():
            if not line.endswith("}"):
                continue  # a line being written
            ev = json.loads(line)
            key = (ev["task"], int(ev["attempt"]), int(ev["ppid"]))
            if ev["event"] == "start":
                run = Run(ev["task"], int(ev["attempt"]), int(ev["ppid"]), float(ev["t"]))
                open_runs[key] = run
                runs.append(run)
            elif key in open_runs:
                open_runs.pop(key).end = float(ev["t"])
        self.runs = runs
        return runs

    def running_on(self, pid: int) -> list[Run]:
        """Runs started by the replica with ``pid`` that have not ended (yet)."""
        return [r for r in self.read() if r.ppid == pid and r.end is None]


def write_cli(
    directory: Path, *, run: float, slow_tag: str = "cli-slow", slow_run: float | None = None
) -> tuple[Path, CliLog]:
    """The script (executable) and its log, in ``directory``. Each run sleeps ``run``
    seconds, or ``slow_run`` when an argument contains ``slow_tag``."""
    log = CliLog(directory / "cli.jsonl")
    cli = directory / "recording-cli"
    cli.write_text(
        _SCRIPT.format(
            log=log.path, run=run, slow_tag=slow_tag, slow_run=run if slow_run is None else slow_run
        )
    )
    cli.chmod(0o755)
    return cli, log


def worker_pid(worker_id: str) -> int:
    """The process id in an engine worker id (``host:pid:random``)."""
    return int(worker_id.split(":")[1])


def replica_env(cli: Path, *, lease_seconds: float, database: str) -> dict[str, str]:
    """Environment of orchestrator replicas that share ``database`` and run ``cli``, with
    a short lease (so takeovers happen within a test) and a heartbeat well inside it."""
    return {
        "MONGODB_DATABASE": database,
        "PROVISIONING_CLI": str(cli),
        "ENGINE_LEASE_SECONDS": str(lease_seconds),
        "ENGINE_HEARTBEAT_SECONDS": "0.5",
        "ENGINE_CONCURRENCY": "8",
        "LOG_LEVEL": "WARNING",
    }
