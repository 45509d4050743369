"""bcrypt hashing off the event loop (each check costs ~0.25 s at cost 12)."""

from __future__ import annotations

import asyncio

import bcrypt


def _hash(password: str, rounds: int) -> bytes:
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds))


def _check(password: str, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password.encode("utf-8"), hashed)
    except ValueError:  # over 72 bytes or a malformed hash: never a 500
        return False


async def hash_password(password: str, rounds: int) -> str:
    return (await asyncio.to_thread(_hash, password, rounds)).decode("ascii")


async def check_password(password: str, hashed: str | bytes) -> bool:
    raw = hashed.encode("ascii") if isinstance(hashed, str) else hashed
    return await asyncio.to_thread(_check, password, raw)


def dummy_hash(rounds: int) -> bytes:
    """A hash at the configured cost, checked for unknown users so that they cost
    the same time as a wrong password."""
    return _hash("no-such-user-dummy-password", rounds)
