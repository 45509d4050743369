"""Control-center metrics (module level, as prometheus_client expects)."""

from __future__ import annotations

from prometheus_client import Counter

LOGIN_ATTEMPTS = Counter(
    "control_center_login_attempts_total", "Login attempts by result", ["result"]
)
TOKENS_ISSUED = Counter("control_center_tokens_issued_total", "Tokens issued by type", ["typ"])
