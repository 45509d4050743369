"""Webhook deliveries: orchestrator events → one outbox item per subscribed
endpoint → signed HTTP POSTs with retries (see ``docs/webhooks.md``).

The publisher inserts every event that becomes a delivery into the bounded
``event_inbox`` (MongoDB, durable; :meth:`WebhookService.wants` chooses, see
``EventPublisher.route_to_inbox``), in the same gather as its ``events`` insert.
Every replica drains the inbox oldest first: it enqueues the event's deliveries, then
deletes the entry by ``_id``. Several replicas may handle the same entry; the outbox
item id ``<event id>:<endpoint id>`` is taken with ``claim()``, so each event reaches
each endpoint once however many replicas handle it, and an entry stays in the inbox
until a replica has handled it (an event published while no replica scanned is still
delivered). Nothing reads ``events`` (history; DESIGN §3 cost rule). Redis pub/sub on
``EVENTS_CHANNEL`` only wakes the scan early.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import aiohttp

from provisioning_common.aio import BackgroundTasks, wait_event
from provisioning_common.envelope import format_timestamp
from provisioning_common.events import EVENTS_CHANNEL, EventBus
from provisioning_common.mongo import Document, IndexSpec
from provisioning_common.outbox import AttemptResult, Outbox, OutboxItem, RetryPolicy
from provisioning_common.webhooks import build_signed_delivery, serialize_unsigned

from ..metrics import WEBHOOK_DELIVERIES
from .config import WebhookSettings, display_url
from .model import webhook_data, webhook_event
from .ports import EventInbox, TaskLookup

log = logging.getLogger(__name__)

PAGE = 200  # inbox entries per read
USER_AGENT = "provisioning-orchestrator-webhooks/1"
_MAX_RESPONSE_BYTES = 64 * 1024
# ``GET /webhooks/deliveries`` filters finished deliveries (``webhook_history``) by
# one of these fields, newest first (MongoDB; the in-flight outbox is small).
HISTORY_INDEXES = tuple(
    IndexSpec([(name, 1), ("created_at", -1), ("_id", -1)], f"{name}_created")
    for name in ("status", "event", "endpoint_id", "event_id")
)


class WebhookService:
    def __init__(
        self,
        settings: WebhookSettings,
        outbox_db: Any,
        events: EventInbox,
        *,
        bus: EventBus | None = None,
        task_lookup: TaskLookup | None = None,
    ) -> None:
        self.settings = settings
        self.events = events
        self.bus = bus
        self.task_lookup = task_lookup
        policy = RetryPolicy(
            max_attempts=settings.max_attempts,
            base_delay=settings.backoff_base_seconds,
            max_delay=settings.backoff_max_seconds,
            attempt_timeout=settings.timeout_seconds + 5,
            lease_seconds=settings.timeout_seconds + 30,
            poll_interval=settings.poll_seconds,
        )
        self.outbox = Outbox(
            outbox_db,
            "webhook",
            self._deliver,
            policy,
            on_attempt=self._count,
            history_indexes=HISTORY_INDEXES,
        )
        self._session: aiohttp.ClientSession | None = None
        self._wake = asyncio.Event()
        self._loops = BackgroundTasks()

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.outbox.ensure_indexes()
        if not self.settings.enabled:
            return  # the API still lists past deliveries
        self._session = aiohttp.ClientSession(
            headers={"User-Agent": USER_AGENT}, cookie_jar=aiohttp.DummyCookieJar()
        )
        self._loops.start(self._scan_loop(), "webhooks-scan")
        self._loops.start(self.outbox.run(), "webhooks-outbox")
        if self.bus is not None:
            self._loops.start(self._listen(), "webhooks-listen")

    async def stop(self) -> None:
        await self._loops.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------ events → outbox

    def wants(self, event_type: str, data: Mapping[str, Any]) -> bool:
        """Whether an orchestrator event becomes a delivery (``WebhookSettings.wants``)."""
        return self.settings.wants(event_type, data)

    async def _scan_loop(self) -> None:
        while True:
            try:
                await self.scan_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("webhook event scan failed: %s", type(exc).__name__)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await wait_event(self._wake, self.settings.poll_seconds)

    async def _listen(self) -> None:
        assert self.bus is not None
        while True:
            try:
                async for _channel, payload in self.bus.subscribe(EVENTS_CHANNEL):
                    if self.wants(str(payload.get("event_type")), payload.get("data") or {}):
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down: the scan still runs on its timer
                log.warning("webhook event subscription lost: %s", type(exc).__name__)
                await asyncio.sleep(1)

    async def scan_once(self) -> int:
        """Enqueue the deliveries of every event in ``event_inbox``, oldest first,
        deleting each entry once its deliveries are enqueued; returns how many entries
        this call handled. An entry whose handling fails stays for the next scan (the
        entries after it are still handled)."""
        handled = 0
        while True:
            page = await self.events.inbox_page(PAGE)
            failed = 0
            for event in page:
                try:
                    await self.handle_event(event)
                    await self.events.remove_from_inbox(str(event["id"]))
                except Exception as exc:
                    failed += 1
                    log.warning("webhook inbox entry kept: %s", type(exc).__name__)
                    continue
                handled += 1
            if failed or len(page) < PAGE:
                return handled

    async def handle_event(self, event: Mapping[str, Any]) -> int:
        """Enqueue one delivery per subscribed endpoint; returns how many this call created."""
        name = webhook_event(str(event.get("event_type")), event.get("data") or {})
        if name is None or not self.settings.enabled:
            return 0
        endpoints = self.settings.subscribed(name)
        if not endpoints:
            return 0
        extra = await self._extra(name, event)
        timestamp = event.get("timestamp")
        if isinstance(timestamp, datetime):
            timestamp = format_timestamp(timestamp)
        body = serialize_unsigned(name, str(timestamp), webhook_data(name, event, extra))
        created = 0
        for endpoint in endpoints:
            item_id = f"{event['id']}:{endpoint.id}"
            fields = {
                "event": name,
                "event_id": str(event["id"]),
                "endpoint_id": endpoint.id,
                "url": display_url(endpoint.url),
            }
            payload = {"body": body.decode(), "endpoint_id": endpoint.id}
            if await self.outbox.enqueue(item_id, name, payload, fields=fields):
                created += 1
        return created

    async def _extra(self, name: str, event: Mapping[str, Any]) -> dict[str, Any]:
        """For task events: the task's name, output and error, as the contract's example."""
        task_id = (event.get("data") or {}).get("task_id")
        if not name.startswith("task.") or not task_id or self.task_lookup is None:
            return {}
        try:
            task = await self.task_lookup(str(task_id))
        except Exception as exc:
            log.warning("task lookup for webhook failed: %s", type(exc).__name__)
            return {}
        if not task:
            return {}
        keys = ("name", "output", "error", "batch_id", "operation_id")
        return {k: task.get(k) for k in keys if task.get(k) is not None}

    # ------------------------------------------------------------ the API

    async def deliveries(
        self, filters: Mapping[str, Any], *, limit: int, offset: int
    ) -> tuple[list[Document], int]:
        """A page of deliveries, newest first, each with its ``attempt_log``, and the total."""
        docs, total = await self.outbox.find_items(filters, limit=limit, offset=offset)
        attempts = await self.outbox.attempts_for(docs)
        return [_with_attempt_log(d, attempts.get(str(d["_id"]), [])) for d in docs], total

    async def delivery(self, delivery_id: str) -> Document | None:
        """One delivery with its ``attempt_log``; None when unknown."""
        doc = await self.outbox.get(delivery_id)
        if doc is None:
            return None
        attempts = await self.outbox.attempts_for([doc])
        return _with_attempt_log(doc, attempts.get(delivery_id, []))

    async def redeliver(self, delivery_id: str) -> bool:
        """Re-arm a finished delivery; False while it is still being delivered."""
        return await self.outbox.redeliver(delivery_id)

    # ------------------------------------------------------------ delivering

    async def _deliver(self, item: OutboxItem, attempt: int) -> AttemptResult:
        endpoint = self.settings.endpoint(str(item.payload.get("endpoint_id")))
        if endpoint is None:
            return AttemptResult(ok=False, error="endpoint no longer configured", retry=False)
        if self._session is None:
            return AttemptResult(ok=False, error="webhooks disabled")
        signed = build_signed_delivery(
            endpoint.secret,
            event=item.kind,
            delivery_id=item.id,
            unsigned_body=str(item.payload["body"]).encode(),
        )
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_seconds)
        try:
            async with self._session.post(
                endpoint.url,
                data=signed.body,
                headers=signed.headers,
                allow_redirects=False,  # a redirect is a failure, never followed
                timeout=timeout,
            ) as response:
                await response.content.read(_MAX_RESPONSE_BYTES)
                status = response.status
        except TimeoutError:
            return AttemptResult(ok=False, error="timeout")
        except aiohttp.ClientError as exc:
            return AttemptResult(ok=False, error=f"connection error: {type(exc).__name__}")
        if 200 <= status < 300:
            return AttemptResult(ok=True, status_code=status)
        if 300 <= status < 400:
            return AttemptResult(ok=False, status_code=status, error="redirect not followed")
        return AttemptResult(ok=False, status_code=status, error=f"HTTP {status}")

    @staticmethod
    def _count(item: OutboxItem, result: AttemptResult, outcome: str) -> None:
        WEBHOOK_DELIVERIES.labels(outcome).inc()


def _with_attempt_log(doc: Document, attempts: Sequence[Mapping[str, Any]]) -> Document:
    """The delivery ``DeliveryView`` dumps: its item with its attempt records (takeover
    markers, which carry no ``attempt``, left out)."""
    return {**doc, "attempt_log": [a for a in attempts if "attempt" in a]}
