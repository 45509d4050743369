"""The tamper-evident audit chain: its canonical hashing, checkpoint messages and
:class:`ChainVerifier` (pure code, no I/O). The offline verification of an export is in
:mod:`provisioning_client.audit_offline`.

This module is the single definition of the chain's rules, part of the public
contract the SDK verifies offline: the control center imports it to hash, link,
sign and verify (``control_center.audit.chain_service``).

Every chained record is hashed as the canonical JSON (sorted keys, no whitespace,
ASCII, instants as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` in UTC: MongoDB keeps milliseconds)
of its wire form ``{id, timestamp, user_id, action, resource, result, details}``
plus ``prev_hash``; the first record's ``prev_hash`` is :data:`GENESIS`. A
checkpoint signs ``{seq, hash, signed_at, kid}``: RS256 (RSASSA-PKCS1-v1_5 with
SHA-256) over :data:`CHECKPOINT_CONTEXT` + its canonical JSON, so a tail cut off
below a signed head is detectable."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64
CHECKPOINT_CONTEXT = b"provisioning-audit-checkpoint/v1\n"
RECORD_FIELDS = ("id", "timestamp", "user_id", "action", "resource", "result", "details")
KINDS = ("modified", "missing", "reordered", "truncated")


def iso_ms(value: datetime) -> str:
    """The fixed instant form: UTC, milliseconds (truncated, as BSON stores them), ``Z``."""
    moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# one encoder, built once: ``json.dumps`` with options builds a new one per call
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
)


def canonical_bytes(value: Any) -> bytes:
    return _CANONICAL.encode(value).encode("ascii")


def hash_canonical(record_bytes: bytes, prev_hash: str) -> str:
    """SHA-256 hex of the canonical JSON ``{"prev_hash": ..., "record": ...}`` given
    the record's canonical bytes, which an export line carries verbatim (so an
    offline check hashes them as they are, without parsing and re-encoding)."""
    body = b'{"prev_hash":' + canonical_bytes(prev_hash) + b',"record":' + record_bytes + b"}"
    return hashlib.sha256(body).hexdigest()


def record_hash(record: Mapping[str, Any], prev_hash: str) -> str:
    """SHA-256 hex of the wire record together with ``prev_hash``. The position is
    bound by the link, not by ``seq`` itself: a record moved elsewhere keeps a valid
    hash but no longer follows its predecessor (``reordered``)."""
    return hash_canonical(canonical_bytes(record), prev_hash)


def checkpoint_message(seq: int, hash_: str, signed_at: str, kid: str) -> bytes:
    """The bytes a checkpoint's signature covers."""
    return CHECKPOINT_CONTEXT + canonical_bytes(
        {"seq": seq, "hash": hash_, "signed_at": signed_at, "kid": kid}
    )


@dataclass(frozen=True, slots=True)
class Link:
    """A chained record's place: its ``seq``, the hash before it and its own hash."""

    seq: int
    prev_hash: str
    hash: str


def link(records: list[dict[str, Any]], head_seq: int, head_hash: str) -> list[Link]:
    """Chain ``records`` (wire form) after the head ``(head_seq, head_hash)``."""
    links: list[Link] = []
    seq, prev = head_seq, head_hash
    for record in records:
        seq += 1
        digest = record_hash(record, prev)
        links.append(Link(seq, prev, digest))
        prev = digest
    return links


@dataclass(frozen=True, slots=True)
class ChainError:
    seq: int
    kind: str  # one of KINDS
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "detail": self.detail}


# A checkpoint's signature check: True valid, False invalid, None unknown key (a key
# retired from the key set can no longer be checked; such checkpoints are counted).
SignatureCheck = Callable[[Mapping[str, Any]], bool | None]


class ChainVerifier:
    """Checks a chain fed in ``seq`` order, stopping at the first error.

    Feed the checkpoints first (:meth:`checkpoint`), then every record
    (:meth:`record`) or the absence of one (:meth:`absent`), then :meth:`finish`
    with the unsigned head hint if any. ``from_seq`` > 1 trusts the first record's
    ``prev_hash``; ``to_seq`` bounds the records (and checkpoints) that matter."""

    def __init__(
        self,
        check_signature: SignatureCheck | None = None,
        from_seq: int = 1,
        to_seq: int | None = None,
    ) -> None:
        self._check_signature = check_signature
        self.from_seq = max(1, from_seq)
        self.to_seq = to_seq
        self.expected = self.from_seq
        self.last_hash: str | None = GENESIS if self.from_seq == 1 else None
        self.last_seq = self.from_seq - 1
        self.checked = 0
        self.checkpoints = 0
        self.unverified_checkpoints = 0
        self.error: ChainError | None = None
        self._pending: dict[int, str] = {}  # checkpoint seq -> signed hash
        self._max_checkpoint = 0
        self.signed_through = 0  # the newest checkpoint whose signature verifies

    @property
    def failed(self) -> bool:
        return self.error is not None

    def _fail(self, seq: int, kind: str, detail: str) -> bool:
        if self.error is None:
            self.error = ChainError(seq, kind, detail)
        return False

    def _in_range(self, seq: int) -> bool:
        return seq >= self.from_seq and (self.to_seq is None or seq <= self.to_seq)

    def checkpoint(self, cp: Mapping[str, Any]) -> bool:
        if self.error is not None:
            return False
        try:
            seq, digest = int(cp["seq"]), str(cp["hash"])
        except (KeyError, TypeError, ValueError):
            return self._fail(0, "modified", "malformed checkpoint")
        if not self._in_range(seq):
            return True
        if seq < self.expected:
            # Checkpoints come before the records they cover; one placed after them
            # would never be compared (a rewritten export could carry a genuine one).
            return self._fail(seq, "reordered", "a checkpoint after the records it covers")
        if self._check_signature is not None:
            verdict = self._check_signature(cp)
            if verdict is False:
                return self._fail(seq, "modified", "checkpoint signature does not verify")
            if verdict is None:
                self.unverified_checkpoints += 1
            else:
                self.signed_through = max(self.signed_through, seq)
        if self._pending.get(seq, digest) != digest:
            return self._fail(seq, "modified", "two checkpoints disagree on this record's hash")
        self._pending[seq] = digest
        self._max_checkpoint = max(self._max_checkpoint, seq)
        self.checkpoints += 1
        return True

    def absent(self, seq: int, detail: str) -> bool:
        """The chain names record ``seq`` but the record itself is gone."""
        if self.error is not None:
            return False
        if seq > self.expected:
            return self._fail(self.expected, "missing", "no record with this sequence number")
        return self._fail(seq, "missing", detail)

    def record(self, seq: int, prev_hash: str, digest: str, record: Mapping[str, Any]) -> bool:
        try:
            body = canonical_bytes(record)
        except (TypeError, ValueError):
            return self._fail(seq, "modified", "the record is not canonical JSON")
        return self.record_bytes(seq, prev_hash, digest, body)

    def record_bytes(self, seq: int, prev_hash: str, digest: str, body: bytes) -> bool:
        """:meth:`record` given the record's canonical JSON bytes."""
        if self.error is not None:
            return False
        if seq < self.expected:
            return self._fail(seq, "reordered", f"sequence number after {self.expected - 1}")
        if seq > self.expected:
            return self._fail(self.expected, "missing", "no record with this sequence number")
        if hash_canonical(body, prev_hash) != digest:
            return self._fail(seq, "modified", "the record does not match its hash")
        if self.last_hash is not None and prev_hash != self.last_hash:
            return self._fail(seq, "reordered", "prev_hash is not the hash of the record before")
        signed = self._pending.pop(seq, None)
        if signed is not None and signed != digest:
            return self._fail(seq, "modified", "the hash differs from the signed checkpoint")
        self.last_hash, self.last_seq, self.expected = digest, seq, seq + 1
        self.checked += 1
        return True

    def finish(self, head_seq: int | None = None, max_unsigned: int | None = None) -> bool:
        """After the last record: a signed checkpoint (or the head) beyond it means
        the tail was cut off. With ``max_unsigned``, more records than that after the
        newest checkpoint whose signature verifies means checkpoints were removed or
        replaced (the service signs every few hundred records), so the records past
        the last signature prove nothing."""
        if self.error is not None:
            return False
        if (
            max_unsigned is not None
            and self._check_signature is not None
            and self.to_seq is None
            and self.checked
            and self.last_seq - max(self.signed_through, self.from_seq - 1) > max_unsigned
        ):
            start = max(self.signed_through, self.from_seq - 1) + 1
            return self._fail(
                start,
                "modified",
                f"{self.last_seq - start + 1} records after the newest verifiable checkpoint "
                f"(at most {max_unsigned} expected): checkpoints were removed or replaced",
            )
        beyond = max(self._max_checkpoint, head_seq or 0)
        if self.to_seq is not None:
            beyond = min(beyond, self.to_seq)
        if beyond > self.last_seq:
            source = "a signed checkpoint" if self._max_checkpoint > self.last_seq else "the head"
            return self._fail(
                self.last_seq + 1, "truncated", f"{source} names sequence number {beyond}"
            )
        return True

    def report(self) -> dict[str, Any]:
        return {
            "valid": self.error is None,
            "checked": self.checked,
            "from_seq": self.from_seq,
            "last_seq": self.last_seq if self.checked else None,
            "last_hash": self.last_hash if self.checked else None,
            "checkpoints": self.checkpoints,
            "unverified_checkpoints": self.unverified_checkpoints,
            "signed_through": self.signed_through or None,
            "first_error": self.error.as_dict() if self.error else None,
        }
