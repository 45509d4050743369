"""Users: roles, the password policy and the public view (no hashes, no secrets)."""

from __future__ import annotations

import re
from typing import Any

ROLES = ("admin", "operator", "viewer", "auditor")
SERVICE_ROLE = "service"
USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,63}$"
USERNAME_RE = re.compile(USERNAME_PATTERN)
BCRYPT_MAX_BYTES = 72  # bcrypt ignores (bcrypt 5: rejects) anything longer


def password_problems(password: str, min_length: int) -> list[str]:
    """Reasons ``password`` is not acceptable as a new password (empty: fine)."""
    problems: list[str] = []
    if len(password) < min_length:
        problems.append(f"Password must be at least {min_length} characters long")
    if len(password.encode("utf-8")) > BCRYPT_MAX_BYTES:
        problems.append(f"Password must be at most {BCRYPT_MAX_BYTES} bytes long")
    classes = sum(
        bool(re.search(pattern, password))
        for pattern in (r"[a-z]", r"[A-Z]", r"[0-9]", r"[^A-Za-z0-9]")
    )
    if classes < 2:
        problems.append("Password must mix at least two of: lowercase, uppercase, digits, symbols")
    if password.strip() != password:
        problems.append("Password must not start or end with whitespace")
    return problems


def username_key(username: str) -> str:
    """Usernames are unique regardless of case."""
    return username.strip().lower()


def login_user(doc: dict[str, Any]) -> dict[str, Any]:
    """The ``user`` object of the login response, exactly the contract's fields."""
    return {
        "id": doc["_id"],
        "username": doc["username"],
        "email": doc.get("email"),
        "roles": list(doc.get("roles", [])),
    }
