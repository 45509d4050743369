"""``GET /ws``: live events of every replica, ``?events=`` filter, ``?since=<event id>``
replay (from the Redis replay stream, or MongoDB when older: ``replay.py``),
heartbeats, 1008 on a bad token."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from typing import Any

from aiohttp import WSCloseCode, web

from provisioning_common.envelope import format_timestamp
from provisioning_common.errors import ApiError, BadRequest
from provisioning_common.openapi import api_doc
from provisioning_common.remote_auth import Principal
from provisioning_common.timeutil import utcnow
from provisioning_common.tokens import bearer_token

from ..auth import authenticate_token
from ..metrics import WS_CONNECTIONS
from .replay import replay
from .settings import HUB, REPLAY, REPOSITORY, WS_SETTINGS

routes = web.RouteTableDef()

_EVENT_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_.]{0,63}$")
_EVENT_ID = re.compile(r"^\d{20}-[0-9a-f]{8}$")


def _parse(request: web.Request) -> tuple[list[str] | None, str | None]:
    unknown = set(request.query) - {"token", "events", "since"}
    if unknown:
        raise BadRequest(f"Unknown query parameter(s): {', '.join(sorted(unknown))}")
    types: list[str] | None = None
    raw = request.query.get("events")
    if raw is not None:
        types = [t.strip() for t in raw.split(",") if t.strip()]
        if not types or len(types) > 20 or not all(_EVENT_TYPE.match(t) for t in types):
            raise BadRequest(
                "Query parameter 'events' must be a comma-separated list of event types"
            )
    since = request.query.get("since")
    if since is not None and not _EVENT_ID.match(since):
        raise BadRequest("Query parameter 'since' must be an event id")
    return types, since


async def _authenticate(request: web.Request) -> Principal:
    token = request.query.get("token") or bearer_token(request.headers.get("Authorization"))
    if not token:
        raise ApiError("Authentication required")
    principal = await authenticate_token(request.app, token)
    from ..auth.core import AUTH

    decision = await request.app[AUTH].decide(
        principal, "read", "tasks:*", {"method": "GET", "path": "/ws"}
    )
    if not decision.allowed:
        raise ApiError("Permission denied")
    return principal


@routes.get("/ws")
@api_doc(
    summary="WebSocket event stream (?token=, ?events=, ?since=)",
    tags=["events"],
    auth=False,
    responses={101: "Switching protocols; closes 1008 on a bad token"},
)
async def websocket(request: web.Request) -> web.StreamResponse:
    types, since = _parse(request)
    settings = request.app[WS_SETTINGS]
    ws = web.WebSocketResponse(heartbeat=settings.ping_seconds, max_msg_size=64 * 1024)
    hub = request.app[HUB]
    # Subscribe before the handshake completes: a client may act as soon as it is
    # connected, and events published while we authenticate must not be lost.
    sub = hub.add()
    try:
        await ws.prepare(request)
        principal = await _authenticate(request)
    except ApiError as exc:
        hub.remove(sub)
        reason = exc.message if exc.status != 500 else "Authentication failed"
        await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=reason[:120].encode())
        return ws
    except BaseException:
        hub.remove(sub)
        raise
    WS_CONNECTIONS.inc()
    wanted = set(types) if types else None
    sent: set[str] = set()
    last_replayed = ""
    try:
        if since is not None:
            missed = await replay(
                request.app.get(REPLAY),
                request.app[REPOSITORY],
                since,
                types,
                settings.replay_limit,
            )
            for event in missed:
                await ws.send_str(json.dumps(event, default=str))
                sent.add(event["id"])
                last_replayed = event["id"]
        reader = asyncio.create_task(_drain_incoming(ws))
        try:
            await _pump(request, ws, sub, wanted, sent, last_replayed, principal)
        except ConnectionResetError:
            pass  # the client went away
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    finally:
        WS_CONNECTIONS.dec()
        hub.remove(sub)
        if not ws.closed:
            await ws.close()
    return ws


async def _pump(
    request: web.Request,
    ws: web.WebSocketResponse,
    sub: Any,
    wanted: set[str] | None,
    sent: set[str],
    last_replayed: str,
    principal: Principal,
) -> None:
    settings = request.app[WS_SETTINGS]
    overflow = asyncio.create_task(sub.overflowed.wait())
    try:
        while not ws.closed:
            getter = asyncio.create_task(sub.queue.get())
            done, _ = await asyncio.wait(
                {getter, overflow},
                timeout=settings.heartbeat_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if getter not in done:
                getter.cancel()
            if overflow in done:
                await ws.close(
                    code=WSCloseCode.TRY_AGAIN_LATER, message=b"Too slow, events dropped"
                )
                return
            if getter in done:
                event = getter.result()
                eid = str(event.get("id", ""))
                if eid in sent or (last_replayed and eid <= last_replayed):
                    continue  # already sent in the replay
                if wanted is not None and event.get("event_type") not in wanted:
                    continue
                await ws.send_str(json.dumps(event, default=str))
                continue
            # Idle: heartbeat, and make sure the token still holds (revocation, expiry).
            try:
                await authenticate_token(
                    request.app,
                    request.query.get("token")
                    or bearer_token(request.headers.get("Authorization"))
                    or "",
                )
            except ApiError:
                await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"Token no longer valid")
                return
            await ws.send_str(
                json.dumps(
                    {
                        "event_type": "Heartbeat",
                        "timestamp": format_timestamp(utcnow()),
                        "data": {},
                        "metadata": {"user": principal.username},
                    }
                )
            )
    finally:
        overflow.cancel()


async def _drain_incoming(ws: web.WebSocketResponse) -> None:
    """Clients only listen; reading keeps control frames (close, pong) flowing."""
    async for _ in ws:
        pass
