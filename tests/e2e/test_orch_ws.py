"""/ws: reconnect with ``since`` receives exactly the missed events, then live ones."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
import requests

from tests.e2e.conftest import Services

pytestmark = pytest.mark.e2e


async def _until_final(
    ws: aiohttp.ClientWebSocketResponse,
    task_id: str,
    into: list[dict[str, Any]],
    timeout: float = 30,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = await ws.receive(timeout=deadline - time.monotonic())
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        event = json.loads(msg.data)
        if event["event_type"] == "Heartbeat":
            continue
        into.append(event)
        if event["data"].get("task_id") == task_id and event["data"].get("status") == "completed":
            return
    raise AssertionError("no completion event")


def _submit(services: Services, infra: str) -> str:
    resp = requests.post(
        f"{services.orch_url}/workflows/servers/create",
        json={"infra": infra, "settings": "c.k"},
        headers=services.headers(),
        timeout=10,
    )
    assert resp.status_code == 200
    return str(resp.json()["data"])


def test_reconnect_with_since_replays_exactly_the_missed_events(services: Services) -> None:
    async def run() -> None:
        base = f"{services.ws_url}?token={services.admin_token}&events=TaskStatusChanged"
        async with aiohttp.ClientSession() as session:
            live = await session.ws_connect(base)
            client = await session.ws_connect(base)
            first = await asyncio.to_thread(_submit, services, "ws-first")
            seen: list[dict[str, Any]] = []
            await _until_final(client, first, seen)
            await client.close()
            last_id = seen[-1]["id"]
            live_seen: list[dict[str, Any]] = []
            await _until_final(live, first, live_seen)
            missed = await asyncio.to_thread(_submit, services, "ws-missed")
            await _until_final(live, missed, live_seen)
            expected = [e for e in live_seen if e["id"] > last_id]
            assert [e["data"]["status"] for e in expected if e["data"]["task_id"] == missed] == [
                "pending",
                "running",
                "completed",
            ]
            resumed = await session.ws_connect(f"{base}&since={last_id}")
            replayed: list[dict[str, Any]] = []
            await _until_final(resumed, missed, replayed)
            assert replayed == expected
            # ...and then live events continue without duplicates.
            later = await asyncio.to_thread(_submit, services, "ws-later")
            after: list[dict[str, Any]] = []
            await _until_final(resumed, later, after)
            assert [e["data"]["status"] for e in after if e["data"]["task_id"] == later] == [
                "pending",
                "running",
                "completed",
            ]
            ids = [e["id"] for e in replayed + after]
            assert len(ids) == len(set(ids))
            assert ids == sorted(ids)
            await resumed.close()
            await live.close()

    asyncio.run(run())


def test_ws_filter_and_bad_parameters(services: Services) -> None:
    token = services.admin_token
    for query in ["events=", "events=bad type", "since=nope", "since=1", "foo=1"]:
        resp = requests.get(f"{services.orch_url}/ws?token={token}&{query}", timeout=10)
        assert resp.status_code == 400, query
        assert resp.json()["success"] is False

    async def run() -> list[str]:
        url = f"{services.ws_url}?token={token}&events=TaskProgress"
        types: list[str] = []
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            await asyncio.to_thread(_submit, services, "ws-filter-sleep1")
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and len(types) < 2:
                msg = await ws.receive(timeout=deadline - time.monotonic())
                event = json.loads(msg.data)
                if event["event_type"] != "Heartbeat":
                    types.append(event["event_type"])
        return types

    types = asyncio.run(run())
    assert types
    assert set(types) == {"TaskProgress"}
