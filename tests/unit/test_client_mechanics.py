"""SDK mechanics against a real local aiohttp server serving canned envelopes:
error mapping, pagination, token refresh timing, Idempotency-Key, /ws reconnection
with ``since``, and the sync wrapper. Endpoint coverage against the real services
lives in tests/e2e/test_client_sdk_e2e.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import WSCloseCode, web

from provisioning_client import (
    ApiError,
    AuthenticationError,
    Backoff,
    ConflictError,
    MfaRequiredError,
    NotFoundError,
    ProvisioningClient,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
    SyncProvisioningClient,
    TransportError,
    ValidationError,
)


def ok(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"success": True, "data": data}, status=status, headers=headers)


def fail(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"success": False, "error": message}, status=status, headers=headers)


def iso(delta: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=delta)).isoformat().replace("+00:00", "Z")


@dataclass
class Fake:
    url: str = ""
    lifetime: float = 600.0
    refresh_bodies: list[dict[str, Any]] = field(default_factory=list)
    auth_headers: list[str] = field(default_factory=list)
    idempotency_keys: list[str] = field(default_factory=list)
    ws_since: list[str | None] = field(default_factory=list)
    ws_auth: list[str] = field(default_factory=list)
    link_mode: bool = True
    foreign_links: bool = False
    tokens_issued: int = 0
    flaky_calls: int = 0

    def session(self, refresh: bool = True) -> dict[str, Any]:
        self.tokens_issued += 1
        data: dict[str, Any] = {
            "token": f"access-{self.tokens_issued}",
            "expires_at": iso(self.lifetime),
        }
        if refresh:
            data["refresh_token"] = f"refresh-{self.tokens_issued}"
            data["refresh_expires_at"] = iso(3600)
        return data


TASKS = [
    {
        "id": f"t{i}",
        "name": "create_servers",
        "status": "Completed",
        "created_at": "2025-09-26T10:00:00Z",
        "args": [],
        "dependencies": [],
    }
    for i in range(7)
]

EVENTS = [
    {
        "id": f"e{i}",
        "event_type": "TaskStatusChanged",
        "timestamp": "2025-09-26T10:00:00Z",
        "data": {"task_id": "t1", "status": "running"},
        "metadata": {},
    }
    for i in range(5)
]


def build_app(fake: Fake) -> web.Application:
    routes = web.RouteTableDef()

    @routes.post("/auth/login")
    async def login(request: web.Request) -> web.Response:
        body = await request.json()
        if body["password"] != "pw":
            return fail(401, "Invalid username or password")
        if body["username"] == "mfa-user" and body.get("mfa_code") != "123456":
            return fail(401, "MFA code required")
        return ok(
            {
                **fake.session(),
                "user": {
                    "id": "u1",
                    "username": body["username"],
                    "email": "a@example.com",
                    "roles": ["admin"],
                },
            }
        )

    @routes.post("/auth/refresh")
    async def refresh(request: web.Request) -> web.Response:
        body = await request.json()
        fake.refresh_bodies.append(body)
        if body["token"] == "revoked":
            return fail(401, "Token has been revoked")
        await asyncio.sleep(0.05)  # widen the window for concurrent callers
        return ok(fake.session())

    @routes.get("/tasks")
    async def tasks(request: web.Request) -> web.Response:
        fake.auth_headers.append(request.headers.get("Authorization", ""))
        limit, offset = int(request.query["limit"]), int(request.query["offset"])
        page = TASKS[offset : offset + limit]
        headers = {"X-Total-Count": str(len(TASKS)), "X-Limit": str(limit), "X-Offset": str(offset)}
        if fake.link_mode and offset + limit < len(TASKS):
            headers["Link"] = f'</tasks?offset={offset + limit}&limit={limit}>; rel="next"'
        if fake.foreign_links:
            headers["Link"] = '<http://198.51.100.7/steal?offset=0>; rel="next"'
        return ok(page, headers=headers)

    @routes.get("/tasks/{id}")
    async def task(request: web.Request) -> web.Response:
        fake.auth_headers.append(request.headers.get("Authorization", ""))
        task_id = request.match_info["id"]
        if task_id.startswith("status-"):
            status = int(task_id.split("-")[1])
            headers = {"Retry-After": "7"} if status == 429 else None
            return fail(status, f"canned {status}", headers)
        if task_id == "html":
            return web.Response(
                status=502, text="<html>bad gateway</html>", content_type="text/html"
            )
        if task_id == "notenvelope":
            return web.json_response({"id": "x"})
        if task_id.startswith("flaky-"):  # 503 for the first N calls
            fake.flaky_calls += 1
            if fake.flaky_calls <= int(task_id.split("-")[1]):
                return fail(503, "store unavailable")
        return ok({**TASKS[1], "id": task_id, "progress": 50, "surprise": "kept"})

    @routes.post("/workflows/servers/create")
    async def submit(request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key", "")
        fake.idempotency_keys.append(key)
        return ok(f"task-for-{key}")

    @routes.post("/tasks/{id}/cancel")
    async def cancel(request: web.Request) -> web.Response:
        fake.flaky_calls += 1
        return fail(503, "store unavailable")

    @routes.get("/ws")
    async def ws(request: web.Request) -> web.WebSocketResponse:
        fake.ws_since.append(request.query.get("since"))
        fake.ws_auth.append(request.headers.get("Authorization", ""))
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        if request.headers.get("Authorization") == "Bearer revoked":
            await sock.close(code=WSCloseCode.POLICY_VIOLATION, message=b"Token no longer valid")
            return sock
        since = request.query.get("since")
        start = 0 if since is None else int(since[1:]) + 1
        if since is not None:
            # Overlap on purpose: the replay repeats the last seen event.
            start -= 1
        await sock.send_str(json.dumps({"event_type": "Heartbeat", "data": {}, "metadata": {}}))
        await sock.send_str("not json")
        # First connection: two events then the server drops us; later: the rest.
        end = 2 if since is None else len(EVENTS)
        for event in EVENTS[start:end]:
            await sock.send_str(json.dumps(event))
        if since is None:
            await sock.close(code=WSCloseCode.GOING_AWAY)
            return sock
        async for _ in sock:
            pass
        return sock

    app = web.Application()
    app.add_routes(routes)
    return app


@pytest.fixture
async def fake() -> AsyncIterator[Fake]:
    state = Fake()
    runner = web.AppRunner(build_app(state))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


@pytest.fixture
async def client(fake: Fake) -> AsyncIterator[ProvisioningClient]:
    async with ProvisioningClient(fake.url, fake.url) as c:
        yield c


async def test_login_with_mfa_and_typed_session(client: ProvisioningClient) -> None:
    with pytest.raises(MfaRequiredError) as info:
        await client.login("mfa-user", "pw")
    assert info.value.status == 401
    assert info.value.message == "MFA code required"
    with pytest.raises(AuthenticationError) as wrong:
        await client.login("mfa-user", "nope", "123456")
    assert not isinstance(wrong.value, MfaRequiredError)
    session = await client.login("mfa-user", "pw", "123456")
    assert session.user is not None
    assert session.user.roles == ["admin"]
    assert isinstance(session.expires_at, datetime)
    assert client.token == session.token
    assert client.tokens.refresh_token == "refresh-1"


@pytest.mark.parametrize(
    ("status", "exc_type"),
    [
        (404, NotFoundError),
        (409, ConflictError),
        (422, ValidationError),
        (429, RateLimitError),
        (500, ServerError),
        (401, AuthenticationError),
    ],
)
async def test_error_mapping(
    client: ProvisioningClient, status: int, exc_type: type[ApiError]
) -> None:
    await client.login("admin", "pw")
    with pytest.raises(exc_type) as info:
        await client.get_task(f"status-{status}")
    assert info.value.status == status
    assert info.value.message == f"canned {status}"
    if status == 429:
        assert isinstance(info.value, RateLimitError)
        assert info.value.retry_after == 7.0


async def test_non_envelope_answers_and_unreachable(fake: Fake) -> None:
    async with ProvisioningClient(fake.url, fake.url, token="x") as client:
        with pytest.raises(ServerError) as info:
            await client.get_task("html")
        assert info.value.status == 502
        assert "bad gateway" in info.value.message
        with pytest.raises(Exception, match="not the API envelope"):
            await client.get_task("notenvelope")
        task = await client.get_task("abc")
        assert task.progress == 50.0
        assert task.extra == {"surprise": "kept"}
    async with ProvisioningClient(
        "http://127.0.0.1:9", "http://127.0.0.1:9", token="x", timeout=3
    ) as client:
        with pytest.raises(TransportError):
            await client.get_task("abc")


async def test_not_logged_in_raises_without_request(fake: Fake) -> None:
    async with ProvisioningClient(fake.url, fake.url) as client:
        with pytest.raises(AuthenticationError, match="Not logged in"):
            await client.get_task("abc")
    assert fake.auth_headers == []


@pytest.mark.parametrize("link_mode", [True, False])
async def test_pagination_iterator(fake: Fake, client: ProvisioningClient, link_mode: bool) -> None:
    fake.link_mode = link_mode
    await client.login("admin", "pw")
    ids = [t.id async for t in client.iter_tasks(page_size=3)]
    assert ids == [t["id"] for t in TASKS]
    assert len(fake.auth_headers) == 3  # 3 + 3 + 1
    page = await client.list_tasks(limit=3, offset=3)
    assert (page.total, page.limit, page.offset) == (7, 3, 3)
    assert [t.id for t in page.items] == ["t3", "t4", "t5"]
    assert (page.next_url is not None) == link_mode
    if link_mode:
        assert page.next_url == f"{fake.url}/tasks?offset=6&limit=3"


async def test_pagination_never_follows_a_link_to_another_origin(
    fake: Fake, client: ProvisioningClient
) -> None:
    fake.foreign_links = True
    await client.login("admin", "pw")
    ids = [t.id async for t in client.iter_tasks(page_size=3)]
    assert ids == [t["id"] for t in TASKS]  # stepped by offset instead


async def test_refresh_before_expiry_once_for_concurrent_calls(fake: Fake) -> None:
    seen: list[str] = []
    async with ProvisioningClient(
        fake.url, fake.url, refresh_margin=60, on_session=lambda s: seen.append(s.token)
    ) as client:
        fake.lifetime = 10.0  # lead = min(60 s, 10 s / 5) = 2 s
        await client.login("admin", "pw")
        await client.get_task("a")
        assert fake.refresh_bodies == []  # 10 s left: not yet
        # Move the clock 9 s on: 1 s left of a 10 s token is within the 2 s lead.
        now = datetime.now(UTC)
        client.tokens.obtained_at = now - timedelta(seconds=9)
        client.tokens.expires_at = now + timedelta(seconds=1)
        await asyncio.gather(*(client.get_task(f"c{i}") for i in range(5)))
        assert fake.refresh_bodies == [{"token": "refresh-1"}]
        assert set(fake.auth_headers[-5:]) == {"Bearer access-2"}
        assert seen == ["access-1", "access-2"]
        assert client.tokens.refresh_token == "refresh-2"


async def test_refresh_with_access_token_when_no_refresh_token(fake: Fake) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=5)
    async with ProvisioningClient(
        fake.url, fake.url, token="old-access", expires_at=soon
    ) as client:
        await client.get_task("a")
        assert fake.refresh_bodies == [{"token": "old-access"}]
        assert fake.auth_headers == ["Bearer access-1"]


async def test_idempotency_key_generated_unless_given(
    client: ProvisioningClient, fake: Fake
) -> None:
    await client.login("admin", "pw")
    first = await client.create_servers("production", "config.k")
    second = await client.create_servers("production", "config.k")
    given = await client.create_servers("production", "config.k", idempotency_key="k-1")
    generated = fake.idempotency_keys[:2]
    assert all(len(k) == 36 for k in generated)
    assert generated[0] != generated[1]
    assert first == f"task-for-{generated[0]}"
    assert second != first
    assert given == "task-for-k-1"


async def test_event_stream_reconnects_with_since(client: ProvisioningClient, fake: Fake) -> None:
    await client.login("admin", "pw")
    stream = client.events(backoff=0.01)
    received = []
    async with stream:
        async for event in stream:
            received.append(event.id)
            if len(received) == len(EVENTS):
                break
    assert received == [e["id"] for e in EVENTS]  # no gap, no duplicate, no heartbeat
    assert fake.ws_since[:2] == [None, "e1"]
    assert stream.reconnects == 1
    assert stream.last_event_id == "e4"
    assert fake.ws_auth[0] == "Bearer access-1"


async def test_event_stream_policy_violation_raises(fake: Fake) -> None:
    async with ProvisioningClient(fake.url, fake.url, token="revoked") as client:
        with pytest.raises(AuthenticationError, match="token rejected"):
            async for _ in client.events(backoff=0.01):
                pass


async def test_event_stream_renews_a_rejected_token_once(fake: Fake) -> None:
    async with ProvisioningClient(
        fake.url, fake.url, token="revoked", refresh_token="good-refresh"
    ) as client:
        stream = client.events(backoff=0.01)
        received: list[str] = []
        async with stream:
            async for event in stream:
                received.append(event.id)
                if len(received) == len(EVENTS):
                    break
    assert received == [e["id"] for e in EVENTS]
    assert fake.refresh_bodies == [{"token": "good-refresh"}]
    assert fake.ws_auth[:2] == ["Bearer revoked", "Bearer access-1"]


def test_sync_wrapper(fake_url: str) -> None:
    with SyncProvisioningClient(fake_url, fake_url) as client:
        session = client.login("admin", "pw")
        assert session.token == "access-1"
        assert client.token == "access-1"
        assert client.get_task("x").id == "x"
        assert client.tasks.get("y").id == "y"
        assert [t.id for t in client.iter_tasks(page_size=4)] == [t["id"] for t in TASKS]
        assert [t.id for t in client.tasks.iter(page_size=4)] == [t["id"] for t in TASKS]
        assert client.workflows.create_servers("p", "c.k", idempotency_key="s") == "task-for-s"
        with pytest.raises(NotFoundError):
            client.tasks.get("status-404")


@contextlib.contextmanager
def threaded_fake(state: Fake | None = None) -> Iterator[Fake]:
    """The fake server on its own thread and loop (for sync code and subprocesses)."""
    state = state or Fake()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def start() -> None:
        runner = web.AppRunner(build_app(state))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder["runner"] = runner
        state.url = f"http://127.0.0.1:{runner.addresses[0][1]}"

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield state
    finally:
        asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def fake_url() -> Iterator[str]:
    with threaded_fake() as state:
        yield state.url


async def test_namespaces_and_flat_methods_are_the_same_calls(
    client: ProvisioningClient, fake: Fake
) -> None:
    await client.login("admin", "pw")
    assert (await client.tasks.get("n1")).id == (await client.get_task("n1")).id == "n1"
    page = await client.tasks.list(limit=3, offset=0)
    assert [t.id for t in page.items] == ["t0", "t1", "t2"]
    assert [t.id async for t in client.tasks.iter(page_size=5)] == [t["id"] for t in TASKS]
    first = await client.workflows.create_servers("p", "c.k", idempotency_key="ns-1")
    assert first == await client.workflows.create_server("p", "c.k", idempotency_key="ns-1")
    assert fake.idempotency_keys == ["ns-1", "ns-1"]
    with pytest.raises(ValueError, match="exactly one"):
        await client.rollback()  # the namespace is callable: rollback(checkpoint_id=...)
    with pytest.raises(ValueError, match="exactly one"):
        await client.rollback.execute()


async def test_retries_idempotent_requests_only(fake: Fake) -> None:
    async with ProvisioningClient(
        fake.url, fake.url, token="x", retries=2, backoff=Backoff(base=0.01, cap=0.05)
    ) as client:
        assert (await client.get_task("flaky-2")).id == "flaky-2"  # 503, 503, then ok
        assert fake.flaky_calls == 3
        fake.flaky_calls = 0
        with pytest.raises(ServiceUnavailableError):
            await client.get_task("flaky-5")
        assert fake.flaky_calls == 3  # one try and two retries
        fake.flaky_calls = 0
        with pytest.raises(ServiceUnavailableError):
            await client.cancel_task("t1")  # a POST without Idempotency-Key: sent once
        assert fake.flaky_calls == 1
    async with ProvisioningClient(fake.url, fake.url, token="x") as default:
        fake.flaky_calls = 0
        with pytest.raises(ServiceUnavailableError):
            await default.get_task("flaky-1")  # no retries unless asked for
        assert fake.flaky_calls == 1


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    backoff = Backoff(base=0.5, cap=4.0)
    for failures, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (30, 4.0)]:
        delays = [backoff.delay(failures) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
