"""Issue 13 items 6 and 7, without a stack: a flood of unknown ``kid`` tokens costs at
most one JWKS fetch and is answered at once; the policy set is loaded whole (every
page) or not at all."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from jose import jwt

from provisioning_common.errors import ServiceUnavailable
from provisioning_common.remote_auth import JwksCache, PolicyCache
from provisioning_common.tokens import TokenError
from tests.unit.test_common_tokens import PRIVATE_PEM, claims


class _SlowJwks:
    """A control center whose JWKS endpoint takes 0.2 s and knows one key, not the forged ones."""

    def __init__(self) -> None:
        self.calls = 0

    async def request(self, method: str, path: str, **_: Any) -> tuple[int, Any]:
        self.calls += 1
        await asyncio.sleep(0.2)
        return 200, {"keys": [{"kid": "real", "kty": "RSA"}]}


def _bogus(n: int) -> str:
    return str(jwt.encode(claims(), PRIVATE_PEM, algorithm="RS256", headers={"kid": f"bogus-{n}"}))


def test_unknown_kids_cost_one_fetch_and_are_answered_at_once() -> None:
    async def run() -> tuple[float, int, list[BaseException]]:
        cc = _SlowJwks()
        cache = JwksCache(cc, min_refresh_interval=0.5)  # type: ignore[arg-type]
        cache.keys = {"real": {"kty": "RSA"}}  # keys already known: not a first start
        tokens = [_bogus(i) for i in range(20)]
        started = time.monotonic()
        results = await asyncio.gather(
            *(
                cache.decode(
                    t,
                    issuer="provisioning-control-center",
                    audience="provisioning",
                    typ="access",
                )
                for t in tokens
            ),
            return_exceptions=True,
        )
        return (
            time.monotonic() - started,
            cc.calls,
            [r for r in results if isinstance(r, BaseException)],
        )

    elapsed, calls, errors = asyncio.run(run())
    assert len(errors) == 20
    assert all(isinstance(e, TokenError) for e in errors)
    assert calls <= 1, f"{calls} JWKS fetches for 20 forged kids"
    assert elapsed < 1.0, f"the last forged token was answered after {elapsed:.1f} s"


def test_unknown_kid_after_the_interval_refetches_once_more() -> None:
    async def run() -> int:
        cc = _SlowJwks()
        cache = JwksCache(cc, min_refresh_interval=1.0)  # type: ignore[arg-type]
        cache.keys = {"real": {"kty": "RSA"}}
        for _ in range(2):
            with pytest.raises(TokenError):
                await cache.decode(_bogus(0), issuer="i", audience="a", typ="access")
        await asyncio.sleep(1.05)
        with pytest.raises(TokenError):
            await cache.decode(_bogus(1), issuer="i", audience="a", typ="access")
        return cc.calls

    assert asyncio.run(run()) == 2


def _policy(n: int) -> dict[str, Any]:
    return {
        "id": f"p{n}",
        "name": f"policy-{n}",
        "version": "1.0.0",
        "enabled": True,
        "rules": [{"effect": "Allow", "resource": f"servers:only-{n}", "action": ["read"]}],
    }


class _PagedPolicies:
    def __init__(self, total: int, fail_at: int | None = None) -> None:
        self.docs = [_policy(n) for n in range(total)]
        self.fail_at = fail_at
        self.paths: list[str] = []

    async def call(self, method: str, path: str, json: Any = None) -> tuple[int, Any]:
        self.paths.append(path)
        query = dict(p.split("=") for p in path.partition("?")[2].split("&") if p)
        limit, offset = int(query.get("limit", 50)), int(query.get("offset", 0))
        if self.fail_at is not None and offset >= self.fail_at:
            return 503, {"success": False, "error": "down"}
        return 200, {"success": True, "data": self.docs[offset : offset + limit]}


def test_policies_beyond_the_first_thousand_are_loaded() -> None:
    service = _PagedPolicies(2500)
    cache = PolicyCache(service)  # type: ignore[arg-type]
    engine = asyncio.run(cache.reload())
    assert len(engine.policies) == 2500
    decision = engine.evaluate(
        user={"id": "u", "roles": []}, action="read", resource="servers:only-2400"
    )
    assert decision.allowed


def test_a_partial_policy_load_refuses_to_authorize() -> None:
    service = _PagedPolicies(2500, fail_at=1000)
    cache = PolicyCache(service)  # type: ignore[arg-type]
    with pytest.raises(ServiceUnavailable):
        asyncio.run(cache.get())
    assert cache.engine is None
