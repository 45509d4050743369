"""What the users slice needs of the policies slice, as a protocol the container wires
(``control_center.container``); the policies slice's repository satisfies it
structurally, and is not imported here."""

from __future__ import annotations

from typing import Protocol


class BootstrapMarkers(Protocol):
    """Markers that something happened once (they live with the policies)."""

    async def claim_marker(self, name: str) -> bool: ...

    async def has_marker(self, name: str) -> bool: ...
