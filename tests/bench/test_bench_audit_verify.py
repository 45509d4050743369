"""Bench: offline verification of an audit chain export (``provctl audit verify
FILE``), pure CPU, no services.

Builds an export of ``BENCH_AUDIT_RECORDS`` records (default 100000) shaped as the
control center writes them (a head line, signed checkpoints every 1000 records, one
line per record), then prints, measured in the same run:

* ``verify``: records/s of :func:`provisioning_client.audit_chain.verify_export`
  (line layout, SHA-256 over the record's canonical bytes as exported, links,
  RS256 checkpoint signatures checked with ``cryptography``);
* ``verify (re-encoding)``: the same export with every record re-serialised with
  other key order, so each line is parsed and its record re-encoded canonically
  (the path a hand-edited or re-formatted export takes);
* ``baseline``: records/s of plain SHA-256 over the same line bytes (the floor of
  any hash chain check), and the ratio.

The goal is >= 50k records/s for ``verify``; timings are printed, not asserted (the
machine is shared), except that the export must verify."""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

from control_center.audit.chain_service import b64url, export_line
from control_center.keys.model import generate_private_pem
from control_center.keys.service import KeyRing
from provisioning_client.audit_chain import GENESIS, checkpoint_message, link
from provisioning_client.audit_offline import verify_export

RECORDS = int(os.environ.get("BENCH_AUDIT_RECORDS", "100000"))
CHECKPOINT_EVERY = 1000
ROUNDS = int(os.environ.get("BENCH_AUDIT_ROUNDS", "3"))


def build_export(count: int, ring: KeyRing) -> list[bytes]:
    records: list[dict[str, Any]] = [
        {
            "id": f"{i:08x}-5f0c-4c1e-9a4e-{i:012x}",
            "timestamp": f"2026-01-02T03:{(i // 60) % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z",
            "user_id": f"user-{i % 50}",
            "action": ("server.create", "task.cancel", "auth.login")[i % 3],
            "resource": f"servers/web-{i % 997:03d}",
            "result": "success" if i % 10 else "failure",
            "details": {"task_id": f"task-{i}", "infra": "production", "attempt": i % 3},
        }
        for i in range(count)
    ]
    links = link(records, 0, GENESIS)
    checkpoints = []
    signed_at = "2026-01-02T04:00:00.000Z"
    for lk in links[CHECKPOINT_EVERY - 1 :: CHECKPOINT_EVERY]:

        def message(kid: str, seq: int = lk.seq, digest: str = lk.hash) -> bytes:
            return checkpoint_message(seq, digest, signed_at, kid)

        kid, signature = ring.sign_detached(message)
        checkpoints.append(
            {
                "type": "checkpoint",
                "seq": lk.seq,
                "hash": lk.hash,
                "signed_at": signed_at,
                "kid": kid,
                "signature": b64url(signature),
            }
        )
    lines = [{"type": "head", "seq": count, "hash": links[-1].hash}, *checkpoints]
    out = [json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in lines]
    out += [
        export_line(lk.seq, lk.prev_hash, lk.hash, r) for lk, r in zip(links, records, strict=True)
    ]
    return out


def reformat(line: bytes) -> bytes:
    """The same content, keys in reverse order and with spaces."""
    item = json.loads(line)
    if isinstance(item.get("record"), dict):
        item["record"] = dict(reversed(item["record"].items()))
    return json.dumps(dict(reversed(item.items()))).encode() + b"\n"


def best_rate(count: int, run: Any) -> float:
    best = 0.0
    for _ in range(ROUNDS):
        start = time.perf_counter()
        run()
        best = max(best, count / (time.perf_counter() - start))
    return best


def test_bench_offline_audit_verification() -> None:
    ring = KeyRing()
    ring.load_from_config(generate_private_pem())
    jwks = ring.jwks()
    export = build_export(RECORDS, ring)
    size_mb = sum(len(line) for line in export) / 1e6

    report = verify_export(export, jwks)
    assert report["valid"], report["first_error"]
    assert report["checked"] == RECORDS

    def plain_sha256() -> None:
        for line in export:
            hashlib.sha256(line).digest()

    verify_rate = best_rate(RECORDS, lambda: verify_export(export, jwks))
    baseline = best_rate(RECORDS, plain_sha256)
    reformatted = [reformat(line) for line in export]
    assert verify_export(reformatted, jwks)["checked"] == RECORDS
    slow_rate = best_rate(RECORDS, lambda: verify_export(reformatted, jwks))
    print(
        f"\n[bench-audit-verify] {RECORDS} records ({size_mb:.1f} MB, "
        f"{report['checkpoints']} signed checkpoints), best of {ROUNDS}:\n"
        f"  verify               {verify_rate:>10,.0f} records/s (goal >= 50,000)\n"
        f"  verify (re-encoding) {slow_rate:>10,.0f} records/s\n"
        f"  baseline             {baseline:>10,.0f} records/s (plain SHA-256 of the lines)\n"
        f"  baseline / verify    {baseline / verify_rate:>10.1f}x",
        flush=True,
    )
