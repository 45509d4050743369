"""Signed webhooks for ``task.completed``, ``task.failed``, ``batch.completed``,
``batch.failed`` and ``rollback.completed`` (``docs/webhooks.md``).

Configured by the TOML ``[webhooks]`` section (``PROVISIONING_CONFIG``, read into
``Settings.webhooks``). Fed by the event publisher through the bounded ``event_inbox``:
when endpoints are configured the container routes the publisher to the inbox
(:func:`inbox_route`) as it creates it, before the engine can publish. Delivered through
the durable outbox of :mod:`provisioning_common.outbox`; inspected and re-sent with
``GET /webhooks/deliveries`` and ``POST /webhooks/deliveries/{id}/redeliver``
(``setup.py``).
"""

from __future__ import annotations

from ..events.publisher import InboxRoute
from .config import WebhookSettings
from .service import WebhookService

__all__ = ["WebhookService", "WebhookSettings", "inbox_route"]


def inbox_route(settings: WebhookSettings) -> InboxRoute | None:
    """What the publisher should copy to the webhook inbox (None: nothing)."""
    return InboxRoute(settings.wants) if settings.routes_events else None
