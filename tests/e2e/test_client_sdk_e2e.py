"""The SDK against the live services (both started as processes, real Redis and
MongoDB-compatible server): every endpoint at least once, error mapping, pagination,
automatic refresh, and event iteration with a reconnect."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pyotp
import pytest

from provisioning_client import (
    AuthenticationError,
    BadRequestError,
    Batch,
    ConflictError,
    MfaRequiredError,
    NotFoundError,
    PermissionDeniedError,
    ProvisioningClient,
    SyncProvisioningClient,
    Task,
    User,
    ValidationError,
)
from tests.e2e.contract_examples import harness
from tests.support.contract import CONTRACT_BATCH
from tests.support.control_center import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    orchestrator_env,
    start_control_center,
)

pytestmark = pytest.mark.e2e
T = TypeVar("T")


@pytest.fixture(scope="module")
def live(services: Any) -> harness.LiveServices:
    return harness.from_services(services)


def new_client(live: harness.LiveServices, **kwargs: Any) -> ProvisioningClient:
    return ProvisioningClient(live.orchestrator_url, live.control_center_url, **kwargs)


@pytest.fixture
async def admin(live: harness.LiveServices) -> AsyncIterator[ProvisioningClient]:
    async with new_client(live) as client:
        await client.login(live.admin_username, live.admin_password)
        yield client


async def eventually(
    fetch: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout: float = 30.0
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = await fetch()
        if done(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.2)


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


async def test_operational_endpoints(admin: ProvisioningClient) -> None:
    assert await admin.health("orchestrator") == "Orchestrator is healthy"
    assert await admin.health("control_center")
    assert "# TYPE" in await admin.metrics_text("orchestrator")
    assert "# TYPE" in await admin.metrics_text("control_center")
    jwks = await admin.jwks()
    assert jwks["keys"][0]["alg"] == "RS256"
    for service in ("orchestrator", "control_center"):
        spec = await admin.openapi(service)  # type: ignore[arg-type]
        assert str(spec["openapi"]).startswith("3.")


async def test_user_mfa_refresh_logout_journey(
    admin: ProvisioningClient, live: harness.LiveServices
) -> None:
    username, password = unique("op"), "Operator-passw0rd!"
    user = await admin.create_user(username, f"{username}@example.com", password, ["operator"])
    assert isinstance(user, User)
    assert user.roles == ["operator"]
    assert (await admin.get_user(user.id)).username == username
    assert user.id in [u.id for u in (await admin.list_users(role="operator", enabled=True)).items]

    async with new_client(live) as op:
        await op.login(username, password)
        assert (await op.me()).username == username
        enrollment = await op.mfa_enroll(password)
        assert (enrollment.otpauth_uri or "").startswith("otpauth://")
        totp = pyotp.TOTP(enrollment.secret)
        await op.mfa_verify(totp.now())
        with pytest.raises(MfaRequiredError) as mfa:
            await op.login(username, password)
        assert mfa.value.status == 401
        assert "MFA" in mfa.value.message
        # The verify code was consumed; the next step's code is within the allowed drift.
        session = await op.login(username, password, totp.at(time.time() + 30))
        assert session.refresh_token
        first = op.token
        refreshed = await op.refresh()
        assert refreshed.token != first
        # Automatic refresh: make the token look nearly expired, then just call.
        now = datetime.now(UTC)
        op.tokens.obtained_at, op.tokens.expires_at = (
            now - timedelta(hours=1),
            now + timedelta(seconds=5),
        )
        assert (await op.me()).username == username
        assert op.token != refreshed.token

        async with new_client(live) as svc:
            grant = await svc.service_token(live.service_client_id, live.service_client_secret)
            svc.use_token(grant.access_token)
            current = op.token
            assert current is not None
            assert (await svc.introspect(current)).active
            assert await op.logout()
            assert not (await svc.introspect(current)).active
        async with new_client(live, token=current) as revoked:
            with pytest.raises(AuthenticationError):
                await revoked.me()
            with pytest.raises(AuthenticationError):
                await revoked.list_tasks()

    await admin.update_user(user.id, email=f"{username}@example.org", roles=["viewer"])
    updated = await admin.get_user(user.id)
    assert (updated.email, updated.roles) == (f"{username}@example.org", ["viewer"])
    await admin.reset_user_mfa(user.id)
    assert (await admin.get_user(user.id)).mfa_enabled is False
    await admin.unlock_user(user.id)
    await admin.delete_user(user.id)
    with pytest.raises(NotFoundError):
        await admin.get_user(user.id)


async def test_user_pagination_and_validation(admin: ProvisioningClient) -> None:
    prefix = unique("pg")
    made = [
        await admin.create_user(
            f"{prefix}{i}", f"{prefix}{i}@example.com", "Auditor-passw0rd!", ["auditor"]
        )
        for i in range(5)
    ]
    page = await admin.list_users(role="auditor", limit=2)
    assert len(page.items) == 2
    assert page.total is not None
    assert page.total >= 5
    assert page.next_url is not None
    seen = [u.id async for u in admin.iter_users(role="auditor", page_size=2)]
    assert len(seen) == len(set(seen)) == page.total
    assert {u.id for u in made} <= set(seen)
    with pytest.raises(ConflictError):
        await admin.create_user(f"{prefix}0", "x@example.com", "Auditor-passw0rd!", ["auditor"])
    with pytest.raises(ValidationError) as invalid:
        await admin.create_user(unique("v"), "not-an-email", "Auditor-passw0rd!", ["wizard"])
    assert invalid.value.status == 422
    for user in made:
        await admin.delete_user(user.id)


async def test_policies(admin: ProvisioningClient) -> None:
    defaults = (await admin.list_policies()).items
    assert defaults
    rule = {
        "effect": "Allow",
        "resource": "servers:*",
        "action": ["create", "read"],
        "condition": "user.role == 'admin'",
    }
    policy = await admin.create_policy(unique("policy_"), [rule], "1.0.0")
    assert policy.id
    got = await admin.get_policy(policy.id)
    assert got.rules[0].condition == "user.role == 'admin'"
    await admin.update_policy(policy.id, name=unique("updated_"), rules=[rule])
    assert (await admin.get_policy(policy.id)).name.startswith("updated_")
    assert policy.id in [p.id async for p in admin.iter_policies(page_size=2)]
    mine = await admin.evaluate_policy("create", "servers:web")
    assert mine.is_allowed
    viewer = await admin.evaluate_policy("create", "servers:web", user={"roles": ["viewer"]})
    assert not viewer.is_allowed
    with pytest.raises(ValidationError) as bad_cel:
        await admin.create_policy(unique("bad_"), [{**rule, "condition": "user.role =="}])
    assert bad_cel.value.message
    await admin.delete_policy(policy.id)
    with pytest.raises(NotFoundError):
        await admin.get_policy(policy.id)


async def test_audit_logs(admin: ProvisioningClient) -> None:
    page = await admin.audit_logs(action="auth.login", limit=3)
    assert page.items
    assert all(entry.action == "auth.login" for entry in page.items)
    assert page.total is not None
    logins = [e async for e in admin.iter_audit_logs(action="auth.login", page_size=2)]
    assert len(logins) == page.total
    future = datetime.now(UTC) + timedelta(days=1)
    assert (await admin.audit_logs(since=future)).items == []
    past = await admin.audit_logs(until=datetime.now(UTC) + timedelta(minutes=1), limit=1)
    assert past.items


async def test_workflows_tasks_and_errors(
    admin: ProvisioningClient, live: harness.LiveServices
) -> None:
    servers = await admin.create_servers("production", "config.k")
    taskserv = await admin.create_taskserv("kubernetes", "production", "config.k")
    cluster = await admin.create_cluster("buildkit", "production", "config.k")
    key = str(uuid.uuid4())
    again = await admin.create_servers("staging", "config.k", idempotency_key=key)
    assert await admin.create_servers("staging", "config.k", idempotency_key=key) == again
    with pytest.raises(ConflictError):
        await admin.create_servers("other", "config.k", idempotency_key=key)

    for task_id in (servers, taskserv, cluster):
        task = await eventually(lambda t=task_id: admin.get_task(t), lambda t: t.finished)
        assert isinstance(task, Task)
        assert task.status == "Completed", task
        assert task.completed_at is not None
    task = await admin.get_task(servers)
    assert task.command.endswith("servers create")
    assert task.args[:2] == ["--infra", "production"]
    assert len(await admin.task_attempts(servers)) >= 1
    page = await admin.list_tasks(status="Completed", limit=2)
    assert len(page.items) == 2
    listed = [t.id async for t in admin.iter_tasks(page_size=2)]
    assert {servers, taskserv, cluster, again} <= set(listed)
    assert len(listed) == len(set(listed))

    slow = await admin.create_servers("prod-sleep30", "config.k")
    await eventually(lambda: admin.get_task(slow), lambda t: t.status == "Running")
    await admin.cancel_task(slow)
    cancelled = await eventually(lambda: admin.get_task(slow), lambda t: t.finished)
    assert cancelled.status == "Cancelled"

    with pytest.raises(NotFoundError):
        await admin.get_task(str(uuid.uuid4()))
    with pytest.raises(BadRequestError) as bad_status:
        await admin.list_tasks(status="Bogus")
    assert bad_status.value.status == 400
    assert bad_status.value.message  # the contract's error text, carried as is
    with pytest.raises(ValidationError):
        await admin.create_servers("bad infra!", "config.k")
    async with new_client(live, token="not-a-jwt") as anonymous:
        with pytest.raises(AuthenticationError):
            await anonymous.get_task(servers)
    viewer_name = unique("viewer")
    viewer_user = await admin.create_user(
        viewer_name, f"{viewer_name}@example.com", "Viewer-passw0rd!", ["viewer"]
    )
    async with new_client(live) as viewer:
        await viewer.login(viewer_name, "Viewer-passw0rd!")
        assert (await viewer.get_task(servers)).id == servers
        with pytest.raises(PermissionDeniedError):
            await viewer.create_servers("production", "config.k")
    await admin.delete_user(viewer_user.id)


async def test_batches(admin: ProvisioningClient) -> None:
    plan = await admin.plan_batch(CONTRACT_BATCH)
    assert plan.waves or plan.extra
    batch = await admin.execute_batch(CONTRACT_BATCH)
    assert isinstance(batch, Batch)
    assert [op.id for op in batch.operations] == ["upcloud_servers", "aws_taskservs"]
    done = await eventually(lambda: admin.get_batch(batch.batch_id), lambda b: b.finished, 60)
    assert done.status == "Completed"
    assert all(op.progress == 100.0 for op in done.operations)
    assert batch.batch_id in [b.batch_id async for b in admin.iter_batches(page_size=1)]
    assert (await admin.list_batches(limit=1)).items
    with pytest.raises(ConflictError):
        await admin.cancel_batch(batch.batch_id)
    slow = {
        **CONTRACT_BATCH,
        "name": "slow_batch",
        "operations": [
            {
                "id": "slow",
                "type": "server_batch",
                "provider": "upcloud",
                "dependencies": [],
                "server_configs": [{"name": "web-sleep30", "plan": "1xCPU-2GB", "zone": "de-fra1"}],
            }
        ],
    }
    running = await admin.execute_batch(slow)
    await admin.cancel_batch(running.batch_id)
    cancelled = await eventually(lambda: admin.get_batch(running.batch_id), lambda b: b.finished)
    assert cancelled.status == "Cancelled"
    with pytest.raises(ValidationError):
        await admin.execute_batch(
            {
                **CONTRACT_BATCH,
                "operations": [{**CONTRACT_BATCH["operations"][1], "dependencies": ["nowhere"]}],
            }
        )


async def test_state_and_webhooks(admin: ProvisioningClient) -> None:
    task_id = await admin.create_servers("state-infra", "config.k")
    await eventually(lambda: admin.get_task(task_id), lambda t: t.finished)
    progress = await admin.workflow_progress(task_id)
    assert progress.progress == 100.0
    assert await admin.workflow_snapshots(task_id)
    metrics = await admin.system_metrics()
    assert metrics.total_workflows >= 1
    assert "cpu_usage" in metrics.system_load
    health = await admin.system_health()
    assert set(health.components) >= {"storage", "batch_coordinator", "monitoring"}
    stats = await admin.state_statistics()
    assert stats.total_workflows >= 1
    deliveries = await admin.list_webhook_deliveries(limit=5)
    assert deliveries.total is not None
    with pytest.raises(NotFoundError):
        await admin.workflow_progress(str(uuid.uuid4()))


async def test_checkpoints_rollback_and_restore(
    live: harness.LiveServices, start_orchestrator_process: Callable[..., Any]
) -> None:
    # Restore rewinds orchestrator state: an orchestrator with its own database keeps
    # that away from the tests sharing the session's orchestrator.
    own = start_orchestrator_process(MONGODB_DATABASE=f"orch_{uuid.uuid4().hex[:12]}")
    async with ProvisioningClient(own.url, live.control_center_url) as client:
        await client.login(live.admin_username, live.admin_password)
        checkpoint_id = await client.create_checkpoint("before_major_update", "e2e")
        batch = await client.execute_batch(CONTRACT_BATCH)
        await eventually(lambda: client.get_batch(batch.batch_id), lambda b: b.finished, 60)
        assert checkpoint_id in [c.id async for c in client.iter_checkpoints(page_size=1)]
        checkpoint = await client.get_checkpoint(checkpoint_id)
        assert checkpoint.name == "before_major_update"
        ledger = await client.list_rollback_operations(limit=50)
        assert len(ledger.items) == 5  # two servers and three taskservs
        result = await client.rollback(checkpoint_id=checkpoint_id)
        assert result.rollback_id
        assert (result.success, result.operations_executed) == (True, 5)
        assert await client.restore_checkpoint(checkpoint_id) == (
            f"State restored from checkpoint {checkpoint_id}"
        )
        assert (await client.rollback_statistics()).total_checkpoints >= 1
        with pytest.raises(NotFoundError):
            await client.get_checkpoint(str(uuid.uuid4()))


async def test_service_endpoints_and_readiness(
    admin: ProvisioningClient, live: harness.LiveServices
) -> None:
    assert (await admin.ready("orchestrator"))["status"] == "Ready"
    assert (await admin.ready("control_center"))["status"] == "Ready"
    async with new_client(live) as svc:
        grant = await svc.service_token(live.service_client_id, live.service_client_secret)
        assert grant.token_type == "Bearer"
        svc.use_token(grant.access_token)
        event_id = unique("sdk-e2e-")
        event = {
            "id": event_id,
            "timestamp": datetime.now(UTC).isoformat(),
            "user_id": None,
            "action": "server.create",
            "resource": f"servers/{event_id}",
            "result": "success",
            "details": {"source": "sdk e2e"},
        }
        assert (await svc.record_audit_event(event))["duplicate"] is False
        assert (await svc.record_audit_event(event))["duplicate"] is True
        # Users may not forge audit records (the service answers 401 "Invalid token type").
        with pytest.raises((AuthenticationError, PermissionDeniedError)):
            await admin.record_audit_event(event)
    found = (await admin.audit_logs(resource=f"servers/{event_id}")).items
    assert [(e.id, e.action) for e in found] == [(event_id, "server.create")]

    with pytest.raises(NotFoundError):
        await admin.get_webhook_delivery(str(uuid.uuid4()))
    with pytest.raises(NotFoundError):
        await admin.redeliver_webhook(str(uuid.uuid4()))


async def test_key_rotation_keeps_tokens_valid(
    services: Any, start_orchestrator_process: Callable[..., Any]
) -> None:
    """On a control center and orchestrator of its own: rotating the signing key on
    the shared ones would change what every later test of the session runs against."""
    cc = start_control_center(services.stack_env)
    try:
        orch = start_orchestrator_process(
            **orchestrator_env(cc.url), MONGODB_DATABASE=f"orch_{uuid.uuid4().hex[:12]}"
        )
        async with ProvisioningClient(orch.url, cc.url) as admin:
            await admin.login(ADMIN_USERNAME, ADMIN_PASSWORD)
            before = {k["kid"] for k in (await admin.jwks())["keys"]}
            assert (await admin.list_tasks(limit=1)).limit == 1
            await admin.rotate_signing_key()
            after = {k["kid"] for k in (await admin.jwks())["keys"]}
            assert before < after
            assert (await admin.me()).username == ADMIN_USERNAME
            assert (await admin.list_tasks(limit=1)).limit == 1
            # The orchestrator refetches the JWKS on an unknown kid at most every 2 s
            # (remote_auth.JwksCache.min_refresh_interval) and fetched it just now, so a
            # token of the new key is presented after that interval.
            await asyncio.sleep(2.5)
            async with ProvisioningClient(orch.url, cc.url) as fresh:
                await fresh.login(ADMIN_USERNAME, ADMIN_PASSWORD)
                assert (await fresh.list_tasks(limit=1)).limit == 1
    finally:
        cc.stop()


async def test_event_stream_reconnects_with_since(admin: ProvisioningClient) -> None:
    stream = admin.events(event_types=["TaskStatusChanged"], backoff=0.05)
    seen: list[str] = []
    statuses: dict[str, set[str]] = {}

    async def consume(until: Callable[[], bool]) -> None:
        async for event in stream:
            seen.append(event.id)
            task_id = str(event.get("task_id"))
            statuses.setdefault(task_id, set()).add(str(event.get("status")).lower())
            if until():
                return

    ids: dict[str, str] = {}  # events of other tests' tasks may arrive before ours exist

    async with stream:
        consumer = asyncio.create_task(
            consume(lambda: "completed" in statuses.get(ids.get("first", ""), ()))
        )
        await asyncio.wait_for(stream.connected.wait(), 10)
        await asyncio.sleep(0.3)  # the server subscribes right after the handshake
        ids["first"] = await admin.create_servers("events-one", "config.k")
        await asyncio.wait_for(consumer, 30)
        # Drop the connection, then let a whole task run while we are not connected.
        await stream.drop_connection()
        second = await admin.create_servers("events-two", "config.k")
        await eventually(lambda: admin.get_task(second), lambda t: t.finished)
        await asyncio.wait_for(consume(lambda: "completed" in statuses.get(second, ())), 30)
    assert stream.reconnects >= 1
    assert len(seen) == len(set(seen))
    assert {"running", "completed"} <= statuses[second]


def test_sync_client(live: harness.LiveServices) -> None:
    with SyncProvisioningClient(live.orchestrator_url, live.control_center_url) as client:
        client.login(live.admin_username, live.admin_password)
        task_id = client.create_servers("sync-infra", "config.k")
        assert client.get_task(task_id).id == task_id
        assert task_id in [t.id for t in client.iter_tasks(page_size=50)]
