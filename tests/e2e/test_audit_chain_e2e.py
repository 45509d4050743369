"""The tamper-evident audit chain with the control center as a process: records
changed, deleted or cut off directly in MongoDB are reported at the right sequence
number by ``GET /audit/verify`` and by ``provctl audit verify`` on an export
(``provctl audit export``); two control centers writing at once produce one chain."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pymongo
import pytest
import requests

from control_center.audit.chain_service import AuditChain, ChainConfig
from control_center.audit.repository import AuditRepository, ChainRepository
from control_center.audit.service import AuditLog
from control_center.keys.model import generate_private_pem
from control_center.keys.service import KeyRing
from tests.support.control_center import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    TEST_ENV,
    auth_header,
    login,
    service_token,
    start_control_center,
    user_token,
)
from tests.support.processes import ServiceProcess, service_env

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PROVCTL = str(Path(sys.executable).parent / "provctl")
CHECKPOINT_RECORDS = 5
CHAIN_ENV = {
    "AUDIT_CHECKPOINT_RECORDS": str(CHECKPOINT_RECORDS),
    "AUDIT_CHECKPOINT_SECONDS": "3600",  # checkpoints by count only: deterministic
    "AUDIT_VERIFY_PAGE_SIZE": "7",  # several pages even for a short chain
}


@dataclass
class Chain:
    cc: ServiceProcess
    db: Any  # pymongo Database
    admin_token: str
    service_token: str

    def post(self, count: int, prefix: str = "ev") -> list[str]:
        ids = [f"{prefix}-{uuid.uuid4().hex[:10]}" for _ in range(count)]
        events = [
            {
                "id": event_id,
                "timestamp": "2026-01-02T03:04:05.678901Z",
                "user_id": "user-1",
                "action": "server.create",
                "resource": f"servers/{event_id}",
                "result": "success",
                "details": {"task_id": event_id, "n": i, "ratio": 0.5},
            }
            for i, event_id in enumerate(ids)
        ]
        resp = requests.post(
            f"{self.cc.url}/audit/events",
            json={"events": events},
            headers=auth_header(self.service_token),
            timeout=30,
        )
        assert resp.status_code == 201, resp.text
        return ids

    def seq_of(self, event_id: str) -> int:
        doc = self.db.audit_chain.find_one({"id": event_id})
        assert doc is not None, event_id
        return int(doc["_id"])

    def id_at(self, seq: int) -> str:
        doc = self.db.audit_chain.find_one({"_id": seq})
        assert doc is not None, seq
        return str(doc["id"])

    def verify(self, **params: int) -> dict[str, Any]:
        resp = requests.get(
            f"{self.cc.url}/audit/verify",
            params=params,
            headers=auth_header(self.admin_token),
            timeout=60,
        )
        assert resp.status_code == 200, resp.text
        data: dict[str, Any] = resp.json()["data"]
        return data

    def tip(self) -> int:
        return int(self.verify()["last_seq"])


@pytest.fixture
def chain(stack: Any) -> Iterator[Chain]:
    database = f"cc_chain_{uuid.uuid4().hex[:10]}"
    cc = start_control_center(stack.env(), MONGODB_DATABASE=database, **CHAIN_ENV)
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(stack.mongodb_url)
    try:
        token = str(login(cc.url, ADMIN_USERNAME, ADMIN_PASSWORD)["token"])
        yield Chain(cc, client[database], token, service_token(cc.url))
    finally:
        cc.stop()
        client.drop_database(database)
        client.close()


def provctl(chain: Chain, tmp: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIONING_")}
    env.update(
        {
            "PROVCTL_CONFIG_DIR": str(tmp / "provctl-config"),
            "PROVCTL_TOKEN": chain.admin_token,
            "PROVISIONING_CONTROL_CENTER_URL": chain.cc.url,
            "NO_COLOR": "1",
        }
    )
    return subprocess.run(
        [PROVCTL, *argv, "--output", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def offline(chain: Chain, tmp: Path) -> tuple[int, dict[str, Any]]:
    """``provctl audit export FILE`` then ``provctl audit verify FILE``."""
    path = tmp / f"export-{uuid.uuid4().hex[:6]}.ndjson"
    exported = provctl(chain, tmp, "audit", "export", str(path))
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["file"] == str(path)
    checked = provctl(chain, tmp, "audit", "verify", str(path))
    assert checked.stdout.strip(), checked.stderr
    return checked.returncode, json.loads(checked.stdout)


def expect_error(chain: Chain, tmp: Path, seq: int, kind: str) -> None:
    report = chain.verify()
    assert not report["valid"], report
    assert (report["first_error"]["seq"], report["first_error"]["kind"]) == (seq, kind), report
    assert report["checked"] == seq - 1
    code, offline_report = offline(chain, tmp)
    assert code == 7, offline_report
    error = offline_report["first_error"]
    assert (error["seq"], error["kind"]) == (seq, kind), offline_report


def test_an_untouched_chain_verifies_online_and_offline(chain: Chain, tmp_path: Path) -> None:
    ids = chain.post(12)
    report = chain.verify()
    assert report["valid"], report
    assert report["first_error"] is None
    assert report["last_seq"] == chain.seq_of(ids[-1])
    assert report["checked"] == report["last_seq"]  # every record since the first start
    assert report["checkpoints"] >= 1
    assert report["unverified_checkpoints"] == 0
    entries = chain.db.audit_chain.count_documents({})
    assert entries == 2 * chain.db.audit_logs.count_documents({})  # entry + marker each
    # a range
    part = chain.verify(from_seq=3, to_seq=9)
    assert part["valid"], part
    assert (part["checked"], part["last_seq"]) == (7, 9)
    # the list endpoint is unchanged
    resp = requests.get(
        f"{chain.cc.url}/audit/logs",
        params={"action": "server.create", "limit": "100"},
        headers=auth_header(chain.admin_token),
        timeout=10,
    )
    assert resp.status_code == 200
    entry = resp.json()["data"][0]
    assert set(entry) == {"id", "timestamp", "user_id", "action", "resource", "result", "details"}
    # offline, against the JWKS
    code, offline_report = offline(chain, tmp_path)
    assert code == 0, offline_report
    assert offline_report["valid"]
    assert offline_report["checked"] == report["checked"]
    assert offline_report["checkpoints"] == report["checkpoints"]
    # server-side verify through provctl
    online = provctl(chain, tmp_path, "audit", "verify")
    assert online.returncode == 0, online.stderr
    assert json.loads(online.stdout)["valid"] is True


def test_export_is_ndjson_in_seq_order(chain: Chain) -> None:
    chain.post(6)
    resp = requests.get(
        f"{chain.cc.url}/audit/export",
        headers=auth_header(chain.admin_token),
        timeout=30,
        stream=True,
    )
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/x-ndjson")
    assert resp.headers.get("Transfer-Encoding") == "chunked"
    lines = [json.loads(line) for line in resp.iter_lines() if line]
    assert lines[0]["type"] == "head"
    checkpoints = [x for x in lines if x["type"] == "checkpoint"]
    records = [x for x in lines if x["type"] == "record"]
    assert checkpoints
    assert {"seq", "hash", "signed_at", "kid", "signature"} <= set(checkpoints[0])
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert records[0]["prev_hash"] == "0" * 64
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(records))


def test_only_admins_and_auditors_verify(chain: Chain) -> None:
    viewer = user_token(chain.cc.url, chain.admin_token, "viewer")
    auditor = user_token(chain.cc.url, chain.admin_token, "auditor")
    for path in ("/audit/verify", "/audit/export"):
        denied = requests.get(f"{chain.cc.url}{path}", headers=auth_header(viewer), timeout=10)
        assert denied.status_code == 403, (path, denied.text)
        anonymous = requests.get(f"{chain.cc.url}{path}", timeout=10)
        assert anonymous.status_code == 401
        allowed = requests.get(f"{chain.cc.url}{path}", headers=auth_header(auditor), timeout=30)
        assert allowed.status_code == 200, (path, allowed.text)
    bad = requests.get(
        f"{chain.cc.url}/audit/verify",
        params={"from_seq": "5", "to_seq": "2"},
        headers=auth_header(auditor),
        timeout=10,
    )
    assert bad.status_code == 400  # bad query parameters (DESIGN §6), as documented


def test_a_record_changed_in_mongodb_is_reported_at_its_seq(chain: Chain, tmp_path: Path) -> None:
    ids = chain.post(15)
    target = ids[6]
    seq = chain.seq_of(target)
    result = chain.db.audit_logs.update_one({"_id": target}, {"$set": {"result": "failure"}})
    assert result.modified_count == 1
    expect_error(chain, tmp_path, seq, "modified")


def test_a_record_deleted_in_mongodb_is_reported_missing_at_its_seq(
    chain: Chain, tmp_path: Path
) -> None:
    ids = chain.post(15)
    # the record alone
    seq = chain.seq_of(ids[8])
    assert chain.db.audit_logs.delete_one({"_id": ids[8]}).deleted_count == 1
    expect_error(chain, tmp_path, seq, "missing")


def test_a_record_and_its_chain_entry_deleted_are_reported_missing(
    chain: Chain, tmp_path: Path
) -> None:
    ids = chain.post(15)
    seq = chain.seq_of(ids[4])
    assert chain.db.audit_logs.delete_one({"_id": ids[4]}).deleted_count == 1
    assert chain.db.audit_chain.delete_one({"_id": seq}).deleted_count == 1
    expect_error(chain, tmp_path, seq, "missing")


def test_a_truncated_tail_is_reported_at_the_first_seq_cut(chain: Chain, tmp_path: Path) -> None:
    chain.post(20)
    tip = chain.tip()
    checkpoints = [int(d["seq"]) for d in chain.db.audit_checkpoints.find({})]
    assert max(checkpoints) > tip - CHECKPOINT_RECORDS  # a recent signed head
    keep = max(checkpoints) - 3  # cut below the newest checkpoint
    doomed = [chain.id_at(s) for s in range(keep + 1, tip + 1)]
    chain.db.audit_logs.delete_many({"_id": {"$in": doomed}})
    chain.db.audit_chain.delete_many({"_id": {"$gt": keep}})
    chain.db.audit_chain.delete_many({"_id": {"$in": [f"event:{i}" for i in doomed]}})
    # cover the tracks: the head hint goes back too
    last = chain.db.audit_chain.find_one({"_id": keep})
    assert last is not None
    chain.db.audit_chain_state.replace_one({"_id": "head"}, {"seq": keep, "hash": last["hash"]})
    expect_error(chain, tmp_path, keep + 1, "truncated")


def test_two_control_centers_writing_at_once_make_one_chain(
    stack: Any, chain: Chain, tmp_path: Path
) -> None:
    database = chain.db.name
    other = start_control_center(stack.env(), MONGODB_DATABASE=database, **CHAIN_ENV)
    try:
        writers = [chain, Chain(other, chain.db, chain.admin_token, service_token(other.url))]

        def write(index: int) -> list[str]:
            mine: list[str] = []
            for batch in range(6):
                mine += writers[index % 2].post(8 + batch % 3, prefix=f"w{index}")
            return mine

        with ThreadPoolExecutor(4) as pool:
            written = [e for ids in pool.map(write, range(4)) for e in ids]
        entries = [d for d in chain.db.audit_chain.find({}) if isinstance(d["_id"], int)]
        seqs = sorted(int(d["_id"]) for d in entries)
        assert seqs == list(range(1, len(seqs) + 1))  # no hole, no fork
        chained_ids = [str(d["id"]) for d in entries]
        assert len(chained_ids) == len(set(chained_ids))  # nobody chained twice
        assert set(written) <= set(chained_ids)
        assert set(chained_ids) == {str(d["_id"]) for d in chain.db.audit_logs.find({})}
        for process in writers:
            report = process.verify()
            assert report["valid"], report
            assert report["checked"] == len(seqs)
        code, offline_report = offline(chain, tmp_path)
        assert code == 0, offline_report
        assert offline_report["checked"] == len(seqs)
    finally:
        other.stop()


def test_a_record_stored_but_not_chained_is_chained_when_retried(chain: Chain) -> None:
    """A crash between the record's insert and its chain entry: the outbox's retry
    of the same event chains it (and a retry of a chained event does not)."""
    ids = chain.post(3)
    event_id = f"lost-{uuid.uuid4().hex[:8]}"
    chain.db.audit_logs.insert_one(
        {
            "_id": event_id,
            "timestamp": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
            "user_id": "user-1",
            "action": "server.create",
            "resource": "servers/lost",
            "result": "success",
            "details_json": "{}",
        }
    )
    assert chain.db.audit_chain.find_one({"id": event_id}) is None
    before = chain.tip()
    event = {
        "id": event_id,
        "timestamp": "2026-01-02T03:04:05.678Z",
        "action": "server.create",
        "resource": "servers/lost",
        "result": "success",
    }
    retried = [event, {**event, "id": ids[0]}]
    for _ in range(2):
        resp = requests.post(
            f"{chain.cc.url}/audit/events",
            json={"events": retried},
            headers=auth_header(chain.service_token),
            timeout=30,
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["data"]["duplicates"] == 2
    assert chain.seq_of(event_id) == before + 1
    report = chain.verify()
    assert report["valid"], report
    assert report["last_seq"] == before + 1


def test_the_unlock_admin_command_chains_and_signs_its_record(
    stack: Any, chain: Chain, tmp_path: Path
) -> None:
    """``python -m control_center unlock-admin`` (a one-shot process beside the running
    service) chains its ``auth.unlock`` record after the service's and signs the head
    before exiting; the service then chains after it."""
    chain.post(3)
    before = chain.tip()
    done = subprocess.run(
        [sys.executable, "-m", "control_center", "unlock-admin"],
        env=service_env(stack.env(), **TEST_ENV, **CHAIN_ENV, MONGODB_DATABASE=chain.db.name),
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    (unlock,) = chain.db.audit_logs.find({"action": "auth.unlock"})
    seq = chain.seq_of(str(unlock["_id"]))
    assert seq == before + 1
    assert max(int(d["seq"]) for d in chain.db.audit_checkpoints.find({})) == seq
    report = chain.verify()
    assert report["valid"], report
    assert report["last_seq"] == seq
    assert report["unverified_checkpoints"] == 0
    # the service's cached head is behind: its next append chains after the command's
    ids = chain.post(2)
    assert chain.seq_of(ids[-1]) == seq + 2
    code, offline_report = offline(chain, tmp_path)
    assert code == 0, offline_report
    assert offline_report["checked"] == seq + 2


async def test_writers_racing_on_one_database_keep_one_chain(mongo_db: Any) -> None:
    """Three writers (each with its own lock and cached head, as three replicas have)
    appending batches at once: every lost race is resolved by re-reading the tip."""
    ring = KeyRing()
    ring.load_from_config(generate_private_pem())
    logs, repo = AuditRepository(mongo_db), ChainRepository(mongo_db)
    chains = [AuditChain(logs, repo, ring, ChainConfig(checkpoint_records=7)) for _ in range(3)]
    writers = [AuditLog(logs, c) for c in chains]

    async def burst(index: int, writer: AuditLog) -> None:
        for batch in range(8):
            events = [
                {
                    "id": f"w{index}-{batch}-{i}",
                    "timestamp": datetime(2026, 1, 2, tzinfo=UTC),
                    "action": "server.create",
                    "resource": f"servers/{index}",
                    "result": "success",
                    "details": {"batch": batch},
                }
                for i in range(5)
            ]
            assert all(await writer.ingest_many(events))

    await asyncio.gather(*(burst(i, w) for i, w in enumerate(writers)))
    assert sum(c.races_lost for c in chains) > 0  # the race path did run
    for c in chains:
        report = await c.verify()
        assert report["valid"], report
        assert report["checked"] == 3 * 8 * 5
