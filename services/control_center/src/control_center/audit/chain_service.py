""":class:`AuditChain`: appends stored audit records to the hash chain, signs its
head periodically, and walks it for ``/audit/verify`` and ``/audit/export``.

Cost per append (a single record or a batch of N): one ordered ``insert_many`` of
the chain entries plus one overwrite of the head hint; the head itself is read from
storage only at start and after losing a race to another replica (then by exact
``_id``, galloping forward), never by scanning. Appends of one process are
serialised by a lock, so a process never races itself.

The chain's rules (canonical hashing, links, checkpoint messages, the verifier) are
those of the SDK's :mod:`provisioning_client.audit_chain`, the one definition an
offline check of an export uses too."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from provisioning_client.audit_chain import (
    GENESIS,
    ChainVerifier,
    Link,
    canonical_bytes,
    checkpoint_message,
    iso_ms,
    link,
)
from provisioning_common.timeutil import utcnow

from .model import from_document
from .repository import AuditRepository, ChainRepository, marker_id

log = logging.getLogger(__name__)

MAX_RACES = 50  # lost races in one append before giving up (each is progress by others)


class Signer(Protocol):
    def sign_detached(self, message: Callable[[str], bytes]) -> tuple[str, bytes]: ...

    def verify_detached(self, kid: str, data: bytes, signature: bytes) -> bool | None: ...


@dataclass(frozen=True, slots=True)
class ChainConfig:
    checkpoint_records: int = 1000
    checkpoint_seconds: float = 60.0
    page_size: int = 200


def wire_record(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A stored ``audit_logs`` document in the form that is hashed and exported."""
    record = from_document(dict(doc))
    record["timestamp"] = iso_ms(record["timestamp"])
    return record


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _line(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode() + b"\n"


def record_line(seq: int, entry: Mapping[str, Any], doc: Mapping[str, Any] | None) -> bytes:
    """The export line of chain entry ``seq`` and its stored record (None: gone)."""
    record = wire_record(doc) if doc is not None else None
    return export_line(seq, entry.get("prev_hash"), entry.get("hash"), record)


def export_line(seq: int, prev_hash: Any, digest: Any, record: Mapping[str, Any] | None) -> bytes:
    """``{"type":"record","seq":..,"prev_hash":..,"hash":..,"record":..}``: the record
    last and in its canonical bytes, so that an offline check hashes it verbatim."""
    head = {"type": "record", "seq": seq, "prev_hash": prev_hash, "hash": digest}
    body = canonical_bytes(record) if record is not None else b"null"
    return _line(head)[:-2] + b',"record":' + body + b"}\n"


async def _gallop(exists: Callable[[int], Awaitable[dict[str, Any] | None]], start: int) -> int:
    """The last ``n >= start`` with ``exists(n)``, given that the present numbers above
    ``start`` form a run without holes (ordered inserts leave none): O(log n) reads."""
    low, step = start, 1
    while await exists(low + step) is not None:
        low += step
        step *= 2
    high = low + step
    while high - low > 1:
        mid = (low + high) // 2
        if await exists(mid) is not None:
            low = mid
        else:
            high = mid
    return low


class AuditChain:
    def __init__(
        self,
        logs: AuditRepository,
        repo: ChainRepository,
        signer: Signer,
        config: ChainConfig | None = None,
    ) -> None:
        self._logs = logs
        self._repo = repo
        self._signer = signer
        self._config = config or ChainConfig()
        self._lock = asyncio.Lock()
        self._head: tuple[int, str] | None = None  # (seq, hash) of the tip we know
        self._checkpoint: tuple[int, int] | None = None  # (number, seq) of the newest
        self._checkpointed_at = time.monotonic()
        self.races_lost = 0  # appends that met a seq taken by another replica

    # ------------------------------------------------------------------ appending

    async def append(self, docs: Sequence[Mapping[str, Any]]) -> list[Link]:
        """Chain stored ``audit_logs`` documents, in order; their links."""
        if not docs:
            return []
        records = [wire_record(d) for d in docs]
        async with self._lock:
            seq, digest = self._head or await self._read_head()
            done: list[Link] = []
            for _ in range(MAX_RACES):
                pending = records[len(done) :]
                links = link(pending, seq, digest)
                entries: list[dict[str, Any]] = []
                for lk, r in zip(links, pending, strict=True):
                    entries.append(
                        {"_id": lk.seq, "id": r["id"], "prev_hash": lk.prev_hash, "hash": lk.hash}
                    )
                    entries.append({"_id": marker_id(str(r["id"])), "seq": lk.seq})
                position = await self._repo.insert_links(entries)
                while position < len(entries) and position % 2 == 1:
                    # a marker exists: the record was chained before too (a retry raced
                    # the first attempt); a second entry for it is harmless, go on
                    position += 1 + await self._repo.insert_links(entries[position + 1 :])
                mine = links[: position // 2]
                if mine:
                    done.extend(mine)
                    seq, digest = mine[-1].seq, mine[-1].hash
                if position == len(entries):
                    break
                # another replica holds this seq: chain the rest after its tip
                self.races_lost += 1
                seq, digest = await self._read_head(seq, digest)
            else:
                raise RuntimeError("audit chain: too many concurrent appenders")
            self._head = (seq, digest)
            await self._repo.set_head(seq, digest)
            await self._checkpoint_if_due(force=False)
        return done

    async def unchained(self, record_ids: Sequence[str]) -> list[str]:
        """Those of ``record_ids`` (stored earlier) that were never chained."""
        flags = await self._repo.chained(record_ids)
        return [i for i, chained in zip(record_ids, flags, strict=True) if not chained]

    async def _read_head(self, seq: int = 0, digest: str = GENESIS) -> tuple[int, str]:
        """The chain's tip: from the head hint (or ``seq``, whichever is further),
        forward by exact-``_id`` reads."""
        hint = await self._repo.head()
        if hint is not None and int(hint["seq"]) > seq:
            seq, digest = int(hint["seq"]), str(hint["hash"])
        tip = await _gallop(self._repo.link_at, seq)
        if tip != seq:
            doc = await self._repo.link_at(tip)
            assert doc is not None
            seq, digest = tip, str(doc["hash"])
        return seq, digest

    # ------------------------------------------------------------------ checkpoints

    async def checkpoint_now(self) -> None:
        """Sign the head if anything was chained since the newest checkpoint (the
        periodic loop; any replica may run it, a duplicate is harmless)."""
        async with self._lock:
            self._head = await self._read_head(*(self._head or (0, GENESIS)))
            await self._checkpoint_if_due(force=True)

    async def _checkpoint_if_due(self, *, force: bool) -> None:
        if self._head is None:
            return
        seq, digest = self._head
        if self._checkpoint is None:
            number = await _gallop(self._repo.checkpoint_at, 0)
            doc = await self._repo.checkpoint_at(number) if number else None
            self._checkpoint = (number, int(doc["seq"]) if doc else 0)
        number, signed_seq = self._checkpoint
        if seq <= signed_seq:
            return
        elapsed = time.monotonic() - self._checkpointed_at
        if not (
            force
            or seq - signed_seq >= self._config.checkpoint_records
            or elapsed >= self._config.checkpoint_seconds
        ):
            return
        signed_at = iso_ms(utcnow())
        kid, signature = self._signer.sign_detached(
            lambda key_id: checkpoint_message(seq, digest, signed_at, key_id)
        )
        doc = {
            "seq": seq,
            "hash": digest,
            "signed_at": signed_at,
            "kid": kid,
            "signature": b64url(signature),
        }
        for _ in range(MAX_RACES):
            number += 1
            if await self._repo.insert_checkpoint(number, doc):
                break
            number = await _gallop(self._repo.checkpoint_at, number)
            newest = await self._repo.checkpoint_at(number)
            if newest is not None and int(newest["seq"]) >= seq:
                break  # another replica signed this far already
        self._checkpoint = (number, seq)
        self._checkpointed_at = time.monotonic()

    async def checkpoints(self) -> list[dict[str, Any]]:
        """Every checkpoint, oldest first (one read per checkpoint: they are few)."""
        out: list[dict[str, Any]] = []
        number = 1
        while (doc := await self._repo.checkpoint_at(number)) is not None:
            out.append(
                {
                    "seq": doc.get("seq"),
                    "hash": doc.get("hash"),
                    "signed_at": doc.get("signed_at"),
                    "kid": doc.get("kid"),
                    "signature": doc.get("signature"),
                }
            )
            number += 1
        return out

    def check_signature(self, cp: Mapping[str, Any]) -> bool | None:
        try:
            message = checkpoint_message(
                int(cp["seq"]), str(cp["hash"]), str(cp["signed_at"]), str(cp["kid"])
            )
            signature = unb64url(str(cp["signature"]))
        except (KeyError, TypeError, ValueError, binascii.Error):
            return False
        return self._signer.verify_detached(str(cp["kid"]), message, signature)

    # ------------------------------------------------------------------ reading

    async def _tip(self, checkpoints: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
        """(the head hint's seq, the last seq worth reading)."""
        hint = await self._repo.head()
        hint_seq = int(hint["seq"]) if hint is not None else 0
        signed = max((int(cp["seq"]) for cp in checkpoints), default=0)
        start = max(hint_seq, signed)
        return hint_seq, await _gallop(self._repo.link_at, start)

    async def walk(
        self, from_seq: int, to_seq: int | None, last: int
    ) -> AsyncIterator[tuple[int, dict[str, Any] | None, dict[str, Any] | None]]:
        """``(seq, chain entry, audit_logs document)`` for each seq in range, by pages
        of concurrent point reads."""
        end = last if to_seq is None else min(to_seq, last)
        size = self._config.page_size
        for first in range(max(1, from_seq), end + 1, size):
            seqs = list(range(first, min(first + size, end + 1)))
            links = await self._repo.links(seqs)
            ids = [str(lk["id"]) for lk in links if lk is not None]
            found = dict(zip(ids, await self._logs.get_many(ids), strict=True))
            for seq, lk in zip(seqs, links, strict=True):
                yield seq, lk, (found.get(str(lk["id"])) if lk is not None else None)

    async def verify(self, from_seq: int = 1, to_seq: int | None = None) -> dict[str, Any]:
        checkpoints = await self.checkpoints()
        verifier = ChainVerifier(self.check_signature, from_seq, to_seq)
        for cp in checkpoints:
            verifier.checkpoint(cp)
        hint_seq, last = await self._tip(checkpoints)
        if not verifier.failed:
            async for seq, lk, doc in self.walk(verifier.from_seq, to_seq, last):
                if lk is None:
                    continue  # a hole: the next record, or finish(), reports it
                if doc is None:
                    verifier.absent(seq, f"audit record {lk['id']} is gone")
                else:
                    verifier.record(seq, str(lk["prev_hash"]), str(lk["hash"]), wire_record(doc))
                if verifier.failed:
                    break
        # Checkpoints are signed every checkpoint_records records: twice that many
        # past the newest verifiable one means checkpoints were removed or replaced.
        verifier.finish(hint_seq, 2 * self._config.checkpoint_records)
        return verifier.report()

    async def export(self, from_seq: int = 1, to_seq: int | None = None) -> AsyncIterator[bytes]:
        """NDJSON, in chunks of one page: a ``head`` line (the unsigned hint), every
        ``checkpoint``, then each ``record`` in seq order (``record: null`` when the
        chain names a record that is gone; a removed chain entry leaves a hole)."""
        checkpoints = await self.checkpoints()
        hint = await self._repo.head()
        hint_seq, last = await self._tip(checkpoints)
        head = {"type": "head", "seq": hint_seq, "hash": hint.get("hash") if hint else None}
        yield _line(head) + b"".join(_line({"type": "checkpoint", **cp}) for cp in checkpoints)
        chunk: list[bytes] = []
        async for seq, lk, doc in self.walk(from_seq, to_seq, last):
            if lk is not None:
                chunk.append(record_line(seq, lk, doc))
            if len(chunk) >= self._config.page_size:
                yield b"".join(chunk)
                chunk = []
        if chunk:
            yield b"".join(chunk)


async def checkpoint_loop(chain: AuditChain, interval: float) -> None:
    """Sign the head every ``interval`` seconds when it moved (records chained by an
    idle period's last writes are protected within ``interval``)."""
    while True:
        await asyncio.sleep(interval)
        try:
            await chain.checkpoint_now()
        except Exception as exc:  # keep the loop alive; the next round retries
            log.warning("audit checkpoint failed: %s", type(exc).__name__)
