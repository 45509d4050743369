"""``GET /ws``: live events of every replica, ``?events=`` filter, ``?since=<event id>``
replay (from the Redis replay stream, or MongoDB when older: ``replay.py``),
heartbeats, 1008 on a bad token. The token and the caller's read right are re-checked
every ``WS_REAUTH_SECONDS`` (≤ 30) whatever the traffic, at the token's ``exp`` and at
once on a revocation event; each event is sent only if the caller may ``read`` the
task, batch or rollback it is about (with its owner); at most
``WS_MAX_CONNECTIONS_PER_USER`` connections per user across replicas."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import WSCloseCode, web

from provisioning_common.envelope import format_timestamp
from provisioning_common.errors import ApiError, BadRequest, TooManyRequests
from provisioning_common.openapi import api_doc
from provisioning_common.remote_auth import Principal, revokes
from provisioning_common.timeutil import utcnow
from provisioning_common.tokens import bearer_token

from ..auth import authenticate_request, authenticate_token, may
from ..deps import container_of
from ..engine.index import owner_of
from ..metrics import WS_CONNECTIONS
from .replay import replay
from .settings import WsSettings

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


def _token(request: web.Request) -> str:
    return request.query.get("token") or bearer_token(request.headers.get("Authorization")) or ""


async def _authenticate(request: web.Request) -> Principal:
    token = _token(request)
    if not token:
        raise ApiError("Authentication required")
    principal = await authenticate_request(request, token)
    if not await may(request.app, principal, "read", "tasks:*", principal.sub, _CONTEXT):
        raise ApiError("Permission denied")
    return principal


_CONTEXT = {"method": "GET", "path": "/ws"}

# Cap on connections per user, shared by every replica: a sorted set per user of
# connection ids scored by when they lapse (refreshed on every re-authorization, so a
# replica that died does not hold its connections' places for long).
# KEYS[1] the user's set; ARGV: now, lapse time, connection id, cap, key ttl (s).
_ADMIT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[3]) == false
   and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


class _Seat:
    """This connection's place among its user's connections."""

    def __init__(self, request: web.Request, principal: Principal, settings: WsSettings) -> None:
        self.redis = container_of(request).redis
        self.key = f"{container_of(request).db.name}:ws:conns:{principal.sub}"
        self.id = uuid.uuid4().hex
        self.cap = settings.max_connections_per_user
        self.lapse = 3 * settings.reauth_seconds + 5

    async def take(self) -> bool:
        now = time.time()
        admitted = await self.redis.eval(
            _ADMIT, 1, self.key, now, now + self.lapse, self.id, self.cap, int(self.lapse) + 1
        )
        return bool(admitted)

    async def release(self) -> None:
        with contextlib.suppress(Exception):
            await self.redis.zrem(self.key, self.id)


@routes.get("/ws")
@api_doc(
    summary="WebSocket event stream (?token=, ?events=, ?since=)",
    tags=["events"],
    auth=False,
    responses={
        101: "Switching protocols; closes 1008 on a bad, expired or revoked token and "
        "when the user has WS_MAX_CONNECTIONS_PER_USER connections open already"
    },
)
async def websocket(request: web.Request) -> web.StreamResponse:
    types, since = _parse(request)
    settings = container_of(request).settings.ws
    ws = web.WebSocketResponse(heartbeat=settings.ping_seconds, max_msg_size=64 * 1024)
    hub = container_of(request).hub
    # Subscribe before the handshake completes: a client may act as soon as it is
    # connected, and events published while we authenticate must not be lost.
    sub = hub.add()
    seat: _Seat | None = None
    try:
        await ws.prepare(request)
        principal = await _authenticate(request)
        seat = _Seat(request, principal, settings)
        if not await seat.take():
            seat = None
            raise TooManyRequests(
                30,
                f"Too many connections: at most {settings.max_connections_per_user} per user",
            )
    except ApiError as exc:
        hub.remove(sub)
        reason = exc.message if exc.status != 500 else "Authentication failed"
        # A dependency that is down (503) is a reason to retry, not a bad token.
        code = WSCloseCode.TRY_AGAIN_LATER if exc.status == 503 else WSCloseCode.POLICY_VIOLATION
        await ws.close(code=code, message=reason[:120].encode())
        return ws
    except BaseException:
        hub.remove(sub)
        raise
    WS_CONNECTIONS.inc()
    wanted = set(types) if types else None
    sent: set[str] = set()
    last_replayed = ""
    auth = container_of(request).auth
    revoked = asyncio.Event()

    def on_revocation(payload: Mapping[str, Any]) -> None:
        if revokes(payload, principal):
            revoked.set()

    auth.revocation_listeners.append(on_revocation)
    session = _Session(request, ws, principal, seat, revoked)
    try:
        if since is not None:
            missed = await replay(
                container_of(request).replay,
                container_of(request).events,
                since,
                types,
                settings.replay_limit,
            )
            for event in missed:
                if await session.visible(event):
                    await ws.send_str(json.dumps(event, default=str))
                sent.add(event["id"])
                last_replayed = event["id"]
        reader = asyncio.create_task(_drain_incoming(ws))
        try:
            await _pump(session, sub, wanted, sent, last_replayed, reader)
        except ConnectionResetError:
            pass  # the client went away
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    finally:
        with contextlib.suppress(ValueError):
            auth.revocation_listeners.remove(on_revocation)
        WS_CONNECTIONS.dec()
        hub.remove(sub)
        await seat.release()
        if not ws.closed:
            await ws.close()
    return ws


class _Session:
    """One connection's caller: what it may read, re-checked on a timer."""

    def __init__(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        principal: Principal,
        seat: _Seat,
        revoked: asyncio.Event,
    ) -> None:
        self.request = request
        self.ws = ws
        self.principal = principal
        self.seat = seat
        self.revoked = revoked
        self.settings: WsSettings = container_of(request).settings.ws
        self._decisions: dict[tuple[str, str], bool] = {}
        self._owners: dict[str, str] = {}

    async def reauthorize(self) -> str | None:
        """None while the connection may go on, else why it must close."""
        if self.revoked.is_set():
            return "Token revoked"
        if time.time() >= self.principal.exp:
            return "Token expired"
        try:
            principal = await authenticate_token(self.request.app, _token(self.request))
            allowed = await may(
                self.request.app, principal, "read", "tasks:*", principal.sub, _CONTEXT
            )
        except ApiError as exc:
            if exc.status == 503:
                # The token could not be confirmed, not found bad: the client should
                # reconnect later (1013), not give up on its token (1008).
                raise
            return "Token no longer valid"
        if not allowed:
            return "Permission denied"
        self.principal = principal
        self._decisions.clear()  # policies may have changed
        with contextlib.suppress(Exception):
            await self.seat.take()  # keep our place
        return None

    async def visible(self, event: Mapping[str, Any]) -> bool:
        """Whether the caller may read what ``event`` is about (``read`` on the task,
        batch or rollback it names, with its owner)."""
        meta = event.get("metadata") or {}
        data = event.get("data") or {}
        task_id = meta.get("task_id") or data.get("task_id")
        owner: str | None
        if task_id:
            resource = f"tasks:{task_id}"
            # Task events carry their owner; older stored ones (replay) are looked up.
            if "owner" in meta:
                owner = str(meta["owner"] or "")
            else:
                owner = await self._task_owner(str(task_id))
        elif meta.get("batch_id") or data.get("batch_id"):
            resource = f"batches:{meta.get('batch_id') or data.get('batch_id')}"
            owner = meta.get("owner")
        elif meta.get("rollback_id") or data.get("rollback_id"):
            resource = f"rollback:{meta.get('rollback_id') or data.get('rollback_id')}"
            owner = meta.get("owner")
        else:
            return True  # about nothing in particular: the connection's read on tasks:*
        key = (resource, str(owner or ""))
        cached = self._decisions.get(key)
        if cached is None:
            cached = await may(self.request.app, self.principal, "read", resource, owner, _CONTEXT)
            if len(self._decisions) > 10_000:
                self._decisions.clear()
            self._decisions[key] = cached
        return cached

    async def _task_owner(self, task_id: str) -> str:
        owner = self._owners.get(task_id)
        if owner is None:
            doc = await container_of(self.request).tasks.summary(task_id)
            owner = owner_of(doc) if doc is not None else ""
            if len(self._owners) > 10_000:
                self._owners.clear()
            self._owners[task_id] = owner
        return owner


async def _pump(
    session: _Session,
    sub: Any,
    wanted: set[str] | None,
    sent: set[str],
    last_replayed: str,
    reader: asyncio.Task[None],
) -> None:
    ws, settings = session.ws, session.settings
    overflow = asyncio.create_task(sub.overflowed.wait())
    revoked = asyncio.create_task(session.revoked.wait())
    next_auth = time.monotonic() + settings.reauth_seconds
    next_beat = time.monotonic() + settings.heartbeat_seconds
    try:
        while not ws.closed:
            now = time.monotonic()
            if now >= next_auth or session.revoked.is_set() or time.time() >= session.principal.exp:
                try:
                    reason = await session.reauthorize()
                except ApiError:
                    await ws.close(
                        code=WSCloseCode.TRY_AGAIN_LATER,
                        message=b"Authentication unavailable, reconnect later",
                    )
                    return
                if reason is not None:
                    await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=reason.encode())
                    return
                next_auth = time.monotonic() + settings.reauth_seconds
            until_exp = session.principal.exp - time.time()
            timeout = max(0.0, min(next_auth, next_beat) - time.monotonic(), 0.0)
            timeout = max(0.0, min(timeout, until_exp))
            getter = asyncio.create_task(sub.queue.get())
            try:
                done, _ = await asyncio.wait(
                    {getter, overflow, revoked, reader},
                    timeout=timeout,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                if not getter.done():
                    getter.cancel()  # also when this handler is cancelled mid-wait
            if reader in done:
                return  # the client closed: free its place now, not at the next timer
            if overflow in done:
                await ws.close(
                    code=WSCloseCode.TRY_AGAIN_LATER, message=b"Too slow, events dropped"
                )
                return
            if revoked in done:
                continue  # closed at the top of the loop
            if getter in done:
                event = getter.result()
                eid = str(event.get("id", ""))
                if eid in sent or (last_replayed and eid <= last_replayed):
                    continue  # already sent in the replay
                if wanted is not None and event.get("event_type") not in wanted:
                    continue
                if not await session.visible(event):
                    continue
                await ws.send_str(json.dumps(event, default=str))
                next_beat = time.monotonic() + settings.heartbeat_seconds
                continue
            if time.monotonic() >= next_beat:
                # Idle: heartbeat (the token is re-checked on its own timer above).
                await ws.send_str(
                    json.dumps(
                        {
                            "event_type": "Heartbeat",
                            "timestamp": format_timestamp(utcnow()),
                            "data": {},
                            "metadata": {"user": session.principal.username},
                        }
                    )
                )
                next_beat = time.monotonic() + settings.heartbeat_seconds
    finally:
        overflow.cancel()
        revoked.cancel()


async def _drain_incoming(ws: web.WebSocketResponse) -> None:
    """Clients only listen; reading keeps control frames (close, pong) flowing."""
    async for _ in ws:
        pass
