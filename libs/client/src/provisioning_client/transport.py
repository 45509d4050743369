"""The transport every part of the SDK sends through: one HTTP session, the two
services' base URLs, the auth headers, token refresh (once, under a lock, however
many callers need it), the envelope and its mapping to typed errors, pagination, and
the one retry/backoff helper.

The resource namespaces (``client.tasks``, ``client.batches``...) and the event
stream all hold a :class:`Transport`; none of them knows the client class."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

import aiohttp

from ._convert import from_dict, from_list
from .auth import TokenState
from .errors import (
    ApiError,
    AuthenticationError,
    ProvisioningError,
    RateLimitError,
    ServiceUnavailableError,
    TransportError,
    error_for_status,
)
from .models import Page, Session, User

T = TypeVar("T")
Service = Literal["orchestrator", "control_center"]

DEFAULT_ORCHESTRATOR_URL = "http://localhost:9090"
DEFAULT_CONTROL_CENTER_URL = "http://localhost:9080"

API_VERSION_ACCEPT = "application/vnd.provisioning.v{version}+json"


@dataclass(slots=True)
class Reply:
    """The ``data`` of a successful envelope plus what the headers said."""

    data: Any
    status: int
    headers: Mapping[str, str]
    next_url: str | None = None

    def header_int(self, name: str) -> int | None:
        raw = self.headers.get(name)
        try:
            return int(raw) if raw is not None else None
        except ValueError:
            return None


def _clean_params(params: Mapping[str, Any] | None) -> dict[str, str]:
    """Drop ``None`` values and render booleans as the servers parse them."""
    out: dict[str, str] = {}
    for key, value in (params or {}).items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


async def exchange(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    params: Mapping[str, Any] | None = None,
    body: Any = None,
    envelope: bool = True,
    is_login: bool = False,
) -> Reply:
    """Send one request; return the envelope's ``data`` or raise the typed error."""
    kwargs: dict[str, Any] = {"headers": dict(headers), "params": _clean_params(params)}
    if body is not None:
        kwargs["data"] = json.dumps(body)
        kwargs["headers"]["Content-Type"] = "application/json"
    try:
        async with session.request(method, url, **kwargs) as resp:
            text = await resp.text()
            next_link = resp.links.get("next")
            next_url = str(next_link.get("url")) if next_link else None
            status, resp_headers = resp.status, dict(resp.headers)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TransportError(f"{method} {url} failed: {exc or type(exc).__name__}") from exc
    payload: Any = None
    try:
        payload = json.loads(text) if text else None
    except ValueError:
        payload = None
    if status >= 400 or (isinstance(payload, dict) and payload.get("success") is False):
        message = text.strip()[:500] or f"HTTP {status}"
        details = None
        if isinstance(payload, dict):
            message = str(payload.get("error") or message)
            raw_details = payload.get("details")
            details = raw_details if isinstance(raw_details, dict) else None
        raise error_for_status(
            status if status >= 400 else 500,
            message,
            details=details,
            headers=resp_headers,
            method=method,
            url=url,
            is_login=is_login,
        )
    if not envelope:
        return Reply(
            data=payload if payload is not None else text,
            status=status,
            headers=resp_headers,
            next_url=next_url,
        )
    if not isinstance(payload, dict) or payload.get("success") is not True:
        raise ApiError(
            f"{method} {url}: response is not the API envelope",
            status=status,
            headers=resp_headers,
            method=method,
            url=url,
        )
    return Reply(data=payload.get("data"), status=status, headers=resp_headers, next_url=next_url)


# Methods that may be sent twice without a second effect; POSTs qualify only with an
# Idempotency-Key (the orchestrator answers a repeated key with the first result).
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: ``base * 2**failures``, at most ``cap`` seconds,
    each delay drawn from its upper half. Used for request retries and for the event
    stream's reconnections."""

    base: float = 0.5
    cap: float = 10.0

    def delay(self, failures: int) -> float:
        ceiling = min(self.cap, self.base * (2.0 ** min(failures, 10)))
        return ceiling * random.uniform(0.5, 1.0)  # noqa: S311 - jitter only

    async def sleep(self, failures: int) -> None:
        await asyncio.sleep(self.delay(failures))


def _retryable(exc: ProvisioningError) -> bool:
    return isinstance(exc, TransportError | ServiceUnavailableError | RateLimitError)


async def with_retries(send: Callable[[], Awaitable[T]], *, retries: int, backoff: Backoff) -> T:
    """``send()``, repeated up to ``retries`` more times while it fails with an
    unreachable service, a 503 or a 429 (whose ``Retry-After`` is honoured up to
    ``backoff.cap``)."""
    failures = 0
    while True:
        try:
            return await send()
        except ProvisioningError as exc:
            if failures >= retries or not _retryable(exc):
                raise
            delay = backoff.delay(failures)
            if isinstance(exc, RateLimitError) and exc.retry_after is not None:
                delay = min(backoff.cap, exc.retry_after)
            failures += 1
            await asyncio.sleep(delay)


def idempotency_headers(key: str | None) -> dict[str, str]:
    """An ``Idempotency-Key`` header: the caller's key or a new UUID."""
    return {"Idempotency-Key": key or str(uuid.uuid4())}


class Transport:
    """Session, URLs, credentials and the request helpers of one client.

    ``retries`` (default 0) repeats idempotent requests (GET, or a POST with an
    ``Idempotency-Key``) that failed with an unreachable service, 503 or 429."""

    def __init__(
        self,
        orchestrator_url: str = DEFAULT_ORCHESTRATOR_URL,
        control_center_url: str = DEFAULT_CONTROL_CENTER_URL,
        *,
        tokens: TokenState | None = None,
        timeout: float = 30.0,
        refresh_margin: float = 60.0,
        api_version: int = 1,
        on_session: Callable[[Session], None] | None = None,
        session: aiohttp.ClientSession | None = None,
        retries: int = 0,
        backoff: Backoff | None = None,
    ) -> None:
        self.urls: dict[Service, str] = {
            "orchestrator": orchestrator_url.rstrip("/"),
            "control_center": control_center_url.rstrip("/"),
        }
        self.tokens = tokens or TokenState()
        self.timeout = timeout
        self.refresh_margin = refresh_margin
        self.api_version = api_version
        self.on_session = on_session
        self.retries = retries
        self.backoff = backoff or Backoff()
        self.user: User | None = None
        self._session = session
        self._owns_session = session is None
        self._refresh_lock = asyncio.Lock()

    # ------------------------------------------------------------------ session

    @property
    def http(self) -> aiohttp.ClientSession:
        """The aiohttp session (created on first use, on the running loop)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
            self._owns_session = True
        return self._session

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    def ws_url(self, path: str) -> str:
        """The orchestrator URL of ``path`` with the WebSocket scheme."""
        scheme, rest = self.urls["orchestrator"].split("://", 1)
        return ("wss" if scheme == "https" else "ws") + "://" + rest + path

    # ------------------------------------------------------------------ credentials

    def headers(self, *, auth: bool, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """``Accept`` with the API version, plus ``Authorization`` when ``auth``."""
        headers = {"Accept": API_VERSION_ACCEPT.format(version=self.api_version)}
        if auth:
            if not self.tokens.token:
                raise AuthenticationError("Not logged in: no access token", status=401)
            headers["Authorization"] = f"Bearer {self.tokens.token}"
        headers.update(extra or {})
        return headers

    def use_token(self, token: str, expires_at: datetime | None = None) -> None:
        """Authenticate with a token obtained elsewhere (e.g. a service token)."""
        self.tokens = TokenState(token=token, expires_at=expires_at)

    def adopt(self, session: Session) -> Session:
        """Take the tokens of a new session and tell ``on_session``."""
        self.tokens.update(session)
        if session.user is not None:
            self.user = session.user
        if self.on_session is not None:
            self.on_session(session)
        return session

    async def refresh(self) -> Session:
        """``POST /auth/refresh`` with the refresh token (rotated) or the access token."""
        credential = self.tokens.refresh_credential()
        if credential is None:
            raise AuthenticationError("Session expired: log in again", status=401)
        reply = await self.request(
            "control_center", "POST", "/auth/refresh", auth=False, body={"token": credential}
        )
        return self.adopt(from_dict(Session, reply.data))

    async def ensure_fresh_token(self) -> None:
        """Refresh once (even with concurrent callers) when the token is about to expire."""
        if not self.tokens.refresh_due(self.refresh_margin):
            return
        async with self._refresh_lock:
            if self.tokens.refresh_due(self.refresh_margin):
                await self.refresh()

    # ------------------------------------------------------------------ requests

    async def request(
        self,
        service: Service,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: bool = True,
        envelope: bool = True,
        url: str | None = None,
        is_login: bool = False,
    ) -> Reply:
        """One call to ``service`` (or to the absolute ``url`` of a next link)."""

        async def send() -> Reply:
            if auth:
                await self.ensure_fresh_token()
            return await exchange(
                self.http,
                method,
                url or self.urls[service] + path,
                headers=self.headers(auth=auth, extra=headers),
                params=None if url else params,
                body=body,
                envelope=envelope,
                is_login=is_login,
            )

        idempotent = method in _SAFE_METHODS or "Idempotency-Key" in (headers or {})
        retries = self.retries if idempotent else 0
        return await with_retries(send, retries=retries, backoff=self.backoff)

    async def data(self, service: Service, method: str, path: str, **kwargs: Any) -> Any:
        """The envelope's ``data`` of one call."""
        return (await self.request(service, method, path, **kwargs)).data

    async def page(
        self,
        service: Service,
        path: str,
        cls: type[T],
        params: Mapping[str, Any],
        url: str | None = None,
    ) -> Page[T]:
        """One page of a list endpoint, with the pagination headers."""
        reply = await self.request(service, "GET", path, params=params, url=url)
        return Page(
            items=from_list(cls, reply.data),
            total=reply.header_int("X-Total-Count"),
            limit=reply.header_int("X-Limit"),
            offset=reply.header_int("X-Offset"),
            next_url=reply.next_url,
        )

    async def iterate(
        self,
        service: Service,
        path: str,
        cls: type[T],
        params: Mapping[str, Any],
        page_size: int,
    ) -> AsyncIterator[T]:
        """Follow ``Link: rel="next"``; without it, step ``offset`` until ``X-Total-Count``.

        A next link is followed only below the service's base URL: the bearer token is
        never sent elsewhere, and a link that lost a proxy's path prefix is not used."""
        query = {**params, "limit": page_size, "offset": params.get("offset") or 0}
        url: str | None = None
        base = self.urls[service] + "/"
        while True:
            page = await self.page(service, path, cls, query, url=url)
            for item in page.items:
                yield item
            if not page.items:
                return
            if page.next_url and page.next_url.startswith(base):
                url = page.next_url
                continue
            offset = page.offset if page.offset is not None else int(query["offset"])
            offset += len(page.items)
            if page.total is not None and offset >= page.total:
                return
            if page.total is None and len(page.items) < page_size:
                return
            query["offset"], url = offset, None
