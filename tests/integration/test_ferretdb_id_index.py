"""The FerretDB wrapper gives every collection table an index on exactly the
expression FerretDB's ``_id`` pushdown queries (DESIGN §3 cost rule), so point
reads, updates and deletes are index searches, not table scans."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from provisioning_common.mongo import open_client

# The statements FerretDB v1.24's SQLite backend issues for an exact ``{_id: v}``.
_POINT_QUERIES = {
    "read": "SELECT _ferretdb_sjson FROM \"{t}\" WHERE _ferretdb_sjson->'$._id' = ?",
    "update": "UPDATE \"{t}\" SET _ferretdb_sjson = ? WHERE _ferretdb_sjson->'$._id' = ?",
    "delete": "DELETE FROM \"{t}\" WHERE _ferretdb_sjson->'$._id' = ?",
}


def _plan(con: sqlite3.Connection, sql: str, params: tuple[str, ...]) -> str:
    return " | ".join(str(row[-1]) for row in con.execute(f"EXPLAIN QUERY PLAN {sql}", params))


async def _table_of(con: sqlite3.Connection, collection: str) -> str:
    row = con.execute(
        "SELECT table_name FROM _ferretdb_collections WHERE name = ?", (collection,)
    ).fetchone()
    assert row is not None, f"no table for {collection}"
    return str(row[0])


async def _wait_for_index(con: sqlite3.Connection, table: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = con.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
            "AND sql LIKE '%''$._id''%'",
            (table,),
        ).fetchone()
        if row is not None:
            return str(row[0])
        await asyncio.sleep(0.05)
    raise AssertionError(f"table {table} never got the _id path index")


async def test_collection_created_after_start_gets_id_path_index(
    stack: Any, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    if stack.mongo_kind != "ferretdb":
        pytest.skip("the index repair concerns FerretDB's SQLite backend only")
    collection = mongo_db["created_after_start"]
    await collection.insert_many([{"_id": f"doc-{i}", "n": i} for i in range(200)])

    db_file = Path(stack.workdir) / "mongo" / f"{mongo_db.name}.sqlite"
    con = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True)
    try:
        table = await _table_of(con, "created_after_start")
        index_sql = await _wait_for_index(con, table)
        assert "_ferretdb_sjson->'$._id'" in index_sql
        for kind, sql in _POINT_QUERIES.items():
            params = ('"doc-7"',) if kind != "update" else ("{}", '"doc-7"')
            plan = _plan(con, sql.format(t=table), params)
            assert "USING INDEX" in plan, f"{kind}: {plan}"
            assert "SCAN" not in plan, f"{kind}: {plan}"
    finally:
        con.close()

    # And the data path still behaves: a point update and delete hit one document.
    await collection.update_one({"_id": "doc-7"}, {"$set": {"n": -7}})
    assert (await collection.find_one({"_id": "doc-7"}) or {}).get("n") == -7
    await collection.delete_one({"_id": "doc-8"})
    assert await collection.find_one({"_id": "doc-8"}) is None
    assert await collection.count_documents({}) == 199


async def test_a_burst_of_concurrent_updates_completes(stack: Any) -> None:
    """FerretDB holds two of its 100 SQLite connections per update; clients built from
    the stack's URL keep few enough operations in flight that a burst cannot take them
    all (before the URL capped the pool, 1,000 concurrent update_one hung it for good)."""
    client: AsyncMongoClient[dict[str, Any]] = open_client(stack.mongodb_url)
    if stack.mongo_kind == "ferretdb":
        # What prevents the deadlock: a few processes of a stack stay far below 100.
        assert client.options.pool_options.max_pool_size <= 16
    db = client[f"burst_{uuid.uuid4().hex[:8]}"]
    try:
        items = db["items"]
        await items.insert_many([{"_id": f"d{i}", "v": 0} for i in range(300)])
        for _ in range(3):
            burst = (
                items.update_one({"_id": f"d{i % 300}"}, {"$inc": {"v": 1}}) for i in range(1000)
            )
            await asyncio.wait_for(asyncio.gather(*burst), timeout=120)
        assert (await items.find_one({"_id": "d0"}) or {}).get("v") == 12  # 4 per round
    finally:
        await client.drop_database(db.name)
        await client.close()
