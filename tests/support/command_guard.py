"""Record every MongoDB command a service sends and check it against the storage
rule (``provisioning_common.storage_rules``, ``docs/storage.md``).

A :class:`CommandGuard` is a ``pymongo.monitoring.CommandListener``. The
``command_guard`` fixture installs it in every client the services open during the
test (it wraps ``provisioning_common.webapp.open_client``), so the apps are built
exactly as in production. Nothing is recorded until :meth:`CommandGuard.start`:
start it once start-up has settled, so that index creation and start-up sweeps are
not counted. Each command is classified when it is sent, with the code that sent it
(the innermost project frames of the call stack: ``file:function``)::

    async def test_x(command_guard: CommandGuard) -> None:
        command_guard.watch("orch_db", ORCHESTRATOR_BOUNDED)
        ... build and start the app ...
        command_guard.start()
        ... drive it ...
        command_guard.stop()
        assert not command_guard.violations(), command_guard.report()
"""

from __future__ import annotations

import functools
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from pymongo import monitoring

import provisioning_common.webapp
from provisioning_common.mongo import open_client
from provisioning_common.storage_rules import Access, Violation, classify

from .stack import ROOT

# Frames from these trees are "project code"; pymongo, asyncio and tests are skipped.
_PROJECT = tuple(str(ROOT / p) for p in ("services", "libs"))
_SKIP = (str(ROOT / "libs/common/src/provisioning_common/mongo.py"),)
_CHAIN = 3  # project frames kept per command: the repository method and its callers


@dataclass(frozen=True, slots=True)
class Recorded:
    """One command as sent: its classification and where it came from."""

    database: str
    command_name: str
    collection: str
    access: Access
    violations: tuple[Violation, ...]
    location: str


def _short(filename: str) -> str:
    path = Path(filename)
    parts = path.parts
    if "src" in parts:  # services/orchestrator/src/orchestrator/x.py -> orchestrator/x.py
        return "/".join(parts[len(parts) - parts[::-1].index("src") :])
    return str(path)


def _code_location(frame: FrameType | None) -> str:
    """``file:function`` of the innermost project frames, innermost first."""
    found: list[str] = []
    while frame is not None and len(found) < _CHAIN:
        name, code = frame.f_code.co_filename, frame.f_code
        # comprehension frames (``<listcomp>``) repeat the function that holds them
        if name.startswith(_PROJECT) and not name.startswith(_SKIP) and code.co_name[0] != "<":
            found.append(f"{_short(name)}:{code.co_qualname}")
        frame = frame.f_back
    return " <- ".join(found) if found else "<outside project code>"


class CommandGuard(monitoring.CommandListener):
    """Records the commands sent to the watched databases while started."""

    def __init__(self) -> None:
        self._bounded: dict[str, frozenset[str]] = {}
        self._lock = threading.Lock()
        self.recording = False
        self.records: list[Recorded] = []

    # ------------------------------------------------------------ control
    def watch(self, database: str, bounded: Iterable[str]) -> None:
        """Check commands sent to ``database``; ``bounded`` are its collections
        bounded by in-flight work."""
        self._bounded[database] = frozenset(bounded)

    def start(self) -> None:
        with self._lock:
            self.records = []
            self.recording = True

    def stop(self) -> None:
        self.recording = False

    # ------------------------------------------------------------ listener
    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if not self.recording or event.database_name not in self._bounded:
            return
        name = event.command_name
        access, problems = classify(name, event.command, self._bounded[event.database_name])
        target = event.command.get(name)
        if name == "getMore":
            target = event.command.get("collection")
        record = Recorded(
            database=event.database_name,
            command_name=name,
            collection=target if isinstance(target, str) else "",
            access=access,
            violations=tuple(problems),
            location=_code_location(sys._getframe(1)),
        )
        with self._lock:
            self.records.append(record)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    # ------------------------------------------------------------ results
    def violations(self) -> list[Recorded]:
        return [r for r in self.records if r.violations]

    def summary(self) -> dict[str, int]:
        """How many commands of each access kind were recorded."""
        return dict(Counter(str(r.access) for r in self.records))

    def grouped(self) -> list[tuple[Violation, str, int]]:
        """Distinct (violation, code location) pairs with how often each was sent,
        most frequent first."""
        counts: Counter[tuple[Violation, str]] = Counter(
            (v, r.location) for r in self.records for v in r.violations
        )
        return [(v, loc, n) for (v, loc), n in counts.most_common()]

    def report(self) -> str:
        lines = [
            f"{len(self.violations())} of {len(self.records)} recorded commands break the "
            f"storage rule (docs/storage.md); by kind: {self.summary()}"
        ]
        for violation, location, count in self.grouped():
            lines.append(f"  {count:4d}x {violation}\n         at {location}")
        return "\n".join(lines)

    def collections(self) -> Mapping[str, Counter[str]]:
        """Per collection, how often each command was sent (for diagnostics)."""
        out: dict[str, Counter[str]] = {}
        for r in self.records:
            out.setdefault(r.collection, Counter())[r.command_name] += 1
        return out


@pytest.fixture
def command_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[CommandGuard]:
    """A :class:`CommandGuard` attached to every MongoDB client the services open in
    this test (through ``provisioning_common.webapp.open_client``)."""
    guard = CommandGuard()

    def guarded(url: str, **kwargs: Any) -> Any:
        listeners = [*kwargs.pop("event_listeners", ()), guard]
        return open_client(url, event_listeners=listeners, **kwargs)

    monkeypatch.setattr(
        provisioning_common.webapp, "open_client", functools.update_wrapper(guarded, open_client)
    )
    try:
        yield guard
    finally:
        guard.stop()
