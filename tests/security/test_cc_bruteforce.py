"""Brute force, TOTP replay and enumeration resistance of the control center (as a process)."""

from __future__ import annotations

import random
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
    start_control_center,
)
from tests.support.processes import ServiceProcess

T = 10


@pytest.fixture(scope="module")
def cc(stack: Any) -> Iterator[ServiceProcess]:
    proc = start_control_center(
        stack.env(), LOGIN_FAILURE_LIMIT="3", LOCKOUT_BASE_SECONDS="2", LOCKOUT_MAX_SECONDS="8"
    )
    try:
        yield proc
    finally:
        proc.stop()


def attempt(url: str, username: str, password: str, **extra: Any) -> requests.Response:
    return requests.post(
        f"{url}/auth/login", json={"username": username, "password": password, **extra}, timeout=T
    )


def test_unknown_user_and_wrong_password_answer_identically(cc: ServiceProcess) -> None:
    admin = login(cc.url, ADMIN_USERNAME, ADMIN_PASSWORD)["token"]
    create_user(cc.url, admin, "enum-target", ["viewer"], "Enum-Target-Pass1")
    wrong = attempt(cc.url, "enum-target", "Wrong-Password-1")
    unknown = attempt(cc.url, "enum-nobody", "Wrong-Password-1")
    assert wrong.status_code == unknown.status_code == 401
    assert (
        wrong.json()
        == unknown.json()
        == {"success": False, "error": "Invalid username or password"}
    )
    strip = {"X-Request-ID", "Date", "Content-Length"}
    assert {k for k in wrong.headers if k not in strip} == {
        k for k in unknown.headers if k not in strip
    }


def test_lockout_grows_and_is_audited(cc: ServiceProcess) -> None:
    admin = login(cc.url, ADMIN_USERNAME, ADMIN_PASSWORD)["token"]
    user = create_user(cc.url, admin, "lock-target", ["viewer"], "Lock-Target-Pass1")
    for _ in range(3):
        assert attempt(cc.url, "lock-target", "Wrong-Password-1").status_code == 401
    locked = attempt(cc.url, "lock-target", "Lock-Target-Pass1")  # even the right password
    assert locked.status_code == 429
    assert locked.json()["error"] == "Too many failed login attempts; try again later"
    assert 1 <= int(locked.headers["Retry-After"]) <= 2
    # an unknown user is locked the same way: the lockout reveals nothing
    for _ in range(3):
        attempt(cc.url, "lock-ghost", "Wrong-Password-1")
    ghost = attempt(cc.url, "lock-ghost", "Wrong-Password-1")
    assert ghost.status_code == 429
    assert ghost.json() == locked.json()

    time.sleep(2.2)
    for _ in range(3):
        assert attempt(cc.url, "lock-target", "Wrong-Password-1").status_code == 401
    second = attempt(cc.url, "lock-target", "Lock-Target-Pass1")
    assert second.status_code == 429
    assert int(second.headers["Retry-After"]) >= 3  # doubled

    # an admin lifts it; that is audited too
    resp = requests.post(
        f"{cc.url}/users/{user['id']}/unlock", headers=auth_header(admin), timeout=T
    )
    assert resp.status_code == 200
    assert login(cc.url, "lock-target", "Lock-Target-Pass1")["user"]["id"] == user["id"]
    logs = requests.get(
        f"{cc.url}/audit/logs",
        params={"action": "auth.lockout"},
        headers=auth_header(admin),
        timeout=T,
    ).json()["data"]
    assert any(e["user_id"] == user["id"] for e in logs)
    unlocks = requests.get(
        f"{cc.url}/audit/logs",
        params={"action": "auth.unlock"},
        headers=auth_header(admin),
        timeout=T,
    ).json()["data"]
    assert unlocks[0]["resource"] == f"users/{user['id']}"
    failures = requests.get(
        f"{cc.url}/audit/logs",
        params={"action": "auth.login", "user_id": user["id"]},
        headers=auth_header(admin),
        timeout=T,
    ).json()["data"]
    assert any(e["result"] == "failure" for e in failures)
    assert "Wrong-Password-1" not in str(failures)


def _enrolled_user(cc: ServiceProcess, name: str) -> pyotp.TOTP:
    admin = login(cc.url, ADMIN_USERNAME, ADMIN_PASSWORD)["token"]
    create_user(cc.url, admin, name, ["operator"], "Totp-User-Pass1")
    token = login(cc.url, name, "Totp-User-Pass1")["token"]
    secret = requests.post(
        f"{cc.url}/auth/mfa/enroll",
        json={"password": "Totp-User-Pass1"},
        headers=auth_header(token),
        timeout=T,
    ).json()["data"]["secret"]
    totp = pyotp.TOTP(secret)
    # activate with the previous step's code so the current one stays fresh
    resp = requests.post(
        f"{cc.url}/auth/mfa/verify",
        json={"code": totp.at(time.time() - 30)},
        headers=auth_header(token),
        timeout=T,
    )
    assert resp.status_code == 200, resp.text
    return totp


def test_totp_replay_rejected(cc: ServiceProcess) -> None:
    totp = _enrolled_user(cc, "totp-replay")
    code = totp.at(time.time())
    assert login(cc.url, "totp-replay", "Totp-User-Pass1", code)["token"]
    replay = attempt(cc.url, "totp-replay", "Totp-User-Pass1", mfa_code=code)
    assert replay.status_code == 401
    assert replay.json()["error"] == "Invalid MFA code"


def test_old_and_wrong_totp_codes_rejected(cc: ServiceProcess) -> None:
    totp = _enrolled_user(cc, "totp-old")
    old = totp.at(time.time() - 90)
    resp = attempt(cc.url, "totp-old", "Totp-User-Pass1", mfa_code=old)
    assert resp.status_code == 401
    assert "MFA" in resp.json()["error"]
    future = totp.at(time.time() + 90)
    assert attempt(cc.url, "totp-old", "Totp-User-Pass1", mfa_code=future).status_code == 401
    bad = attempt(cc.url, "totp-old", "Totp-User-Pass1", mfa_code="12ab56")
    assert bad.status_code == 422


def test_mfa_enrol_rechecks_password_and_admin_can_reset(cc: ServiceProcess) -> None:
    admin = login(cc.url, ADMIN_USERNAME, ADMIN_PASSWORD)["token"]
    user = create_user(cc.url, admin, "mfa-reset", ["viewer"], "Mfa-Reset-Pass1")
    token = login(cc.url, "mfa-reset", "Mfa-Reset-Pass1")["token"]
    bad = requests.post(
        f"{cc.url}/auth/mfa/enroll",
        json={"password": "nope-nope-1"},
        headers=auth_header(token),
        timeout=T,
    )
    assert bad.status_code == 401
    not_started = requests.post(
        f"{cc.url}/auth/mfa/verify", json={"code": "123456"}, headers=auth_header(token), timeout=T
    )
    assert not_started.status_code == 422
    totp = _enrolled_user(cc, "mfa-reset2")
    assert totp is not None
    listing = requests.get(
        f"{cc.url}/users", params={"limit": 1000}, headers=auth_header(admin), timeout=T
    ).json()["data"]
    target = next(u for u in listing if u["username"] == "mfa-reset2")
    assert target["mfa_enabled"] is True
    assert "mfa_secret" not in target
    assert "password_hash" not in target
    resp = requests.delete(
        f"{cc.url}/users/{target['id']}/mfa", headers=auth_header(admin), timeout=T
    )
    assert resp.status_code == 200
    assert login(cc.url, "mfa-reset2", "Totp-User-Pass1")["token"]
    # a non-admin cannot reset anyone's MFA
    resp = requests.delete(
        f"{cc.url}/users/{user['id']}/mfa", headers=auth_header(token), timeout=T
    )
    assert resp.status_code == 403


def test_long_passwords(cc: ServiceProcess) -> None:
    admin = login(cc.url, ADMIN_USERNAME, ADMIN_PASSWORD)["token"]
    long_ok = "Aa1-" + "x" * 66  # 70 characters: accepted
    create_user(cc.url, admin, "long-pass", ["viewer"], long_ok)
    assert login(cc.url, "long-pass", long_ok)["token"]
    too_long = "Aa1-" + "x" * 80
    resp = attempt(cc.url, "long-pass", too_long)
    assert resp.status_code == 422
    assert "72 bytes" in str(resp.json())
    resp = requests.post(
        f"{cc.url}/users",
        json={
            "username": "long-pass2",
            "email": "lp2@example.com",
            "password": too_long,
            "roles": ["viewer"],
        },
        headers=auth_header(admin),
        timeout=T,
    )
    assert resp.status_code == 422


@pytest.fixture
def limited_cc(stack: Any) -> Iterator[ServiceProcess]:
    # counters live in the shared Redis: a unique client address (via a trusted
    # proxy's X-Forwarded-For) keeps other tests' logins out of this window
    proc = start_control_center(
        stack.env(),
        RATE_LIMIT_AUTH_PER_MINUTE="5",
        RATE_LIMIT_GENERAL_PER_MINUTE="4",
        TRUSTED_PROXIES="127.0.0.1/32",
    )
    try:
        yield proc
    finally:
        proc.stop()


def test_auth_ip_limit_and_headers(limited_cc: ServiceProcess) -> None:
    url = limited_cc.url
    xff: dict[str, str] = {}

    def attempt(url: str, username: str, password: str) -> requests.Response:
        return requests.post(
            f"{url}/auth/login",
            json={"username": username, "password": password},
            headers=xff,
            timeout=T,
        )

    # The limits count per window: start with most of a window ahead (a fresh client
    # address each try), or the window could roll over mid-test and reset the counts.
    for _ in range(3):
        xff["X-Forwarded-For"] = f"198.51.100.{random.randint(1, 254)}"
        first = attempt(url, ADMIN_USERNAME, ADMIN_PASSWORD)
        left = int(first.headers["X-RateLimit-Reset"]) - time.time()
        if left >= 20:
            break
        time.sleep(max(0.0, left) + 0.5)
    assert first.status_code == 200
    assert first.headers["X-RateLimit-Limit"] == "5"
    assert first.headers["X-RateLimit-Remaining"] == "4"
    assert int(first.headers["X-RateLimit-Reset"]) > time.time()
    token = first.json()["data"]["token"]
    statuses = [attempt(url, "nobody", "Wrong-Password-1").status_code for _ in range(4)]
    assert statuses == [401] * 4
    blocked = attempt(url, ADMIN_USERNAME, ADMIN_PASSWORD)
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) >= 1
    assert blocked.headers["X-RateLimit-Remaining"] == "0"
    assert blocked.json()["success"] is False
    # the general tier is per user, not per IP
    codes = [
        requests.get(f"{url}/auth/me", headers=auth_header(token), timeout=T) for _ in range(5)
    ]
    assert [c.status_code for c in codes] == [200, 200, 200, 200, 429]
    assert codes[0].headers["X-RateLimit-Limit"] == "4"
    # another client behind the same proxy has its own budget
    other = requests.post(
        f"{url}/auth/login",
        json={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD},
        headers={"X-Forwarded-For": f"192.0.2.{random.randint(1, 254)}"},
        timeout=T,
    )
    assert other.status_code == 200


def test_unknown_users_cost_the_same_bcrypt_time(stack: Any) -> None:
    """At a real cost (10), an unknown user's login takes as long as a wrong password."""
    proc = start_control_center(stack.env(), BCRYPT_ROUNDS="10", LOGIN_FAILURE_LIMIT="1000")
    try:
        admin = login(proc.url, ADMIN_USERNAME, ADMIN_PASSWORD)["token"]
        create_user(proc.url, admin, "timing-target", ["viewer"], "Timing-Target-Pass1")
        known: list[float] = []
        unknown: list[float] = []
        for _ in range(6):  # interleaved, so machine load hits both alike
            for name, out in (("timing-target", known), ("timing-nobody", unknown)):
                start = time.perf_counter()
                assert attempt(proc.url, name, "Wrong-Password-1").status_code == 401
                out.append(time.perf_counter() - start)
    finally:
        proc.stop()
    known.sort()
    unknown.sort()
    ratio = unknown[3] / known[3]
    assert 0.5 < ratio < 2.0, (known, unknown)
