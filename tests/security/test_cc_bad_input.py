"""Bad input on every POST/PUT of the control center (as a process): oversized body
413, invalid JSON 400, unknown fields and bad types 422 — envelope, no stack trace,
nothing written."""

from __future__ import annotations

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
    service_token,
    start_control_center,
)
from tests.support.processes import ServiceProcess

T = 10


@dataclass
class Ctx:
    url: str
    admin: str
    service: str
    user_id: str
    user_token: str
    policy_id: str
    refresh: str

    def header(self, kind: str) -> dict[str, str]:
        token = {"admin": self.admin, "service": self.service, "user": self.user_token}.get(kind)
        headers = {"Content-Type": "application/json"}
        if token:
            headers.update(auth_header(token))
        return headers


@pytest.fixture(scope="module")
def ctx(stack: Any) -> Iterator[Ctx]:
    proc: ServiceProcess = start_control_center(stack.env(), MAX_BODY_BYTES="65536")
    try:
        session = login(proc.url, ADMIN_USERNAME, ADMIN_PASSWORD)
        admin = session["token"]
        user = create_user(proc.url, admin, "input-user", ["viewer"], "Input-User-Pass1")
        user_token = login(proc.url, "input-user", "Input-User-Pass1")["token"]
        policy = requests.post(
            f"{proc.url}/policies",
            headers=auth_header(admin),
            json={
                "name": "input_policy",
                "rules": [{"effect": "Allow", "resource": "*", "action": ["read"]}],
            },
            timeout=T,
        ).json()["data"]
        yield Ctx(
            proc.url,
            admin,
            service_token(proc.url),
            user["id"],
            user_token,
            policy["id"],
            session["refresh_token"],
        )
    finally:
        proc.stop()


# (method, path builder, auth kind, a valid body, a field to corrupt with a bad type)
Endpoint = tuple[str, Callable[[Ctx], str], str, dict[str, Any], str]
ENDPOINTS: list[Endpoint] = [
    (
        "POST",
        lambda c: "/auth/login",
        "none",
        {"username": "admin", "password": "x-password"},
        "username",
    ),
    ("POST", lambda c: "/auth/refresh", "none", {"token": "abc"}, "token"),
    (
        "POST",
        lambda c: "/auth/token",
        "none",
        {"grant_type": "client_credentials", "client_id": "a", "client_secret": "b"},
        "client_id",
    ),
    ("POST", lambda c: "/auth/introspect", "service", {"token": "abc"}, "token"),
    ("POST", lambda c: "/auth/mfa/enroll", "user", {"password": "Input-User-Pass1"}, "password"),
    ("POST", lambda c: "/auth/mfa/verify", "user", {"code": "123456"}, "code"),
    (
        "POST",
        lambda c: "/users",
        "admin",
        {
            "username": "bad-input-new",
            "email": "b@example.com",
            "password": "Good-Pass-1234",
            "roles": ["viewer"],
        },
        "roles",
    ),
    ("PUT", lambda c: f"/users/{c.user_id}", "admin", {"email": "c@example.com"}, "email"),
    (
        "POST",
        lambda c: "/policies",
        "admin",
        {
            "name": "bad_input_new",
            "rules": [{"effect": "Allow", "resource": "*", "action": ["read"]}],
        },
        "rules",
    ),
    ("PUT", lambda c: f"/policies/{c.policy_id}", "admin", {"version": "2.0.0"}, "version"),
    (
        "POST",
        lambda c: "/policies/evaluate",
        "admin",
        {"action": "read", "resource": "servers:a"},
        "action",
    ),
    (
        "POST",
        lambda c: "/audit/events",
        "service",
        {
            "id": "evt-bad-input",
            "timestamp": "2026-01-01T00:00:00Z",
            "action": "a",
            "resource": "r",
            "result": "success",
        },
        "timestamp",
    ),
]
IDS = [f"{m} {p(Ctx('', '', '', 'ID', '', 'PID', ''))}" for m, p, *_ in ENDPOINTS]


def send(ctx: Ctx, ep: Endpoint, data: bytes) -> requests.Response:
    method, path, kind, _, _ = ep
    return requests.request(
        method, f"{ctx.url}{path(ctx)}", data=data, headers=ctx.header(kind), timeout=T
    )


def assert_error(resp: requests.Response, status: int) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["success"] is False
    assert isinstance(body["error"], str)
    assert "Traceback" not in resp.text
    assert 'File "' not in resp.text


def counts(ctx: Ctx) -> tuple[int, int, int]:
    hdr = auth_header(ctx.admin)
    users = requests.get(f"{ctx.url}/users", headers=hdr, timeout=T).headers["X-Total-Count"]
    pols = requests.get(f"{ctx.url}/policies", headers=hdr, timeout=T).headers["X-Total-Count"]
    audit = requests.get(
        f"{ctx.url}/audit/logs", params={"action": "a"}, headers=hdr, timeout=T
    ).headers["X-Total-Count"]
    return int(users), int(pols), int(audit)


@pytest.mark.parametrize("ep", ENDPOINTS, ids=IDS)
def test_oversized_body_is_413(ctx: Ctx, ep: Endpoint) -> None:
    big = b'{"x": "' + b"a" * 200_000 + b'"}'
    assert_error(send(ctx, ep, big), 413)


@pytest.mark.parametrize("ep", ENDPOINTS, ids=IDS)
def test_invalid_json_is_400(ctx: Ctx, ep: Endpoint) -> None:
    before = counts(ctx)
    for raw in (b"{", b"not json", b"\xff\xfe", b'{"a": }'):
        assert_error(send(ctx, ep, raw), 400)
    assert_error(send(ctx, ep, b""), 400)
    assert counts(ctx) == before


@pytest.mark.parametrize("ep", ENDPOINTS, ids=IDS)
def test_unknown_fields_are_422(ctx: Ctx, ep: Endpoint) -> None:
    import json

    before = counts(ctx)
    body = {**ep[3], "is_admin": True}
    resp = send(ctx, ep, json.dumps(body).encode())
    assert_error(resp, 422)
    assert "is_admin" in resp.json()["details"]
    assert counts(ctx) == before


@pytest.mark.parametrize("ep", ENDPOINTS, ids=IDS)
def test_bad_types_are_422(ctx: Ctx, ep: Endpoint) -> None:
    import json

    before = counts(ctx)
    field = ep[4]
    for bad in (12345, {"nested": 1}, True):
        body = {**ep[3], field: bad}
        resp = send(ctx, ep, json.dumps(body).encode())
        assert_error(resp, 422)
        assert field in resp.json()["details"]
    for top in (b"[]", b'"text"', b"42", b"null"):
        assert_error(send(ctx, ep, top), 422)
    assert counts(ctx) == before


def test_invalid_values(ctx: Ctx) -> None:
    hdr = auth_header(ctx.admin)
    bad_users = [
        {"username": "x", "email": "ok@example.com", "password": "Good-Pass-1234"},
        {"username": "ok-name", "email": "not-an-email", "password": "Good-Pass-1234"},
        {"username": "ok-name", "email": "ok@example.com", "password": "short"},
        {"username": "ok-name", "email": "ok@example.com", "password": "alllowercaseletters"},
        {
            "username": "ok-name",
            "email": "ok@example.com",
            "password": "Good-Pass-1234",
            "roles": ["root"],
        },
        {
            "username": "ok-name",
            "email": "ok@example.com",
            "password": "Good-Pass-1234",
            "roles": ["service"],
        },
        {"username": "ok name", "email": "ok@example.com", "password": "Good-Pass-1234"},
        {
            "username": "ok-name",
            "email": "ok@example.com",
            "password": "Good-Pass-1234",
            "enabled": "yes",
        },
    ]
    before = counts(ctx)
    for body in bad_users:
        assert_error(requests.post(f"{ctx.url}/users", json=body, headers=hdr, timeout=T), 422)
    assert_error(
        requests.put(f"{ctx.url}/users/{ctx.user_id}", json={}, headers=hdr, timeout=T), 422
    )
    assert counts(ctx) == before


def test_unknown_ids_are_404(ctx: Ctx) -> None:
    hdr = auth_header(ctx.admin)
    for method, path, body in (
        ("GET", "/users/nope", None),
        ("PUT", "/users/nope", {"email": "a@example.com"}),
        ("DELETE", "/users/nope", None),
        ("GET", "/policies/nope", None),
        ("PUT", "/policies/nope", {"version": "1"}),
        ("DELETE", "/policies/nope", None),
    ):
        assert_error(
            requests.request(method, f"{ctx.url}{path}", json=body, headers=hdr, timeout=T), 404
        )


def test_bad_query_parameters_are_400(ctx: Ctx) -> None:
    hdr = auth_header(ctx.admin)
    for path, params in (
        ("/users", {"limit": "abc"}),
        ("/users", {"limit": "5000"}),
        ("/users", {"role": "root"}),
        ("/users", {"bogus": "1"}),
        ("/audit/logs", {"from": "yesterday"}),
        ("/audit/logs", {"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}),
        ("/audit/logs", {"offset": "-1"}),
    ):
        assert_error(requests.get(f"{ctx.url}{path}", params=params, headers=hdr, timeout=T), 400)
