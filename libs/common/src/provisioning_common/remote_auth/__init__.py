"""Verifying callers against the control center (DESIGN §4, docs/interfaces.md).

- :class:`JwksCache`: the control center's public keys, refreshed on an unknown ``kid``
  (single flight, at most once per interval).
- :class:`ServiceTokenClient`: this service's own token from ``POST /auth/token``.
- :class:`Introspector`: ``POST /auth/introspect`` with a positive answer cached for at
  most ``ttl`` seconds, dropped at once on a revocation event.
- :class:`PolicyCache`: the whole policy set from ``GET /policies`` (every page, all or
  nothing), reloaded on ``policies.changed`` (and periodically as a backstop).
- :class:`RemoteAuth`: the facade a service uses: ``authenticate(token)`` → :class:`Principal`,
  ``decide(principal, action, resource, request)`` → policy ``Decision``,
  ``listen()`` (run as a background task) for the Redis channels.

Errors raised are the shared :mod:`provisioning_common.errors` ones: 401 for a bad,
expired or revoked token, 503 when the control center cannot be reached and no valid
cache entry exists.

Modules: :mod:`.control_center` (HTTP plumbing, the service token), :mod:`.jwks`,
:mod:`.introspection`, :mod:`.policies` (the caches), :mod:`.principal` and
:mod:`.facade` (:class:`RemoteAuth`).
"""

from __future__ import annotations

from .control_center import ControlCenterUnavailable, ServiceTokenClient
from .facade import RemoteAuth, RemoteAuthConfig
from .introspection import Introspector
from .jwks import JwksCache
from .policies import PolicyCache
from .principal import Principal, revokes

__all__ = [
    "ControlCenterUnavailable",
    "Introspector",
    "JwksCache",
    "PolicyCache",
    "Principal",
    "RemoteAuth",
    "RemoteAuthConfig",
    "ServiceTokenClient",
    "revokes",
]
