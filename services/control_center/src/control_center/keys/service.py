"""The key ring (the active signing key plus the previous public keys) and
:class:`KeyService`, the use cases of the ``keys`` endpoints.

Keys come from configuration (a mounted secret: the active private key and any
retired keys) or, for local runs, from MongoDB, where the first replica to start
generates one and rotation adds a generation; every replica reloads periodically,
so tokens signed by a key another replica just created verify everywhere."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from jose import jwk, jwt
from jose.backends.base import Key

from provisioning_common.errors import Conflict
from provisioning_common.timeutil import as_utc, utcnow
from provisioning_common.tokens import ALGORITHM

from ..audit.service import AuditLog
from .model import KeyMaterial, KeyStore, generate_private_pem, material_from_pem
from .repository import KeyRepository

log = logging.getLogger(__name__)

KEEP_GENERATIONS = 3  # the active key and at least two previous ones stay in the JWKS
LOOKBACK = 20  # generations read from the store when choosing which to keep


class KeyRingError(Exception):
    pass


class KeyRing:
    def __init__(self, retention_seconds: int = 0) -> None:
        # a retired key stays while tokens it signed can still be valid
        self.retention_seconds = retention_seconds
        self.active: KeyMaterial | None = None
        self._signer: Key | None = None
        self.keys: dict[str, Key] = {}
        self.materials: list[KeyMaterial] = []
        self.from_config = False
        self._last_reload = 0.0

    # -- loading -------------------------------------------------------------------------
    def load_from_config(self, private_pem: str, previous: tuple[str, ...] = ()) -> None:
        try:
            active = material_from_pem(private_pem)
            older = [material_from_pem(p) for p in previous]
        except ValueError as exc:
            raise KeyRingError(f"invalid JWT key: {exc}") from exc
        self.from_config = True
        self._install(active, older)

    async def load_from_store(self, repo: KeyStore) -> None:
        """Load the newest generations; generate the first key when there is none."""
        docs = await repo.recent(LOOKBACK)
        if not docs:
            pem = generate_private_pem()
            material = material_from_pem(pem)
            if await repo.claim_generation(1, material.kid, pem):
                log.info("generated the first signing key", extra={"kid": material.kid})
            docs = await repo.recent(LOOKBACK)
        if not docs:
            raise KeyRingError("no signing key in the store")
        self._install_docs(docs)

    async def reload(self, repo: KeyStore) -> None:
        if self.from_config:
            return
        docs = self._select(await repo.recent(LOOKBACK))
        if docs and (
            self.active is None
            or [d["kid"] for d in docs] != [m.kid for m in self.materials]
            or len(docs) != len(self.materials)
        ):
            self._install_docs(docs)
        self._last_reload = time.monotonic()

    async def reload_if_stale(self, repo: KeyStore, min_interval: float = 2.0) -> bool:
        """Reload after an unknown ``kid`` at most every ``min_interval`` seconds."""
        if self.from_config or time.monotonic() - self._last_reload < min_interval:
            return False
        await self.reload(repo)
        return True

    async def rotate(self, repo: KeyStore) -> str:
        if self.from_config:
            raise KeyRingError("keys come from configuration; rotate the mounted secret")
        docs = await repo.recent(1)
        generation = int(docs[0]["generation"]) + 1 if docs else 1
        pem = generate_private_pem()
        material = material_from_pem(pem)
        if not await repo.claim_generation(generation, material.kid, pem):
            log.info("another replica rotated first", extra={"generation": generation})
        await self.reload(repo)
        assert self.active is not None
        return self.active.kid

    def _select(self, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Newest first: keep the first ``KEEP_GENERATIONS`` and any older key retired
        (i.e. succeeded) less than ``retention_seconds`` ago."""
        cutoff = utcnow() - timedelta(seconds=self.retention_seconds)
        kept = []
        for index, doc in enumerate(docs):
            retired = docs[index - 1]["created_at"] if index else None
            if index < KEEP_GENERATIONS or (retired is not None and as_utc(retired) > cutoff):
                kept.append(doc)
        return kept

    def _install_docs(self, docs: list[dict[str, Any]]) -> None:
        docs = self._select(docs)
        materials = [material_from_pem(str(d["private_pem"])) for d in docs]
        self._install(materials[0], materials[1:])

    def _install(self, active: KeyMaterial, older: list[KeyMaterial]) -> None:
        if active.private_pem is None:
            raise KeyRingError("the active key must be a private key")
        # Parse once: building a key from PEM on every sign/verify would dominate latency.
        signer = jwk.construct(active.private_pem, ALGORITHM)
        keys = {m.kid: jwk.construct(m.public_pem, ALGORITHM) for m in [active, *older]}
        self.active, self._signer, self.keys = active, signer, keys
        self.materials = [active, *older]
        self._last_reload = time.monotonic()

    # -- use -----------------------------------------------------------------------------
    def sign(self, claims: Mapping[str, Any]) -> str:
        if self._signer is None or self.active is None:
            raise KeyRingError("no signing key loaded")
        token: str = jwt.encode(
            dict(claims), self._signer, algorithm=ALGORITHM, headers={"kid": self.active.kid}
        )
        return token

    def sign_detached(self, message: Callable[[str], bytes]) -> tuple[str, bytes]:
        """An RS256 signature (PKCS #1 v1.5, SHA-256) of ``message(kid)`` with the
        active key; the key id and the raw signature. Used for audit checkpoints."""
        if self._signer is None or self.active is None:
            raise KeyRingError("no signing key loaded")
        kid = self.active.kid
        signature: bytes = self._signer.sign(message(kid))
        return kid, signature

    def verify_detached(self, kid: str, data: bytes, signature: bytes) -> bool | None:
        """True/False for a key in the ring; None when ``kid`` is not (or no longer) one."""
        key = self.keys.get(kid)
        if key is None:
            return None
        return bool(key.verify(data, signature))

    @property
    def verification_keys(self) -> Mapping[str, Key]:
        return self.keys

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [m.jwks_entry() for m in self.materials]}


class KeyService:
    """The public key set and audited rotation."""

    def __init__(self, keyring: KeyRing, keys: KeyRepository, audit: AuditLog) -> None:
        self._keyring = keyring
        self._keys = keys
        self._audit = audit

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return self._keyring.jwks()

    async def rotate(self, actor: str) -> str:
        """Rotate the signing key; the new key id. Conflict when keys come from
        configuration."""
        try:
            kid = await self._keyring.rotate(self._keys)
        except KeyRingError as exc:
            raise Conflict(str(exc)) from exc
        await self._audit.record(
            action="keys.rotate",
            resource=f"keys/{kid}",
            result="success",
            user_id=actor,
        )
        return kid
