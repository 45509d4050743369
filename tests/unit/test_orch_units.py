"""Pure parts of the orchestrator core: task documents, submission → argv (DESIGN §5
table), strict schemas, output capping, environment allow-list, the simulator's argv."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest
from marshmallow import ValidationError

from orchestrator.engine.model import (
    Compensation,
    Defaults,
    TaskSpec,
    backoff_seconds,
    task_document,
    wire_status,
)
from orchestrator.engine.process import PROGRESS_RE, TailBuffer, clean_env
from orchestrator.events.publisher import new_event_id
from orchestrator.workflows.model import cluster_spec, servers_spec, taskserv_spec
from orchestrator.workflows.schemas import ClusterCreate, ServersCreate, TaskservCreate
from orchestrator.workflows.service import body_hash, check_key
from provisioning_common.errors import BadRequest
from tests.support.orchestrator import SIMULATOR

DEFAULTS = Defaults("/usr/local/provisioning", 3600, 3)
NOW = datetime(2025, 9, 26, 10, 0, tzinfo=UTC)


def test_task_document_has_the_contract_fields() -> None:
    doc = task_document(
        TaskSpec(
            name="create_servers",
            subcommand=("servers", "create"),
            args=("--infra", "production", "--wait"),
        ),
        DEFAULTS,
        NOW,
    )
    assert doc["command"] == "/usr/local/provisioning servers create"
    assert doc["args"] == ["--infra", "production", "--wait"]
    assert doc["status"] == "Pending"
    assert doc["dependencies"] == []
    for key in (
        "created_at",
        "started_at",
        "completed_at",
        "output",
        "error",
        "progress",
        "current_step",
        "attempts",
    ):
        assert key in doc
    assert doc["timeout_seconds"] == 3600
    assert doc["max_attempts"] == 3
    with pytest.raises(ValueError, match="concurrency_limit"):
        task_document(TaskSpec(name="x", subcommand=("a",), concurrency_key="k"), DEFAULTS, NOW)
    with pytest.raises(ValueError, match="subcommand"):
        task_document(TaskSpec(name="x", subcommand=()), DEFAULTS, NOW)


def test_wire_status_backoff_and_event_ids() -> None:
    assert wire_status("Completed") == "completed"
    assert [backoff_seconds(2, n) for n in (1, 2, 3)] == [2, 4, 8]
    first, second = new_event_id(), new_event_id()
    assert len(first) == 29
    assert first < second


BODY = {"infra": "production", "settings": "config.k", "check_mode": True, "wait": True}


def test_submissions_follow_the_design_table() -> None:
    servers = servers_spec(BODY)
    assert servers.subcommand == ("servers", "create")
    assert servers.args == ("--infra", "production", "--settings", "config.k", "--check", "--wait")
    assert servers.compensation == Compensation(
        ("servers", "delete"), ("--infra", "production", "--settings", "config.k")
    )
    ts = taskserv_spec(
        {**BODY, "check_mode": False, "operation": "create", "taskserv": "kubernetes"}
    )
    assert ts.subcommand == ("taskserv", "create")
    assert ts.args == ("kubernetes", "--infra", "production", "--settings", "config.k", "--wait")
    assert ts.compensation is not None
    assert ts.compensation.subcommand == ("taskserv", "delete")
    cl = cluster_spec({**BODY, "wait": False, "operation": "delete", "cluster_type": "buildkit"})
    assert cl.subcommand == ("cluster", "delete")
    assert cl.compensation is None
    assert cl.args == ("buildkit", "--infra", "production", "--settings", "config.k", "--check")


@pytest.mark.parametrize(
    "bad",
    [
        {"infra": "-x"},
        {"infra": "a/b"},
        {"infra": ""},
        {"settings": "x" * 129},
        {"check_mode": "false"},
        {"check_mode": 0},
        {"wait": None},
        {"extra": True},
    ],
)
def test_schemas_are_strict(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ServersCreate().load({**BODY, **bad})


def test_schema_defaults_and_operations() -> None:
    assert ServersCreate().load({"infra": "p", "settings": "s"}) == {
        "infra": "p",
        "settings": "s",
        "check_mode": False,
        "wait": False,
    }
    with pytest.raises(ValidationError):
        TaskservCreate().load({**BODY, "operation": "explode", "taskserv": "k"})
    assert ClusterCreate().load({**BODY, "operation": "update", "cluster_type": "b"})


def test_idempotency_key_and_body_hash() -> None:
    assert check_key(None) is None
    assert check_key("abc-123") == "abc-123"
    for bad in ["", "x" * 256, "a b", "é"]:
        with pytest.raises(BadRequest):
            check_key(bad)
    assert body_hash("/p", {"a": 1, "b": 2}) == body_hash("/p", {"b": 2, "a": 1})
    assert body_hash("/p", {"a": 1}) != body_hash("/q", {"a": 1})


def test_tail_buffer_keeps_the_tail() -> None:
    buf = TailBuffer(10)
    for i in range(100):
        buf.append(f"{i:03d}\n")
    text = buf.text()
    assert text.endswith("098\n099\n")
    assert text.startswith("[... 390 earlier")
    assert TailBuffer(10).text() == ""


def test_clean_env_allow_list() -> None:
    env = clean_env(
        {
            "PATH": "/bin",
            "MONGODB_URL": "secret",
            "PROVISIONING_SIM_X": "1",
            "HOME": "/root",
            "SERVICE_CLIENT_SECRET": "s",
        },
        ["PATH", "HOME"],
        ["PROVISIONING_SIM_"],
    )
    assert env == {"PATH": "/bin", "HOME": "/root", "PROVISIONING_SIM_X": "1"}
    assert clean_env({}, ["PATH"], [])["PATH"]


def test_progress_protocol() -> None:
    match = PROGRESS_RE.match("::progress 42.5 Installing Kubernetes")
    assert match is not None
    assert match.groups() == ("42.5", "Installing Kubernetes")
    assert PROGRESS_RE.match("progress 5 x") is None


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["servers", "create", "--infra", "p", "--settings", "s", "--check", "--wait"], 0),
        (
            [
                "servers",
                "delete",
                "--provider",
                "upcloud",
                "--name",
                "web-01",
                "--plan",
                "1x",
                "--zone",
                "de-fra1",
            ],
            0,
        ),
        (["taskserv", "create", "kubernetes", "--provider", "aws"], 0),
        (["cluster", "delete", "buildkit", "--infra", "p", "--settings", "s"], 0),
        (["servers", "create", "--infra", "web-fail", "--settings", "s"], 1),
        (["taskserv", "create", "--provider", "aws"], 2),
        (["servers", "explode", "--infra", "p"], 2),
    ],
)
def test_simulator_argv_forms(argv: list[str], code: int) -> None:
    result = subprocess.run(
        [sys.executable, str(SIMULATOR), *argv],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PROVISIONING_SIM_DURATION": "0"},
        check=False,
    )
    assert result.returncode == code, result.stderr
    if code == 0:
        assert "::progress 100 Done" in result.stdout


def test_hub_drops_a_slow_consumer_without_stalling_the_others() -> None:
    from orchestrator.events.hub import EventHub

    hub = EventHub(None, queue_size=3)  # type: ignore[arg-type]  # dispatch needs no bus
    slow, fast = hub.add(), hub.add()
    for i in range(5):
        hub.dispatch({"id": str(i)})
        fast.queue.get_nowait()  # the fast one keeps up
    assert slow.overflowed.is_set()
    assert slow not in hub.subscribers
    assert not fast.overflowed.is_set()
    assert fast in hub.subscribers
