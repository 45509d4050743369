"""Security review (issue 13): the login failure budget holds under concurrency, a
lockout is per account *and* source address (an attacker cannot keep the owner out),
the bootstrap admin has a break-glass unlock, and a costly policy condition is
refused when it is written."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.control_center import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    auth_header,
    create_user,
    start_control_center,
)
from tests.support.processes import ServiceProcess, service_env

T = 15
ROOT = Path(__file__).resolve().parents[2]
BUDGET = 5  # per account and address
ACCOUNT_BUDGET = 8  # per account, from addresses it never logged in from


@pytest.fixture(scope="module")
def cc(stack: Any) -> Iterator[ServiceProcess]:
    proc = start_control_center(
        stack.env(),
        LOGIN_FAILURE_LIMIT=str(BUDGET),
        ACCOUNT_LOGIN_FAILURE_LIMIT=str(ACCOUNT_BUDGET),
        LOCKOUT_BASE_SECONDS="30",
        TRUSTED_PROXIES="127.0.0.1/32",  # X-Forwarded-For names the source address
    )
    try:
        yield proc
    finally:
        proc.stop()


def _addr() -> str:
    n = uuid.uuid4().int
    return f"10.{n % 250}.{(n >> 8) % 250}.{(n >> 16) % 250 + 1}"


def attempt(url: str, username: str, password: str, address: str) -> requests.Response:
    return requests.post(
        f"{url}/auth/login",
        json={"username": username, "password": password},
        headers={"X-Forwarded-For": address},
        timeout=T,
    )


def admin_token(url: str) -> str:
    resp = attempt(url, ADMIN_USERNAME, ADMIN_PASSWORD, "127.0.0.1")
    assert resp.status_code == 200, resp.text
    return str(resp.json()["data"]["token"])


def _concurrently(url: str, username: str, addresses: list[str]) -> list[int]:
    with ThreadPoolExecutor(len(addresses)) as pool:
        return list(
            pool.map(lambda a: attempt(url, username, "Wrong-Password-1", a).status_code, addresses)
        )


def test_concurrent_guesses_from_one_address_get_the_budget_only(cc: ServiceProcess) -> None:
    name = f"race-{uuid.uuid4().hex[:6]}"
    create_user(cc.url, admin_token(cc.url), name, ["viewer"], "Race-Target-Pass1")
    address = _addr()
    statuses = _concurrently(cc.url, name, [address] * 30)
    assert set(statuses) <= {401, 429}
    assert statuses.count(401) <= BUDGET, statuses  # evaluated guesses
    assert statuses.count(429) >= 30 - BUDGET
    # locked: the right password is refused too, from that address
    locked = attempt(cc.url, name, "Race-Target-Pass1", address)
    assert locked.status_code == 429
    assert locked.json()["error"] == "Too many failed login attempts; try again later"


def test_concurrent_guesses_from_many_addresses_get_the_account_budget(
    cc: ServiceProcess,
) -> None:
    name = f"spread-{uuid.uuid4().hex[:6]}"
    create_user(cc.url, admin_token(cc.url), name, ["viewer"], "Spread-Target-Pass1")
    owner_address = _addr()
    assert attempt(cc.url, name, "Spread-Target-Pass1", owner_address).status_code == 200
    statuses = _concurrently(cc.url, name, [_addr() for _ in range(40)])
    assert set(statuses) <= {401, 429}
    assert statuses.count(401) <= ACCOUNT_BUDGET, statuses
    # the account is locked for addresses it never logged in from ...
    assert attempt(cc.url, name, "Spread-Target-Pass1", _addr()).status_code == 429
    # ... but not for the owner's own address
    assert attempt(cc.url, name, "Spread-Target-Pass1", owner_address).status_code == 200


def test_attacker_cannot_keep_the_owner_out(cc: ServiceProcess) -> None:
    name = f"owner-{uuid.uuid4().hex[:6]}"
    user = create_user(cc.url, admin_token(cc.url), name, ["viewer"], "Owner-Target-Pass1")
    attacker = _addr()
    for _ in range(BUDGET):
        assert attempt(cc.url, name, "Wrong-Password-1", attacker).status_code == 401
    assert attempt(cc.url, name, "Owner-Target-Pass1", attacker).status_code == 429
    # the owner, from another address (never used before), still logs in
    resp = attempt(cc.url, name, "Owner-Target-Pass1", _addr())
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["user"]["id"] == user["id"]
    # the attacker's address stays locked (a success elsewhere does not lift it)
    assert attempt(cc.url, name, "Owner-Target-Pass1", attacker).status_code == 429
    logs = requests.get(
        f"{cc.url}/audit/logs",
        params={"action": "auth.lockout", "limit": "1000"},
        headers=auth_header(admin_token(cc.url)),
        timeout=T,
    ).json()["data"]
    mine = [e for e in logs if e["user_id"] == user["id"]]
    assert mine
    assert mine[0]["details"]["scope"] == "address"
    assert mine[0]["details"]["ip"] == attacker


def test_bootstrap_admin_break_glass(stack: Any) -> None:
    database = f"cc_{uuid.uuid4().hex[:12]}"
    env = {"LOGIN_FAILURE_LIMIT": "2", "LOCKOUT_BASE_SECONDS": "600"}
    proc = start_control_center(stack.env(), MONGODB_DATABASE=database, **env)
    url = proc.url
    try:
        for _ in range(2):
            assert attempt(url, ADMIN_USERNAME, "Wrong-Password-1", "127.0.0.1").status_code == 401
        assert attempt(url, ADMIN_USERNAME, ADMIN_PASSWORD, "127.0.0.1").status_code == 429

        # 1. the command, against the database, with no token and no running service needed
        done = subprocess.run(
            [sys.executable, "-m", "control_center", "unlock-admin"],
            env=service_env(stack.env(), MONGODB_DATABASE=database),
            cwd=ROOT,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()
        assert attempt(url, ADMIN_USERNAME, ADMIN_PASSWORD, "127.0.0.1").status_code == 200
        unlocks = requests.get(
            f"{url}/audit/logs",
            params={"action": "auth.unlock"},
            headers=auth_header(admin_token(url)),
            timeout=T,
        ).json()["data"]
        assert unlocks[0]["details"]["via"] == "unlock-admin command"
        assert unlocks[0]["user_id"] is None

        # 2. the start-up switch
        for _ in range(2):
            assert attempt(url, ADMIN_USERNAME, "Wrong-Password-1", "127.0.0.1").status_code == 401
        assert attempt(url, ADMIN_USERNAME, ADMIN_PASSWORD, "127.0.0.1").status_code == 429
    finally:
        proc.stop()
    proc = start_control_center(
        stack.env(), MONGODB_DATABASE=database, BOOTSTRAP_ADMIN_UNLOCK="true", **env
    )
    try:
        assert attempt(proc.url, ADMIN_USERNAME, ADMIN_PASSWORD, "127.0.0.1").status_code == 200
        unlocks = requests.get(
            f"{proc.url}/audit/logs",
            params={"action": "auth.unlock"},
            headers=auth_header(admin_token(proc.url)),
            timeout=T,
        ).json()["data"]
        assert unlocks[0]["details"]["via"] == "BOOTSTRAP_ADMIN_UNLOCK"
    finally:
        proc.stop()


def test_costly_policy_condition_is_refused_when_written(cc: ServiceProcess) -> None:
    items = "[" + ",".join(str(i) for i in range(1, 21)) + "]"
    condition = f"{items}.all(a, {items}.all(b, {items}.all(c, {items}.all(d, a + b + c > d))))"
    start = time.monotonic()
    resp = requests.post(
        f"{cc.url}/policies",
        json={
            "name": f"costly-{uuid.uuid4().hex[:6]}",
            "rules": [
                {"effect": "Allow", "resource": "*", "action": ["read"], "condition": condition}
            ],
        },
        headers=auth_header(admin_token(cc.url)),
        timeout=T,
    )
    assert resp.status_code == 422, resp.text
    assert "Rule 0: condition too complex" in resp.json()["error"]
    assert time.monotonic() - start < 5
