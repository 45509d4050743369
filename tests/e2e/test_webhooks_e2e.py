"""Webhooks through a real orchestrator process configured by a TOML file: a
workflow's completion and failure reach a real local receiver, signed; the
deliveries API lists them with their attempts and re-sends one; permissions and
bad input are answered in the envelope."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from aiohttp import web
from aiohttp.test_utils import TestServer

from provisioning_common.webhooks import WebhookVerificationError, verify_request
from tests.e2e.conftest import Services
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.e2e
SECRET = "e2e-webhook-secret"


def write_config(path: Path, url: str) -> Path:
    path.write_text(
        "[webhooks]\n"
        "enabled = true\n"
        "backoff_base_seconds = 0.1\n"
        "backoff_max_seconds = 0.5\n"
        "poll_seconds = 0.1\n"
        "endpoints = [\n"
        f'  {{ url = "{url}", events = ["task.completed", "task.failed"], secret = "{SECRET}" }},\n'
        "]\n"
    )
    return path


def submit(url: str, headers: dict[str, str], infra: str) -> str:
    body = {"infra": infra, "settings": "config.k", "check_mode": False, "wait": True}
    resp = requests.post(f"{url}/workflows/servers/create", json=body, headers=headers, timeout=10)
    assert resp.status_code in (200, 201, 202), resp.text
    return str(resp.json()["data"])


async def test_webhooks_through_the_orchestrator(
    services: Services,
    start_orchestrator_process: Callable[..., ServiceProcess],
    tmp_path: Path,
) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify_request(SECRET, body, request.headers)
        except WebhookVerificationError:
            return web.Response(status=401)
        received.append({"headers": dict(request.headers), "payload": json.loads(body)})
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app)
    await server.start_server()
    try:
        config = write_config(tmp_path / "provisioning.toml", str(server.make_url("/hook")))
        orch = await asyncio.to_thread(
            start_orchestrator_process,
            PROVISIONING_CONFIG=str(config),
            MONGODB_DATABASE=f"orch_wh_{uuid.uuid4().hex[:10]}",
        )
        headers = services.headers()
        ok_id = await asyncio.to_thread(submit, orch.url, headers, "production")
        bad_id = await asyncio.to_thread(submit, orch.url, headers, "prod-fail")
        for _ in range(300):
            if len(received) >= 2:
                break
            await asyncio.sleep(0.1)
        events = {r["payload"]["data"]["task_id"]: r for r in received}
        assert set(events) == {ok_id, bad_id}
        assert events[ok_id]["payload"]["event"] == "task.completed"
        assert events[bad_id]["payload"]["event"] == "task.failed"
        assert events[ok_id]["headers"]["X-Provisioning-Event"] == "task.completed"

        def api(method: str, path: str, token: str | None = None, **params: str) -> Any:
            return requests.request(
                method,
                f"{orch.url}{path}",
                params=params,
                headers=services.headers(token),
                timeout=10,
            )

        # The receiver has the events before the orchestrator has read its 200 and
        # recorded the deliveries as succeeded: wait for that record.
        for _ in range(100):
            listing = await asyncio.to_thread(api, "GET", "/webhooks/deliveries")
            assert listing.status_code == 200, listing.text
            items = listing.json()["data"]
            if {i["status"] for i in items} == {"succeeded"}:
                break
            await asyncio.sleep(0.1)
        assert listing.headers["X-Total-Count"] == "2"
        assert {i["status"] for i in items} == {"succeeded"}
        assert all(len(i["attempt_log"]) == 1 for i in items)
        assert "secret" not in listing.text

        failed_only = await asyncio.to_thread(
            api, "GET", "/webhooks/deliveries", event="task.failed"
        )
        assert [i["event"] for i in failed_only.json()["data"]] == ["task.failed"]

        one = items[0]["id"]
        again = await asyncio.to_thread(api, "POST", f"/webhooks/deliveries/{one}/redeliver")
        assert again.status_code == 202, again.text
        for _ in range(100):
            if len(received) >= 3:
                break
            await asyncio.sleep(0.1)
        assert len(received) == 3
        assert received[2]["headers"]["X-Provisioning-Delivery"] == one

        missing = await asyncio.to_thread(api, "POST", "/webhooks/deliveries/nope/redeliver")
        assert missing.status_code == 404
        assert missing.json() == {"success": False, "error": "Delivery not found"}
        bad = await asyncio.to_thread(api, "GET", "/webhooks/deliveries", status="bogus")
        assert bad.status_code == 400
        assert bad.json()["success"] is False
        viewer = await asyncio.to_thread(services.user_token, "viewer")
        denied = await asyncio.to_thread(api, "GET", "/webhooks/deliveries", viewer)
        assert denied.status_code == 403
        anonymous = requests.get(f"{orch.url}/webhooks/deliveries", timeout=10)
        assert anonymous.status_code == 401
    finally:
        await server.close()
