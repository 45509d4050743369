"""Header-based API versioning: ``Accept: application/vnd.provisioning.v1+json``."""

from __future__ import annotations

import re

from .errors import NotAcceptable

CURRENT_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})
_VENDOR = re.compile(r"application/vnd\.provisioning\.v(\d+)\+json", re.IGNORECASE)


def negotiate_version(accept: str | None) -> int:
    """Return the API version the client asked for; 406 for one we do not serve.

    No vendor type (``*/*``, ``application/json`` or no header) means the current
    version. Several vendor types: the first supported one wins."""
    if not accept:
        return CURRENT_VERSION
    asked = [int(m.group(1)) for m in _VENDOR.finditer(accept)]
    if not asked:
        return CURRENT_VERSION
    for version in asked:
        if version in SUPPORTED_VERSIONS:
            return version
    raise NotAcceptable(
        "Unsupported API version; supported: "
        + ", ".join(f"application/vnd.provisioning.v{v}+json" for v in sorted(SUPPORTED_VERSIONS))
    )
