"""Bad input on every orchestrator endpoint: the contract's envelope, the right status,
no stack trace, nothing written."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.e2e.conftest import Services

pytestmark = pytest.mark.e2e

GOOD: dict[str, dict[str, Any]] = {
    "servers": {"infra": "production", "settings": "config.k", "check_mode": False, "wait": True},
    "taskserv": {
        "operation": "create",
        "taskserv": "kubernetes",
        "infra": "production",
        "settings": "config.k",
    },
    "cluster": {
        "operation": "create",
        "cluster_type": "buildkit",
        "infra": "production",
        "settings": "config.k",
    },
}


def total(services: Services) -> int:
    resp = requests.get(f"{services.orch_url}/tasks", headers=services.headers(), timeout=10)
    return int(resp.headers["X-Total-Count"])


def assert_error(resp: requests.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, (resp.status_code, resp.text)
    body: dict[str, Any] = resp.json()
    assert body["success"] is False
    assert isinstance(body["error"], str)
    assert "Traceback" not in resp.text
    return body


@pytest.mark.parametrize(
    "query",
    [
        "status=bogus",
        "status=completed",
        "limit=0",
        "limit=abc",
        "limit=1001",
        "offset=-1",
        "offset=x",
        "unknown=1",
    ],
)
def test_list_tasks_bad_query_is_400(services: Services, query: str) -> None:
    resp = requests.get(
        f"{services.orch_url}/tasks?{query}", headers=services.headers(), timeout=10
    )
    assert_error(resp, 400)


@pytest.mark.parametrize(
    "path",
    [
        "/tasks/{id}",
        "/tasks/{id}/attempts",
    ],
)
@pytest.mark.parametrize(
    "task_id", ["not-a-uuid", "00000000-0000-4000-8000-00000000dead", "%00", "x" * 300]
)
def test_unknown_or_malformed_task_is_404(services: Services, path: str, task_id: str) -> None:
    resp = requests.get(
        services.orch_url + path.format(id=task_id), headers=services.headers(), timeout=10
    )
    assert assert_error(resp, 404)["error"] == "Task not found"


@pytest.mark.parametrize("task_id", ["not-a-uuid", "00000000-0000-4000-8000-00000000beef"])
def test_cancel_unknown_task_is_404(services: Services, task_id: str) -> None:
    resp = requests.post(
        f"{services.orch_url}/tasks/{task_id}/cancel", headers=services.headers(), timeout=10
    )
    assert_error(resp, 404)


BAD_BODIES: list[tuple[str, Any, int]] = [
    ("servers", b"not json", 400),
    ("servers", b"", 400),
    ("servers", b"[1, 2]", 422),
    ("servers", b'"text"', 422),
    ("servers", {}, 422),
    ("servers", {**GOOD["servers"], "extra": 1}, 422),
    ("servers", {**GOOD["servers"], "check_mode": "true"}, 422),
    ("servers", {**GOOD["servers"], "wait": 1}, 422),
    ("servers", {**GOOD["servers"], "infra": "-rf"}, 422),
    ("servers", {**GOOD["servers"], "infra": "../etc"}, 422),
    ("servers", {**GOOD["servers"], "infra": "a b"}, 422),
    ("servers", {**GOOD["servers"], "infra": ""}, 422),
    ("servers", {**GOOD["servers"], "infra": 5}, 422),
    ("servers", {**GOOD["servers"], "infra": None}, 422),
    ("servers", {**GOOD["servers"], "settings": "x" * 200}, 422),
    ("servers", {**GOOD["servers"], "settings": "a;rm -rf /"}, 422),
    ("taskserv", {**GOOD["taskserv"], "operation": "destroy"}, 422),
    ("taskserv", {**GOOD["taskserv"], "taskserv": "--help"}, 422),
    ("taskserv", {k: v for k, v in GOOD["taskserv"].items() if k != "operation"}, 422),
    ("cluster", {**GOOD["cluster"], "cluster_type": "$(id)"}, 422),
    ("cluster", {**GOOD["cluster"], "operation": ["create"]}, 422),
    ("cluster", GOOD["servers"], 422),
]


@pytest.mark.parametrize(("kind", "body", "status"), BAD_BODIES)
def test_bad_submission_writes_nothing(
    services: Services, kind: str, body: Any, status: int
) -> None:
    before = total(services)
    url = f"{services.orch_url}/workflows/{kind}/create"
    if isinstance(body, bytes):
        resp = requests.post(
            url,
            data=body,
            timeout=10,
            headers={**services.headers(), "Content-Type": "application/json"},
        )
    else:
        resp = requests.post(url, json=body, headers=services.headers(), timeout=10)
    payload = assert_error(resp, status)
    if status == 422 and isinstance(body, dict) and body:
        assert isinstance(payload.get("details"), dict)
    assert total(services) == before


def test_oversized_body_is_413(services: Services) -> None:
    before = total(services)
    body = {**GOOD["servers"], "settings": "x" * (2 * 1024 * 1024)}
    resp = requests.post(
        f"{services.orch_url}/workflows/servers/create",
        json=body,
        headers=services.headers(),
        timeout=30,
    )
    assert_error(resp, 413)
    assert total(services) == before


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\tkey", "ключ"])
def test_bad_idempotency_key_is_400(services: Services, key: str) -> None:
    before = total(services)
    resp = requests.post(
        f"{services.orch_url}/workflows/servers/create",
        json=GOOD["servers"],
        headers={**services.headers(), "Idempotency-Key": key.encode().decode("latin-1")},
        timeout=10,
    )
    assert_error(resp, 400)
    assert total(services) == before


def test_unsupported_version_and_method(services: Services) -> None:
    resp = requests.get(
        f"{services.orch_url}/tasks",
        timeout=10,
        headers={**services.headers(), "Accept": "application/vnd.provisioning.v9+json"},
    )
    assert_error(resp, 406)
    resp = requests.delete(f"{services.orch_url}/tasks", headers=services.headers(), timeout=10)
    assert_error(resp, 405)
    resp = requests.get(
        f"{services.orch_url}/workflows/servers/create", headers=services.headers(), timeout=10
    )
    assert_error(resp, 405)
