"""Authentication and authorization of orchestrator requests.

How a handler uses it (one line)::

    from orchestrator.auth import authorize, requires

    principal = await authorize(request, "create", f"servers:{body['infra']}")

    # or, as a decorator whose resource may depend on the request and the parsed body:
    @requires("read", lambda request: f"tasks:{request.match_info['id']}")
    async def get_task(request: web.Request) -> web.Response: ...

- The middleware (installed by ``auth.setup``) authenticates every request except the
  public paths (``/health``, ``/ready``, ``/metrics``, ``/openapi.json``, ``/ws`` which
  authenticates itself): ``Authorization: Bearer <jwt>`` verified against the control
  center's JWKS, checked with ``/auth/introspect`` (positive answers cached ≤
  ``INTROSPECTION_CACHE_SECONDS``, dropped on a revocation event), then counts the general
  rate limit (100/min per user) → 401 / 429 / 503 in the envelope. ``/ws`` needs ``read``
  on ``tasks:*``.
- :func:`authorize` evaluates the shared policy engine on the cached policy set →
  403 when denied; returns the :class:`Principal` (``sub``, ``username``, ``roles``...).
- A handler that never calls ``authorize`` is refused (403) by the middleware:
  deny by default. Mark a handler that needs only authentication with ``@authenticated_only``.
- :func:`authenticate_token` authenticates a raw token (the ``/ws`` query parameter);
  :func:`authenticate_request` does the same and counts a failure against the caller's
  address (``AUTH_FAILURES_PER_MINUTE`` failures per window, then 429 for failures).
- :func:`authorize_all` checks many ``(action, resource, owner)`` at once (a batch's
  tasks, a rollback's compensations) before anything is created; :func:`may` answers
  a yes/no for filters (``/ws`` events). Resource names: ``resources.py``; ``owner``
  (the creator's ``sub``) reaches policy conditions as ``request.owner``.
"""

from provisioning_common.remote_auth import Principal

from .core import (
    PRINCIPAL,
    authenticate_request,
    authenticate_token,
    authenticated_only,
    authorize,
    authorize_all,
    may,
    requires,
)
from .settings import AuthSettings

__all__ = [
    "PRINCIPAL",
    "AuthSettings",
    "Principal",
    "authenticate_request",
    "authenticate_token",
    "authenticated_only",
    "authorize",
    "authorize_all",
    "may",
    "requires",
]
