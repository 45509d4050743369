"""Batch validation, DAG rules, waves and task expansion (pure code)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from orchestrator.batches import model
from orchestrator.batches.model import DagError, Operation, TaskView
from orchestrator.batches.schemas import BatchSubmissionSchema
from provisioning_common.errors import UnprocessableEntity
from provisioning_common.validation import validate
from tests.support.contract import CONTRACT_BATCH


def load(body: dict[str, Any], max_limit: int = 50) -> dict[str, Any]:
    return validate(BatchSubmissionSchema(max_parallel_limit=max_limit), body)


def test_contract_batch_is_valid() -> None:
    data = load(CONTRACT_BATCH)
    assert data["storage_backend"] == "surrealdb"
    ops = [Operation.from_dict(o) for o in data["operations"]]
    assert model.waves(ops) == [["upcloud_servers"], ["aws_taskservs"]]


def _broken(mutate: Any) -> dict[str, Any]:
    body = copy.deepcopy(CONTRACT_BATCH)
    mutate(body)
    return body


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b.update(version="1.0"), "version"),
        (lambda b: b.update(parallel_limit=0), "parallel_limit"),
        (lambda b: b.update(parallel_limit=51), "parallel_limit"),
        (lambda b: b.update(parallel_limit="5"), "parallel_limit"),
        (lambda b: b.update(extra=1), "extra"),
        (lambda b: b["operations"][1].update(id="upcloud_servers"), "operations"),
        (lambda b: b["operations"][0].update(id="../etc"), "operations"),
        (lambda b: b["operations"][0].update(type="vm_batch"), "operations"),
        (lambda b: b["operations"][0].pop("server_configs"), "operations"),
        (lambda b: b["operations"][0].update(taskservs=["x"]), "operations"),
        (lambda b: b["operations"][0]["server_configs"][0].pop("zone"), "operations"),
        (lambda b: b["operations"][1].update(taskservs=["--rm"]), "operations"),
        (lambda b: b["operations"][1].update(provider=""), "operations"),
        (lambda b: b.update(operations=[]), "operations"),
    ],
)
def test_invalid_bodies_are_422(mutate: Any, field: str) -> None:
    with pytest.raises(UnprocessableEntity) as exc:
        load(_broken(mutate))
    assert exc.value.details is not None
    assert field in exc.value.details


def test_unknown_dependency_and_cycle_are_named() -> None:
    ops = [
        Operation("a", "cluster_batch", "aws", ("c",), cluster_type="k8s"),
        Operation("b", "cluster_batch", "aws", ("a",), cluster_type="k8s"),
        Operation("c", "cluster_batch", "aws", ("b",), cluster_type="k8s"),
    ]
    with pytest.raises(DagError) as exc:
        model.check_dag(ops)
    assert "a -> c -> b -> a" in str(exc.value) or "cycle" in str(exc.value)
    assert exc.value.path[0] == exc.value.path[-1]
    with pytest.raises(DagError, match="unknown operation 'zz'"):
        model.check_dag([Operation("a", "cluster_batch", "aws", ("zz",), cluster_type="k")])


def test_expansion_commands_and_dependencies() -> None:
    ops = [Operation.from_dict(o) for o in load(CONTRACT_BATCH)["operations"]]
    tasks = model.expand_batch("b1", ops)
    assert len(tasks) == 5
    servers = [t for t in tasks if t.operation_id == "upcloud_servers"]
    assert servers[0].command("/usr/local/provisioning") == "/usr/local/provisioning servers create"
    assert servers[0].args == (
        "--provider",
        "upcloud",
        "--name",
        "web-01",
        "--plan",
        "1xCPU-2GB",
        "--zone",
        "de-fra1",
    )
    assert servers[0].compensation_subcommand == ("servers", "delete")
    ts = [t for t in tasks if t.operation_id == "aws_taskservs"]
    assert ts[0].args == ("kubernetes", "--provider", "aws")
    assert ts[0].compensation_command("/p") == "/p taskserv delete"
    assert set(ts[0].dependencies) == {s.id for s in servers}
    # Deterministic ids: re-deriving gives the same tasks.
    assert [t.id for t in model.expand_batch("b1", ops)] == [t.id for t in tasks]


def test_status_derivation() -> None:
    p, r, c, f, x = "Pending", "Running", "Completed", "Failed", "Cancelled"
    assert model.operation_status([TaskView("1", p)]) == p
    assert model.operation_status([TaskView("1", c), TaskView("2", p)]) == r
    assert model.operation_status([TaskView("1", c), TaskView("2", c)]) == c
    assert model.operation_status([TaskView("1", f), TaskView("2", x)]) == f
    assert model.operation_status([TaskView("1", x)]) == x
    assert model.operation_progress([TaskView("1", c), TaskView("2", p)]) == 50.0
    assert model.batch_status([c, c], False) == c
    assert model.batch_status([f, x], False) == f
    assert model.batch_status([p, p], False) == p
    assert model.batch_status([c, r], True) == r


def test_large_random_dag_waves() -> None:
    import random

    rng = random.Random(7)
    ops = []
    for i in range(300):
        deps = tuple(f"op{j}" for j in rng.sample(range(i), min(i, rng.randint(0, 3))))
        ops.append(Operation(f"op{i}", "cluster_batch", "aws", deps, cluster_type="k"))
    waves = model.waves(ops)
    level = {op: n for n, wave in enumerate(waves) for op in wave}
    for op in ops:
        assert all(level[d] < level[op.id] for d in op.dependencies)


@pytest.mark.parametrize(
    ("batch", "active"),
    [
        ({"status": "Running"}, True),
        ({"status": "Completed", "rollback": None}, False),
        ({"status": "Failed", "rollback_enabled": True, "rollback": None}, True),
        ({"status": "Failed", "rollback_enabled": False, "rollback": None}, False),
        ({"status": "Failed", "rollback_enabled": True, "rollback": {"status": "Running"}}, True),
        (
            {"status": "Failed", "rollback_enabled": True, "rollback": {"status": "Completed"}},
            False,
        ),
        ({"status": "Cancelled", "rollback": None}, False),
    ],
)
def test_needs_coordinator(batch: dict[str, Any], active: bool) -> None:
    assert model.needs_coordinator(batch) is active
