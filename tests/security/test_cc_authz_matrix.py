"""Authorization matrix: viewer / operator / auditor / admin against every endpoint of
the control center (as a process); nobody reads or edits another's data without the role."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.support.control_center import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    auth_header,
    create_user,
    login,
    start_control_center,
)
from tests.support.processes import ServiceProcess

T = 10
ROLES = ("admin", "operator", "viewer", "auditor")
PASSWORD = "Matrix-Pass-1234"


@dataclass
class World:
    url: str
    admin: str
    tokens: dict[str, str]
    ids: dict[str, str]
    policy_id: str

    def victim(self) -> str:
        return str(
            create_user(self.url, self.admin, f"victim-{uuid.uuid4().hex[:8]}", ["viewer"])["id"]
        )


@pytest.fixture(scope="module")
def world(stack: Any) -> Iterator[World]:
    proc: ServiceProcess = start_control_center(stack.env())
    try:
        admin = login(proc.url, ADMIN_USERNAME, ADMIN_PASSWORD)["token"]
        tokens, ids = {}, {}
        for role in ROLES:
            user = create_user(proc.url, admin, f"m-{role}", [role], PASSWORD)
            ids[role] = user["id"]
            tokens[role] = login(proc.url, f"m-{role}", PASSWORD)["token"]
        policy = requests.post(
            f"{proc.url}/policies",
            headers=auth_header(admin),
            json={
                "name": "matrix_policy",
                "rules": [{"effect": "Allow", "resource": "servers:*", "action": ["read"]}],
            },
            timeout=T,
        ).json()["data"]
        yield World(proc.url, admin, tokens, ids, policy["id"])
    finally:
        proc.stop()


Call = Callable[[World, str], tuple[str, str, dict[str, Any] | None]]


def _new_policy(w: World) -> str:
    body = {
        "name": f"p_{uuid.uuid4().hex[:8]}",
        "rules": [{"effect": "Allow", "resource": "x:*", "action": ["read"]}],
    }
    return str(
        requests.post(
            f"{w.url}/policies", json=body, headers=auth_header(w.admin), timeout=T
        ).json()["data"]["id"]
    )


# (name, request builder, roles allowed)
MATRIX: list[tuple[str, Call, set[str]]] = [
    ("me", lambda w, r: ("GET", "/auth/me", None), set(ROLES)),
    ("list users", lambda w, r: ("GET", "/users", None), {"admin", "auditor"}),
    (
        "create user",
        lambda w, r: (
            "POST",
            "/users",
            {
                "username": f"new-{uuid.uuid4().hex[:8]}",
                "email": "n@example.com",
                "password": PASSWORD,
                "roles": ["viewer"],
            },
        ),
        {"admin"},
    ),
    ("read own user", lambda w, r: ("GET", f"/users/{w.ids[r]}", None), set(ROLES)),
    ("read other user", lambda w, r: ("GET", f"/users/{w.victim()}", None), {"admin", "auditor"}),
    (
        "edit own email",
        lambda w, r: ("PUT", f"/users/{w.ids[r]}", {"email": f"{r}@example.org"}),
        set(ROLES),
    ),
    (
        "edit other user",
        lambda w, r: ("PUT", f"/users/{w.victim()}", {"email": "x@example.org"}),
        {"admin"},
    ),
    ("delete user", lambda w, r: ("DELETE", f"/users/{w.victim()}", None), {"admin"}),
    ("reset mfa", lambda w, r: ("DELETE", f"/users/{w.victim()}/mfa", None), {"admin"}),
    ("unlock user", lambda w, r: ("POST", f"/users/{w.victim()}/unlock", None), {"admin"}),
    ("list policies", lambda w, r: ("GET", "/policies", None), {"admin", "auditor"}),
    ("read policy", lambda w, r: ("GET", f"/policies/{w.policy_id}", None), {"admin", "auditor"}),
    (
        "create policy",
        lambda w, r: (
            "POST",
            "/policies",
            {
                "name": f"p_{uuid.uuid4().hex[:8]}",
                "rules": [{"effect": "Deny", "resource": "x:*", "action": ["read"]}],
            },
        ),
        {"admin"},
    ),
    (
        "update policy",
        lambda w, r: ("PUT", f"/policies/{w.policy_id}", {"version": "1.0.1"}),
        {"admin"},
    ),
    ("delete policy", lambda w, r: ("DELETE", f"/policies/{_new_policy(w)}", None), {"admin"}),
    (
        "evaluate self",
        lambda w, r: ("POST", "/policies/evaluate", {"action": "read", "resource": "servers:a"}),
        set(ROLES),
    ),
    (
        "evaluate other",
        lambda w, r: (
            "POST",
            "/policies/evaluate",
            {"user": {"roles": ["admin"]}, "action": "read", "resource": "servers:a"},
        ),
        {"admin", "auditor"},
    ),
    ("audit logs", lambda w, r: ("GET", "/audit/logs", None), {"admin", "auditor"}),
    (
        "audit ingest",
        lambda w, r: (
            "POST",
            "/audit/events",
            {
                "id": uuid.uuid4().hex,
                "timestamp": "2026-01-01T00:00:00Z",
                "user_id": None,
                "action": "x",
                "resource": "y",
                "result": "success",
            },
        ),
        set(),
    ),
    ("introspect", lambda w, r: ("POST", "/auth/introspect", {"token": w.admin}), set()),
    ("rotate keys", lambda w, r: ("POST", "/keys/rotate", None), {"admin"}),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("name", "call", "allowed"), MATRIX, ids=[m[0] for m in MATRIX])
def test_matrix(world: World, role: str, name: str, call: Call, allowed: set[str]) -> None:
    method, path, body = call(world, role)
    resp = requests.request(
        method, f"{world.url}{path}", json=body, headers=auth_header(world.tokens[role]), timeout=T
    )
    if role in allowed:
        assert resp.status_code in (200, 201), f"{role} {name}: {resp.status_code} {resp.text}"
    else:
        assert resp.status_code in (401, 403), f"{role} {name}: {resp.status_code} {resp.text}"
        assert resp.json()["success"] is False


@pytest.mark.parametrize("role", ROLES)
def test_no_token_is_401_everywhere(world: World, role: str) -> None:
    for _name, call, _allowed in MATRIX:
        method, path, body = call(world, role)
        resp = requests.request(method, f"{world.url}{path}", json=body, timeout=T)
        assert resp.status_code == 401, f"{method} {path}: {resp.status_code}"
        assert resp.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("role", ["operator", "viewer", "auditor"])
def test_mass_assignment_rejected(world: World, role: str) -> None:
    for body in ({"roles": ["admin"]}, {"enabled": True}, {"roles": ["admin"], "email": "a@b.co"}):
        resp = requests.put(
            f"{world.url}/users/{world.ids[role]}",
            json=body,
            headers=auth_header(world.tokens[role]),
            timeout=T,
        )
        assert resp.status_code == 422, resp.text
    me = requests.get(
        f"{world.url}/auth/me", headers=auth_header(world.tokens[role]), timeout=T
    ).json()["data"]
    assert me["roles"] == [role]


def test_own_password_change_needs_current_password(world: World) -> None:
    user = create_user(world.url, world.admin, "pw-changer", ["viewer"], PASSWORD)
    token = login(world.url, "pw-changer", PASSWORD)["token"]
    url = f"{world.url}/users/{user['id']}"
    missing = requests.put(
        url, json={"password": "Another-Pass-123"}, headers=auth_header(token), timeout=T
    )
    assert missing.status_code == 422
    wrong = requests.put(
        url,
        json={"password": "Another-Pass-123", "current_password": "nope"},
        headers=auth_header(token),
        timeout=T,
    )
    assert wrong.status_code == 401
    weak = requests.put(
        url,
        json={"password": "short", "current_password": PASSWORD},
        headers=auth_header(token),
        timeout=T,
    )
    assert weak.status_code == 422
    good = requests.put(
        url,
        json={"password": "Another-Pass-123", "current_password": PASSWORD},
        headers=auth_header(token),
        timeout=T,
    )
    assert good.status_code == 200
    # the password change ended the old sessions
    assert (
        requests.get(f"{world.url}/auth/me", headers=auth_header(token), timeout=T).status_code
        == 401
    )
    assert login(world.url, "pw-changer", "Another-Pass-123")["token"]


def test_last_admin_cannot_be_disabled_demoted_or_deleted(world: World) -> None:
    admins = requests.get(
        f"{world.url}/users",
        params={"role": "admin", "enabled": "true"},
        headers=auth_header(world.admin),
        timeout=T,
    ).json()["data"]
    # demote every admin but the bootstrap one, then try to remove the last
    me = requests.get(f"{world.url}/auth/me", headers=auth_header(world.admin), timeout=T).json()[
        "data"
    ]
    for other in admins:
        if other["id"] != me["id"]:
            requests.put(
                f"{world.url}/users/{other['id']}",
                json={"roles": ["viewer"]},
                headers=auth_header(world.admin),
                timeout=T,
            )
    for method, body in (
        ("PUT", {"enabled": False}),
        ("PUT", {"roles": ["viewer"]}),
        ("DELETE", None),
    ):
        resp = requests.request(
            method,
            f"{world.url}/users/{me['id']}",
            json=body,
            headers=auth_header(world.admin),
            timeout=T,
        )
        assert resp.status_code == 409, resp.text
    # restore the matrix admin
    requests.put(
        f"{world.url}/users/{world.ids['admin']}",
        json={"roles": ["admin"]},
        headers=auth_header(world.admin),
        timeout=T,
    )
    world.tokens["admin"] = login(world.url, "m-admin", PASSWORD)["token"]


def test_duplicate_username_is_409(world: World) -> None:
    body = {
        "username": "M-Viewer",
        "email": "dup@example.com",
        "password": PASSWORD,
        "roles": ["viewer"],
    }
    resp = requests.post(
        f"{world.url}/users", json=body, headers=auth_header(world.admin), timeout=T
    )
    assert resp.status_code == 409
