"""Async iterator over the orchestrator's ``/ws`` events.

When the connection drops, it reconnects with ``since=<last event id>`` so the
server replays what was missed (DESIGN §5); ids already seen are skipped in case
the replay overlaps what arrived before the drop."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncGenerator
from types import TracebackType
from typing import Any

import aiohttp

from ._convert import from_dict
from .errors import AuthenticationError, ProvisioningError, TransportError, error_for_status
from .models import Event
from .transport import Backoff, Transport

# Message types that keep the connection alive but are not events.
HEARTBEAT_TYPES = frozenset({"heartbeat", "ping", "pong", "keepalive"})
POLICY_VIOLATION = 1008
_SEEN_LIMIT = 2048


class EventStream:
    """``async for event in client.events(...)``; ``reconnects`` counts reconnections.

    ``connected`` is set while a connection is open. The server registers the
    subscription just after the handshake (once the token is checked), so work
    triggered the very instant ``connected`` is set may emit its first events before
    the subscription exists; callers that must see everything re-read state after
    connecting (as ``provctl watch`` does)."""

    def __init__(
        self,
        transport: Transport,
        *,
        since: str | None,
        event_types: list[str],
        reconnect: bool,
        max_reconnects: int | None,
        backoff: float,
        max_backoff: float,
    ) -> None:
        self.transport = transport
        self.last_event_id = since
        self.event_types = event_types
        self.reconnect = reconnect
        self.max_reconnects = max_reconnects
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._backoff = Backoff(base=backoff, cap=max_backoff)
        self.reconnects = 0
        self.connected = asyncio.Event()
        self._seen: set[str] = set()
        self._order: deque[str] = deque()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._gen = self._run()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        await self._gen.aclose()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def drop_connection(self) -> None:
        """Close the current socket (the stream then reconnects); for tests and tooling."""
        if self._ws is not None:
            await self._ws.close()

    def _params(self) -> dict[str, str]:
        params: dict[str, str] = {}
        if self.last_event_id:
            params["since"] = self.last_event_id
        if self.event_types:
            params["events"] = ",".join(self.event_types)
        return params

    def _remember(self, event_id: str) -> bool:
        """False when the id was already delivered."""
        if event_id in self._seen:
            return False
        self._seen.add(event_id)
        self._order.append(event_id)
        if len(self._order) > _SEEN_LIMIT:
            self._seen.discard(self._order.popleft())
        return True

    def _decode(self, text: str) -> Event | None:
        try:
            payload: Any = json.loads(text)
        except ValueError:
            return None
        if not isinstance(payload, dict) or not payload.get("event_type"):
            return None
        if str(payload["event_type"]).lower() in HEARTBEAT_TYPES:
            return None
        return from_dict(Event, payload)

    async def _session(self) -> AsyncGenerator[Event, None]:
        """Events of one connection; returns when it closes, raises on auth failure."""
        await self.transport.ensure_fresh_token()
        headers = self.transport.headers(auth=True)
        try:
            async with self.transport.http.ws_connect(
                self.transport.ws_url("/ws"),
                params=self._params(),
                headers=headers,
                heartbeat=20.0,
                timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
            ) as ws:
                self._ws = ws
                self.connected.set()
                async for msg in ws:
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        continue
                    event = self._decode(msg.data)
                    if event is None or (event.id and not self._remember(event.id)):
                        continue
                    if event.id:
                        self.last_event_id = event.id
                    yield event
                if ws.close_code == POLICY_VIOLATION:
                    raise AuthenticationError(
                        "Event stream closed by the server: token rejected", status=401
                    )
        except aiohttp.WSServerHandshakeError as exc:
            if 400 <= exc.status < 500 and exc.status != 429:
                raise error_for_status(exc.status, exc.message or "WebSocket refused") from exc
        except (aiohttp.ClientError, TimeoutError, ConnectionError):
            pass
        finally:
            self._ws = None
            self.connected.clear()

    async def _renew_after_rejection(self, rejection: AuthenticationError) -> None:
        """The server closed with 1008 (e.g. the token expired during a long watch):
        refresh once and reconnect; a token that cannot be refreshed is final."""
        try:
            await self.transport.refresh()
        except ProvisioningError as exc:
            raise rejection from exc

    async def _run(self) -> AsyncGenerator[Event, None]:
        failures = 0
        renewed = False
        while True:
            received = False
            session = self._session()
            try:
                async for event in session:
                    received = True
                    yield event
            except AuthenticationError as rejection:
                if renewed and not received:
                    raise
                await self._renew_after_rejection(rejection)
                renewed = True
                continue
            finally:
                # Close the socket now, not whenever the generator is collected.
                await session.aclose()
            renewed = renewed and not received
            if not self.reconnect:
                return
            if self.max_reconnects is not None and self.reconnects >= self.max_reconnects:
                raise TransportError("Event stream lost and reconnect limit reached")
            failures = 0 if received else failures + 1
            self.reconnects += 1
            await self._backoff.sleep(failures)
