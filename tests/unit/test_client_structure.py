"""The SDK's shape: the flat methods forward to the namespaces with the same
signatures, the sync client mirrors the async one namespace by namespace, and the
modules import each other in one direction (transport ← resources/events ← client ←
sync ← cli), with no server code."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import pytest

import provisioning_client
from provisioning_client import ProvisioningClient, SyncProvisioningClient
from provisioning_client.resources import (
    AuditAPI,
    AuthAPI,
    BatchesAPI,
    PoliciesAPI,
    RollbackAPI,
    StateAPI,
    SystemAPI,
    TasksAPI,
    UsersAPI,
    WebhooksAPI,
    WorkflowsAPI,
)

PACKAGE = Path(provisioning_client.__file__).parent

NAMESPACES: dict[str, type[Any]] = {
    "auth": AuthAPI,
    "users": UsersAPI,
    "policies": PoliciesAPI,
    "audit": AuditAPI,
    "system": SystemAPI,
    "tasks": TasksAPI,
    "workflows": WorkflowsAPI,
    "batches": BatchesAPI,
    "state": StateAPI,
    "rollback": RollbackAPI,
    "webhooks": WebhooksAPI,
}

# The flat calls the README, the package README and the tests use.
FLAT = """login refresh ensure_fresh_token logout me mfa_enroll mfa_verify service_token
introspect rotate_signing_key jwks use_token close events list_users iter_users
create_user get_user update_user delete_user reset_user_mfa unlock_user list_policies
iter_policies create_policy get_policy update_policy delete_policy evaluate_policy
audit_logs iter_audit_logs record_audit_event health ready metrics_text openapi
list_tasks iter_tasks get_task cancel_task task_attempts create_servers create_taskserv
create_cluster execute_batch plan_batch list_batches iter_batches get_batch cancel_batch
workflow_progress workflow_snapshots system_metrics system_health state_statistics
create_checkpoint list_checkpoints iter_checkpoints get_checkpoint rollback
restore_checkpoint rollback_statistics list_rollback_operations list_webhook_deliveries
get_webhook_delivery redeliver_webhook""".split()  # noqa: SIM905 - a word list


def _public(cls: type[Any]) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


@pytest.mark.parametrize("cls", [ProvisioningClient, SyncProvisioningClient])
def test_every_flat_call_exists(cls: type[Any]) -> None:
    missing = [name for name in FLAT if not hasattr(cls, name) and name != "rollback"]
    assert missing == []


def test_flat_methods_have_their_namespace_signature() -> None:
    forwarded = 0
    for name in _public(ProvisioningClient):
        method = getattr(ProvisioningClient, name)
        target = getattr(method, "__wrapped__", None)
        if target is None:
            continue
        forwarded += 1
        assert target.__qualname__.split(".")[0] in {c.__name__ for c in NAMESPACES.values()}
        assert inspect.signature(method) == inspect.signature(target), name
    assert forwarded >= 60


def test_sync_client_mirrors_the_async_one() -> None:
    assert inspect.signature(SyncProvisioningClient) == inspect.signature(ProvisioningClient)
    with SyncProvisioningClient("http://127.0.0.1:9", "http://127.0.0.1:9") as client:
        assert _public(ProvisioningClient) <= _public(SyncProvisioningClient) | {
            "auth",
            "users",
            "policies",
            "audit",
            "system",
            "tasks",
            "workflows",
            "batches",
            "state",
            "rollback",
            "webhooks",
            "transport",
            "http",  # the aiohttp session: async only
        }
        for attr, api in NAMESPACES.items():
            sync_namespace = getattr(client, attr)
            assert _public(api) == _public(type(sync_namespace)), attr
            for name in _public(api):
                sync_sig = inspect.signature(getattr(type(sync_namespace), name))
                assert sync_sig == inspect.signature(getattr(api, name)), f"{attr}.{name}"
        assert callable(client.rollback)


def _imports(path: Path) -> set[str]:
    """Modules a file imports, resolved to absolute ``provisioning_client...`` names."""
    package = ".".join(("provisioning_client", *path.relative_to(PACKAGE).parent.parts))
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.add(name)
            found |= {f"{name}.{alias.name}" for alias in node.names}
    return found


def test_layers_import_in_one_direction() -> None:
    def imports_of(*relative: str) -> set[str]:
        paths = [p for r in relative for p in sorted(PACKAGE.glob(r))]
        assert paths
        return set().union(*(_imports(p) for p in paths))

    # The event stream and the namespaces use the transport, never the client.
    lower = imports_of("transport.py", "events.py", "resources/*.py")
    assert not {m for m in lower if m.startswith("provisioning_client.client")}
    assert not {m for m in lower if m.startswith("provisioning_client.sync")}
    # Only the CLI uses the CLI; nothing in the SDK imports server code.
    sdk = imports_of("*.py", "resources/*.py")
    assert not {m for m in sdk if m.split(".")[:2] == ["provisioning_client", "cli"]}
    everything = imports_of("**/*.py")
    server = ("orchestrator", "control_center", "provisioning_common")
    assert not {m for m in everything if m.split(".")[0] in server}


def test_event_stream_uses_no_private_attribute_of_another_object() -> None:
    tree = ast.parse((PACKAGE / "events.py").read_text())
    private = [
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id == "self")
    ]
    assert private == []


def test_no_module_over_400_lines() -> None:
    sizes = {
        str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")
    }
    assert {name: n for name, n in sizes.items() if n > 400} == {}
