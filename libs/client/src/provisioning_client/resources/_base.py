"""What every resource namespace shares: the transport it sends through."""

from __future__ import annotations

from ..transport import Transport


class Resource:
    """A group of endpoints (``client.tasks``, ``client.users``...) over one transport."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
