"""A user journey over HTTP against the control center running as a process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pyotp
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

pytestmark = pytest.mark.e2e
T = 10


@pytest.fixture(scope="module")
def cc(stack: Any) -> Iterator[ServiceProcess]:
    proc = start_control_center(stack.env())
    try:
        yield proc
    finally:
        proc.stop()


def introspect(url: str, svc: str, token: str) -> dict[str, Any]:
    resp = requests.post(
        f"{url}/auth/introspect", json={"token": token}, headers=auth_header(svc), timeout=T
    )
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()["data"]
    return data


def test_operator_journey_with_mfa(cc: ServiceProcess) -> None:
    url = cc.url
    svc = service_token(url)
    admin = login(url, ADMIN_USERNAME, ADMIN_PASSWORD)
    assert admin["user"]["username"] == "admin"
    assert admin["user"]["roles"] == ["admin"]
    assert admin["expires_at"].endswith("Z")

    # admin creates an operator
    op = create_user(url, admin["token"], "journey-op", ["operator"], "Operator-Pass-123")
    assert op["roles"] == ["operator"]
    assert "password" not in op
    assert "password_hash" not in op

    # the operator enrols MFA
    first = login(url, "journey-op", "Operator-Pass-123")
    hdr = auth_header(first["token"])
    enroll = requests.post(
        f"{url}/auth/mfa/enroll", json={"password": "Operator-Pass-123"}, headers=hdr, timeout=T
    )
    assert enroll.status_code == 200, enroll.text
    secret = enroll.json()["data"]["secret"]
    assert enroll.json()["data"]["otpauth_uri"].startswith("otpauth://totp/")
    totp = pyotp.TOTP(secret)
    now = time.time()
    verify = requests.post(
        f"{url}/auth/mfa/verify", json={"code": totp.at(now)}, headers=hdr, timeout=T
    )
    assert verify.status_code == 200, verify.text
    me = requests.get(f"{url}/auth/me", headers=hdr, timeout=T).json()["data"]
    assert me["mfa_enabled"] is True
    assert "mfa_secret" not in me
    assert secret not in str(me)

    # without a code: MFA required; with a fresh code (next step, within drift): in
    no_code = requests.post(
        f"{url}/auth/login",
        json={"username": "journey-op", "password": "Operator-Pass-123"},
        timeout=T,
    )
    assert no_code.status_code == 401
    assert "MFA" in no_code.json()["error"]
    session = login(url, "journey-op", "Operator-Pass-123", totp.at(now + 30))
    token = session["token"]
    assert introspect(url, svc, token)["active"] is True

    # refresh with the current access token (the contract's form)
    refreshed = requests.post(f"{url}/auth/refresh", json={"token": token}, timeout=T)
    assert refreshed.status_code == 200, refreshed.text
    new_token = refreshed.json()["data"]["token"]
    assert new_token != token
    assert introspect(url, svc, token)["active"] is False
    assert introspect(url, svc, new_token)["active"] is True

    # logout revokes; the token is inactive at introspect and rejected
    out = requests.post(f"{url}/auth/logout", headers=auth_header(new_token), timeout=T)
    assert out.status_code == 200
    assert out.json() == {"success": True, "data": "Successfully logged out"}
    assert introspect(url, svc, new_token) == {"active": False}
    rejected = requests.get(f"{url}/auth/me", headers=auth_header(new_token), timeout=T)
    assert rejected.status_code == 401
    assert rejected.json()["success"] is False
    # the session's refresh token died with it
    again = requests.post(
        f"{url}/auth/refresh", json={"token": session["refresh_token"]}, timeout=T
    )
    assert again.status_code == 401

    # the journey is in the audit log
    admin_hdr = auth_header(login(url, ADMIN_USERNAME, ADMIN_PASSWORD)["token"])
    logs = requests.get(
        f"{url}/audit/logs", params={"user_id": op["id"]}, headers=admin_hdr, timeout=T
    ).json()["data"]
    actions = {entry["action"] for entry in logs}
    assert {
        "auth.login",
        "auth.mfa.enroll",
        "auth.mfa.verify",
        "auth.refresh",
        "auth.logout",
    } <= actions
    assert secret not in str(logs)


def test_refresh_token_rotation_and_family_revocation(cc: ServiceProcess) -> None:
    url = cc.url
    svc = service_token(url)
    session = login(url, ADMIN_USERNAME, ADMIN_PASSWORD)
    r1 = requests.post(f"{url}/auth/refresh", json={"token": session["refresh_token"]}, timeout=T)
    assert r1.status_code == 200, r1.text
    data = r1.json()["data"]
    assert set(data) == {"token", "expires_at", "refresh_token", "refresh_expires_at"}
    assert introspect(url, svc, data["token"])["active"] is True
    # presenting the rotated refresh token again ends the whole family
    reuse = requests.post(
        f"{url}/auth/refresh", json={"token": session["refresh_token"]}, timeout=T
    )
    assert reuse.status_code == 401
    assert introspect(url, svc, data["token"])["active"] is False
    assert introspect(url, svc, data["refresh_token"])["active"] is False
    assert introspect(url, svc, session["token"])["active"] is False


def test_disabled_user_tokens_stop_at_once(cc: ServiceProcess) -> None:
    url = cc.url
    svc = service_token(url)
    admin = login(url, ADMIN_USERNAME, ADMIN_PASSWORD)["token"]
    user = create_user(url, admin, "journey-viewer", ["viewer"], "Viewer-Pass-123")
    token = login(url, "journey-viewer", "Viewer-Pass-123")["token"]
    assert introspect(url, svc, token)["active"] is True
    resp = requests.put(
        f"{url}/users/{user['id']}", json={"enabled": False}, headers=auth_header(admin), timeout=T
    )
    assert resp.json() == {"success": True, "data": "User updated successfully"}
    assert introspect(url, svc, token) == {"active": False}
    assert requests.get(f"{url}/auth/me", headers=auth_header(token), timeout=T).status_code == 401
    denied = requests.post(
        f"{url}/auth/login",
        json={"username": "journey-viewer", "password": "Viewer-Pass-123"},
        timeout=T,
    )
    assert denied.status_code == 401
    # re-enabled in the same second: a new login works at once
    requests.put(
        f"{url}/users/{user['id']}", json={"enabled": True}, headers=auth_header(admin), timeout=T
    )
    token2 = login(url, "journey-viewer", "Viewer-Pass-123")["token"]
    assert introspect(url, svc, token2)["active"] is True
    # deleted: inactive
    assert (
        requests.delete(
            f"{url}/users/{user['id']}", headers=auth_header(admin), timeout=T
        ).status_code
        == 200
    )
    assert introspect(url, svc, token2) == {"active": False}


def test_service_token_and_jwks(cc: ServiceProcess) -> None:
    url = cc.url
    resp = requests.post(
        f"{url}/auth/token",
        json={
            "grant_type": "client_credentials",
            "client_id": "orchestrator",
            "client_secret": "wrong-secret-wrong-secret",
        },
        timeout=T,
    )
    assert resp.status_code == 401
    svc = service_token(url)
    info = introspect(url, svc, svc)
    assert info["active"] is True
    assert info["typ"] == "service"
    assert info["roles"] == ["service"]
    assert info["sub"] == "service:orchestrator"
    jwks = requests.get(f"{url}/.well-known/jwks.json", timeout=T).json()
    assert jwks["keys"][0]["alg"] == "RS256"
    assert set(jwks["keys"][0]) == {"kty", "kid", "use", "alg", "n", "e"}
    # a service may read policies (the orchestrator loads them) but not users
    pol = requests.get(
        f"{url}/policies", params={"limit": 1000}, headers=auth_header(svc), timeout=T
    )
    assert pol.status_code == 200
    assert {p["name"] for p in pol.json()["data"]} >= {
        "admin_access_policy",
        "operator_access_policy",
        "viewer_access_policy",
        "auditor_access_policy",
    }
    assert requests.get(f"{url}/users", headers=auth_header(svc), timeout=T).status_code == 401
