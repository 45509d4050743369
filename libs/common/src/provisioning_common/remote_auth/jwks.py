"""The control center's public keys (``GET /.well-known/jwks.json``) by ``kid``."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ..tokens import TokenClaims, decode_token, unverified_kid
from .control_center import CC_ERRORS, ControlCenter, ControlCenterUnavailable

log = logging.getLogger(__name__)


class JwksCache:
    """Public keys by ``kid``. An unknown ``kid`` triggers a refetch (key rotation),
    single flight and at most one per ``min_refresh_interval``: concurrent requests
    share the fetch in flight, and a ``kid`` still unknown after the last fetch within
    the interval is refused at once (401). Forged kids can neither hammer the control
    center nor queue requests behind a lock."""

    def __init__(self, cc: ControlCenter, *, min_refresh_interval: float = 2.0) -> None:
        self.cc = cc
        self.keys: dict[str, Any] = {}
        self.min_refresh_interval = min_refresh_interval
        self._last_refresh = -1e9
        self._inflight: asyncio.Future[None] | None = None

    async def refresh(self, wanted_kid: str | None = None) -> None:
        """Fetch the key set unless a fetch is in flight (then wait for that one) or
        one started less than ``min_refresh_interval`` ago (then return at once)."""
        if wanted_kid is not None and wanted_kid in self.keys:
            return
        if self._inflight is None:
            if time.monotonic() - self._last_refresh < self.min_refresh_interval:
                return
            self._last_refresh = time.monotonic()
            self._inflight = asyncio.ensure_future(self._fetch())
            self._inflight.add_done_callback(self._done)
        # Shielded: one caller giving up (client gone) does not cancel the others' fetch.
        await asyncio.shield(self._inflight)

    def _done(self, fut: asyncio.Future[None]) -> None:
        self._inflight = None
        if not fut.cancelled():
            fut.exception()  # retrieved here: every waiter also sees it

    async def _fetch(self) -> None:
        status, body = await self.cc.request("GET", "/.well-known/jwks.json")
        if status != 200 or not isinstance(body, dict):
            raise ValueError(f"JWKS answered {status}")
        self.keys = {
            k["kid"]: k
            for k in body.get("keys", [])
            if isinstance(k, dict) and isinstance(k.get("kid"), str) and k.get("kty") == "RSA"
        }

    async def decode(self, token: str, *, issuer: str, audience: str, typ: str) -> TokenClaims:
        kid = unverified_kid(token)
        if kid not in self.keys:
            await self._refresh_or_503(kid)  # first use, or a rotated key
            if not self.keys:
                raise ControlCenterUnavailable()
        return decode_token(token, self.keys, issuer=issuer, audience=audience, expected_typ=typ)

    async def _refresh_or_503(self, kid: str) -> None:
        try:
            await self.refresh(kid)
        except CC_ERRORS as exc:
            if not self.keys:
                raise ControlCenterUnavailable() from exc
            log.warning("JWKS refresh failed: %s", type(exc).__name__)
