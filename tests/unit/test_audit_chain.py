"""The tamper-evident audit chain's pure code (``provisioning_client.audit_chain``,
the one definition the control center and the SDK's offline check share):
canonical hashing, the verifier and the checkpoint signatures."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

import provisioning_client.audit_chain as chain
import provisioning_client.audit_offline as offline
from control_center.audit.chain_service import b64url, export_line, wire_record
from control_center.audit.model import AuditRecord
from control_center.keys.model import generate_private_pem, material_from_pem
from control_center.keys.service import KeyRing


@pytest.fixture(scope="module")
def keyring() -> KeyRing:
    ring = KeyRing()
    ring.load_from_config(generate_private_pem())
    return ring


def records(count: int) -> list[dict[str, Any]]:
    base = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    return [
        {
            "id": f"ev-{i}",
            "timestamp": chain.iso_ms(base + timedelta(seconds=i)),
            "user_id": None if i % 3 else f"user-{i}",
            "action": "server.create",
            "resource": f"servers/web-{i:02d}",
            "result": "success",
            "details": {"z": i, "a": [1, 2.5, "é"], "nested": {"b": True, "a": None}},
        }
        for i in range(count)
    ]


def chained(count: int) -> list[dict[str, Any]]:
    """Export-shaped record lines of a valid chain."""
    items = records(count)
    links = chain.link(items, 0, chain.GENESIS)
    return [
        {"type": "record", "seq": lk.seq, "prev_hash": lk.prev_hash, "hash": lk.hash, "record": r}
        for lk, r in zip(links, items, strict=True)
    ]


def signed_checkpoint(ring: KeyRing, seq: int, digest: str) -> dict[str, Any]:
    signed_at = "2026-01-02T03:05:00.000Z"
    kid, signature = ring.sign_detached(
        lambda k: chain.checkpoint_message(seq, digest, signed_at, k)
    )
    return {
        "type": "checkpoint",
        "seq": seq,
        "hash": digest,
        "signed_at": signed_at,
        "kid": kid,
        "signature": b64url(signature),
    }


def run(
    lines: list[dict[str, Any]],
    check: Callable[[Mapping[str, Any]], bool | None] | None = None,
    head: int | None = None,
) -> dict[str, Any]:
    verifier = chain.ChainVerifier(check)
    for item in lines:
        if item["type"] == "checkpoint":
            verifier.checkpoint(item)
    for item in lines:
        if item["type"] != "record":
            continue
        if item["record"] is None:
            verifier.absent(item["seq"], "gone")
        else:
            verifier.record(item["seq"], item["prev_hash"], item["hash"], item["record"])
        if verifier.failed:
            break
    verifier.finish(head)
    report: dict[str, Any] = verifier.report()
    return report


# ------------------------------------------------------------------ canonical form


def test_instants_have_one_fixed_form() -> None:
    moment = datetime(2026, 3, 4, 5, 6, 7, 891999, tzinfo=timezone(timedelta(hours=2)))
    assert chain.iso_ms(moment) == "2026-03-04T03:06:07.891Z"  # UTC, truncated to ms
    assert chain.iso_ms(moment.replace(tzinfo=None)) == "2026-03-04T05:06:07.891Z"


def test_canonical_json_is_sorted_compact_ascii() -> None:
    value = {"b": 1, "a": {"d": [1, "é"], "c": None}}
    assert chain.canonical_bytes(value) == b'{"a":{"c":null,"d":[1,"\\u00e9"]},"b":1}'
    with pytest.raises(ValueError, match="Out of range float"):
        chain.canonical_bytes({"x": float("nan")})


def test_the_hash_covers_record_and_prev_hash() -> None:
    record = records(1)[0]
    digest = chain.record_hash(record, chain.GENESIS)
    assert len(digest) == 64
    assert chain.record_hash(dict(reversed(record.items())), chain.GENESIS) == (digest)
    assert chain.record_hash(record, "1" * 64) != digest
    changed = {**record, "result": "failure"}
    assert chain.record_hash(changed, chain.GENESIS) != digest


def test_checkpoint_messages_and_links_are_fixed() -> None:
    """The signed bytes and the linking after a head are part of the public contract."""
    assert chain.checkpoint_message(3, "ab", "t", "k") == (
        b'provisioning-audit-checkpoint/v1\n{"hash":"ab","kid":"k","seq":3,"signed_at":"t"}'
    )
    items = records(5)
    links = chain.link(items, 7, "f" * 64)
    assert [lk.seq for lk in links] == [8, 9, 10, 11, 12]
    assert links[0].prev_hash == "f" * 64
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(links))
    assert [lk.hash for lk in links] == [
        chain.record_hash(r, lk.prev_hash) for r, lk in zip(items, links, strict=True)
    ]


def test_a_stored_document_hashes_as_its_export() -> None:
    """What the control center hashes at write time (the document it inserted, with
    microseconds) equals what it reads back (milliseconds) and exports."""
    doc = AuditRecord(
        action="auth.login",
        resource="users/u1",
        result="success",
        user_id="u1",
        details={"ip": "10.0.0.1", "password": "hunter2", "n": 1.5, "bad": float("nan")},
        timestamp=datetime(2026, 1, 1, 0, 0, 0, 123999, tzinfo=UTC),
    ).to_document()
    written = wire_record(doc)
    read_back = wire_record({**doc, "timestamp": doc["timestamp"].replace(microsecond=123000)})
    assert written == read_back
    assert written["timestamp"] == "2026-01-01T00:00:00.123Z"
    assert written["details"]["password"] == "[redacted]"
    assert written["details"]["bad"] == "nan"  # not JSON: stored as text
    exported = json.loads(json.dumps(written))
    assert chain.record_hash(written, chain.GENESIS) == (chain.record_hash(exported, chain.GENESIS))


# ------------------------------------------------------------------ the verifier


def test_a_valid_chain_verifies(keyring: KeyRing) -> None:
    lines = chained(10)
    lines.insert(0, signed_checkpoint(keyring, 10, lines[-1]["hash"]))
    lines.insert(0, signed_checkpoint(keyring, 4, lines[4]["hash"]))
    check = offline.signature_checker(offline.keys_from_jwks(keyring.jwks()))
    report = run(lines, check, head=10)
    assert report["valid"]
    assert report["first_error"] is None
    assert (report["checked"], report["last_seq"], report["checkpoints"]) == (10, 10, 2)
    assert report["last_hash"] == lines[-1]["hash"]


def first_error(lines: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    report = run(lines, **kw)
    assert not report["valid"]
    error: dict[str, Any] = report["first_error"]
    return error


def test_a_changed_record_is_modified_at_its_seq() -> None:
    lines = chained(8)
    lines[4]["record"]["result"] = "failure"
    assert first_error(lines) == {
        "seq": 5,
        "kind": "modified",
        "detail": "the record does not match its hash",
    }
    lines = chained(8)
    lines[2]["record"]["details"]["extra"] = 1
    assert first_error(lines)["seq"] == 3


def test_a_removed_record_is_missing_at_its_seq() -> None:
    lines = chained(8)
    del lines[3]
    assert first_error(lines) == {
        "seq": 4,
        "kind": "missing",
        "detail": "no record with this sequence number",
    }
    gone = chained(8)
    gone[5]["record"] = None
    assert (first_error(gone)["seq"], first_error(gone)["kind"]) == (6, "missing")
    assert (first_error(chained(8)[1:])["seq"]) == 1


def test_swapped_or_relinked_records_are_reordered() -> None:
    # two chain entries swapped in storage (seq kept in place, entries moved)
    lines = chained(6)
    lines[2], lines[3] = (
        {**lines[3], "seq": 3},
        {**lines[2], "seq": 4},
    )
    assert first_error(lines) == {
        "seq": 3,
        "kind": "reordered",
        "detail": "prev_hash is not the hash of the record before",
    }
    # a consistent record chained after another head: its hash holds, its link does not
    lines = chained(6)
    items = [line["record"] for line in lines]
    forged = chain.link(items[3:4], 3, "e" * 64)[0]
    assert forged.seq == 4
    lines[3] = {**lines[3], "prev_hash": forged.prev_hash, "hash": forged.hash}
    assert (first_error(lines)["seq"], first_error(lines)["kind"]) == (
        4,
        "reordered",
    )
    # a sequence number going back
    lines = chained(6)
    lines.insert(4, lines[1])
    assert (first_error(lines)["seq"], first_error(lines)["kind"]) == (
        2,
        "reordered",
    )


def test_a_cut_tail_below_a_checkpoint_or_the_head_is_truncated(keyring: KeyRing) -> None:
    full = chained(10)
    cut = [signed_checkpoint(keyring, 9, full[8]["hash"]), *full[:6]]
    check = offline.signature_checker(offline.keys_from_jwks(keyring.jwks()))
    error = first_error(cut, check=check)
    assert (error["seq"], error["kind"]) == (7, "truncated")
    assert (first_error(full[:6], head=10)["seq"]) == 7
    # without a checkpoint or head beyond, a shorter chain is merely shorter
    assert run(full[:6])["valid"]


def test_a_forged_checkpoint_is_rejected(keyring: KeyRing) -> None:
    lines = chained(5)
    check = offline.signature_checker(offline.keys_from_jwks(keyring.jwks()))
    good = signed_checkpoint(keyring, 5, lines[-1]["hash"])
    assert run([good, *lines], check)["valid"]
    bad = {**good, "hash": lines[3]["hash"]}
    error = first_error([bad, *lines], check=check)
    assert (error["seq"], error["kind"]) == (5, "modified")
    # a record rewritten together with the rest of the chain after it: the signed
    # checkpoint no longer matches
    items = [line["record"] for line in lines]
    items[1] = {**items[1], "result": "failure"}
    relinked = [
        {"type": "record", "seq": lk.seq, "prev_hash": lk.prev_hash, "hash": lk.hash, "record": r}
        for lk, r in zip(chain.link(items, 0, chain.GENESIS), items, strict=True)
    ]
    error = first_error([good, *relinked], check=check)
    assert (error["seq"], error["kind"]) == (5, "modified")


def test_a_range_trusts_its_first_link_and_ignores_what_is_outside() -> None:
    lines = chained(10)
    verifier = chain.ChainVerifier(None, from_seq=4, to_seq=7)
    for item in lines[3:7]:
        assert verifier.record(item["seq"], item["prev_hash"], item["hash"], item["record"])
    assert verifier.finish(10)
    assert verifier.report()["checked"] == 4


# ------------------------------------------------------------------ signatures


def test_the_offline_rsa_check_matches_the_key_ring(keyring: KeyRing) -> None:
    keys = offline.keys_from_jwks(keyring.jwks())
    kid, signature = keyring.sign_detached(lambda k: b"message for " + k.encode())
    assert set(keys) == {kid}
    message = b"message for " + kid.encode()
    assert keys[kid].verify(message, signature)
    assert keyring.verify_detached(kid, message, signature) is True
    assert not keys[kid].verify(message + b"!", signature)
    assert keyring.verify_detached(kid, message + b"!", signature) is False
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    assert not keys[kid].verify(message, flipped)
    assert not keys[kid].verify(message, signature[:-1])
    assert keyring.verify_detached("unknown", message, signature) is None
    other = material_from_pem(generate_private_pem())
    assert offline.signature_checker({other.kid: keys[kid]})({"kid": kid}) is None
    # a signature by another key does not verify with this one
    stranger = KeyRing()
    stranger.load_from_config(other.private_pem or "")
    _, foreign = stranger.sign_detached(lambda k: message)
    assert not keys[kid].verify(message, foreign)


def test_unusable_jwks_entries_are_skipped(keyring: KeyRing) -> None:
    (good,) = keyring.jwks()["keys"]
    jwks = {
        "keys": [
            good,
            {**good, "kid": "bad-n", "n": "!!!"},
            {**good, "kid": "even-e", "e": "Ag"},  # e = 2: not an RSA public exponent
            {**good, "kid": "zero-n", "n": ""},
            {**good, "kid": "ec", "kty": "EC"},
            {**good, "kid": "enc", "use": "enc"},
            "not an object",
        ]
    }
    assert set(offline.keys_from_jwks(jwks)) == {good["kid"]}


def export_lines(keyring: KeyRing, count: int) -> list[bytes]:
    """An export as the control center writes it."""
    lines = chained(count)
    head = {"type": "head", "seq": count, "hash": lines[-1]["hash"]}
    top = [head, signed_checkpoint(keyring, count, lines[-1]["hash"])]
    return [json.dumps(item).encode() + b"\n" for item in top] + [
        export_line(x["seq"], x["prev_hash"], x["hash"], x["record"]) for x in lines
    ]


def test_verify_export_reads_ndjson(keyring: KeyRing) -> None:
    text = export_lines(keyring, 20)
    assert text[5].startswith(b'{"type":"record","seq":4,"prev_hash":"')
    report = offline.verify_export(text, keyring.jwks())
    assert report["valid"], report
    assert report["checked"] == 20
    # the same content in another layout (parsed and re-encoded) verifies too
    relaid = [json.dumps(dict(reversed(json.loads(t).items())), indent=1) for t in text]
    assert offline.verify_export(relaid, keyring.jwks())["checked"] == 20
    # the same export against another key set: nothing proves it
    stranger = {"keys": [material_from_pem(generate_private_pem()).jwks_entry()]}
    report = offline.verify_export(text, stranger)
    assert not report["valid"]
    assert report["unverified_checkpoints"] == 1
    # a byte changed inside a record is caught on the verbatim path
    tampered = list(text)
    tampered[9] = tampered[9].replace(b"server.create", b"server.delete")
    error = offline.verify_export(tampered, keyring.jwks())["first_error"]
    assert (error["seq"], error["kind"]) == (8, "modified")
    gone = list(text)
    gone[4] = export_line(3, json.loads(gone[4])["prev_hash"], json.loads(gone[4])["hash"], None)
    error = offline.verify_export(gone, keyring.jwks())["first_error"]
    assert (error["seq"], error["kind"]) == (3, "missing")
    # a line that is not JSON stops the check where it is
    broken = [*text[:5], b"{not json\n", *text[5:]]
    error = offline.verify_export(broken, keyring.jwks())["first_error"]
    assert error["seq"] == 4
    assert error["kind"] == "missing"


def test_signature_is_base64url_without_padding(keyring: KeyRing) -> None:
    cp = signed_checkpoint(keyring, 1, "a" * 64)
    assert "=" not in cp["signature"]
    assert len(base64.urlsafe_b64decode(cp["signature"] + "=" * (-len(cp["signature"]) % 4))) == (
        256
    )


def relinked(lines: list[dict[str, Any]], start: int) -> list[dict[str, Any]]:
    """What an attacker who can write the database does after changing record
    ``start``: recompute every link from there on (plain SHA-256, no key needed)."""
    out = [dict(x) for x in lines]
    prev = out[start - 2]["hash"] if start > 1 else chain.GENESIS
    for item in out[start - 1 :]:
        item["prev_hash"] = prev
        item["hash"] = chain.record_hash(item["record"], prev)
        prev = item["hash"]
    return out


def test_a_checkpoint_after_the_records_it_covers_is_refused(keyring: KeyRing) -> None:
    """A genuine checkpoint moved behind the records of a rewritten export would never
    be compared with them."""
    lines = chained(10)
    genuine = signed_checkpoint(keyring, 10, lines[-1]["hash"])
    forged = relinked(lines, 3)
    forged[2]["record"] = {**forged[2]["record"], "action": "nothing.happened"}
    forged = relinked(forged, 3)
    text = [export_line(x["seq"], x["prev_hash"], x["hash"], x["record"]) for x in forged]
    moved = [*text, json.dumps(genuine).encode() + b"\n"]
    report = offline.verify_export(moved, keyring.jwks())
    assert not report["valid"]
    assert report["first_error"]["kind"] == "reordered"
    first = [json.dumps(genuine).encode() + b"\n", *text]
    assert offline.verify_export(first, keyring.jwks())["first_error"]["kind"] == "modified"


def test_removed_or_rekeyed_checkpoints_leave_a_tail_no_signature_covers(
    keyring: KeyRing,
) -> None:
    """Rewrite record 3 of a long chain and drop (or re-kid) the checkpoints that would
    catch it: more records than the signing interval allows follow the last valid
    signature, so the rewrite does not pass."""
    lines = relinked(chained(60), 3)
    early = signed_checkpoint(keyring, 2, lines[1]["hash"])
    text = [json.dumps(early).encode() + b"\n"] + [
        export_line(x["seq"], x["prev_hash"], x["hash"], x["record"]) for x in lines
    ]
    report = offline.verify_export(text, keyring.jwks(), max_unsigned=20)
    assert not report["valid"]
    assert report["signed_through"] == 2
    assert (report["first_error"]["seq"], report["first_error"]["kind"]) == (3, "modified")
    assert "checkpoints were removed or replaced" in report["first_error"]["detail"]
    # the same chain with a checkpoint within the interval of its tip verifies
    late = signed_checkpoint(keyring, 50, lines[49]["hash"])
    ok = [json.dumps(late).encode() + b"\n", *text]
    assert offline.verify_export(ok, keyring.jwks(), max_unsigned=20)["valid"]
