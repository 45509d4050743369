"""Calling the control center: the HTTP plumbing (bounded timeouts, enveloped JSON,
the request id passed on) and this service's own client-credentials token."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from ..errors import ServiceUnavailable
from ..logging import request_id_var

# What a failed call to the control center raises (ValueError: an unexpected answer).
CC_ERRORS = (aiohttp.ClientError, TimeoutError, ValueError)


class ControlCenterUnavailable(ServiceUnavailable):
    default_message = "Control center unavailable, try again later"


class ControlCenter:
    """Shared HTTP plumbing: bounded timeouts, enveloped JSON."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, timeout: float) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def request(
        self, method: str, path: str, *, token: str | None = None, json: Any = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request_id = request_id_var.get()
        if request_id:  # one request id across both services' logs
            headers["X-Request-ID"] = request_id
        async with self.session.request(
            method, self.base_url + path, json=json, headers=headers, timeout=self.timeout
        ) as resp:
            body = await resp.json(content_type=None)
            return resp.status, body


class ServiceTokenClient:
    """Client-credentials token for calling the control center; renewed before expiry."""

    def __init__(self, cc: ControlCenter, client_id: str, client_secret: str) -> None:
        self.cc = cc
        self.client_id = client_id
        self.client_secret = client_secret
        self._token: str | None = None
        self._valid_until = 0.0
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._token = None

    async def get(self) -> str:
        async with self._lock:
            if self._token and time.monotonic() < self._valid_until:
                return self._token
            status, body = await self.cc.request(
                "POST",
                "/auth/token",
                json={
                    "grant_type": "client_credentials",
                    "client_id": self.client_id,
                    "client_secret": self.client_secret,
                },
            )
            if status != 200 or not isinstance(body, dict) or not body.get("success"):
                raise ValueError(f"service token request answered {status}")
            data = body["data"]
            lifetime = float(data.get("expires_in", 300))
            self._token = str(data["access_token"])
            # Renew well before expiry so a token never dies in flight.
            self._valid_until = time.monotonic() + max(5.0, lifetime * 0.8)
            return self._token

    async def call(self, method: str, path: str, json: Any = None) -> tuple[int, Any]:
        """Call with the service token, renewing it once on a 401."""
        for attempt in range(2):
            token = await self.get()
            status, body = await self.cc.request(method, path, token=token, json=json)
            if status == 401 and attempt == 0:
                self.invalidate()
                continue
            return status, body
        return status, body
