"""Opening the run store: creation, reopening, and refusing files that are not ours."""
from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from hilnas.server.store import schema as store_schema
from hilnas.server.store import DB_NAME, LutId, LutRow, Store, StoreError


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_open_creates_folder_file_and_wal(tmp_path: Path) -> None:
    ws = tmp_path / "a" / "ws"
    with Store.open(ws) as store:
        assert store.path == ws / DB_NAME
        assert store._conn().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    header = (ws / DB_NAME).read_bytes()[:100]
    assert int.from_bytes(header[68:72], "big") == store_schema.APPLICATION_ID
    conn = sqlite3.connect(ws / DB_NAME)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == store_schema.SCHEMA_VERSION
    assert dict(conn.execute("SELECT key, value FROM meta"))["application"] == "hilnas"
    conn.close()
    assert not [p for p in ws.iterdir() if p.name.startswith(".")]  # no temp file left


def test_reopen_keeps_data_and_create_false_needs_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no hilnas store"):
        Store.open(tmp_path / "none", create=False)
    assert not (tmp_path / "none").exists()
    with Store.open(tmp_path) as store:
        store.upsert_device("pi", fingerprint="fp")
    with Store.open(tmp_path, create=False) as store:
        assert store.get_device("pi").fingerprint == "fp"


def test_closed_store_refuses_use(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.devices()


def test_foreign_sqlite_db_is_refused_and_unchanged(tmp_path: Path) -> None:
    db = tmp_path / DB_NAME
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.execute("INSERT INTO users VALUES ('ada')")
    conn.commit()
    conn.close()
    before, files = _digest(db), _listing(tmp_path)
    with pytest.raises(StoreError, match="another application.*not changed"):
        Store.open(tmp_path)
    assert _digest(db) == before
    assert _listing(tmp_path) == files


@pytest.mark.parametrize("content", [b"hello, this is not a database\n" * 200, b"\x00" * 10])
def test_garbage_file_is_refused_and_unchanged(tmp_path: Path, content: bytes) -> None:
    db = tmp_path / DB_NAME
    db.write_bytes(content)
    with pytest.raises(StoreError, match="not an SQLite database"):
        Store.open(tmp_path)
    assert db.read_bytes() == content
    assert _listing(tmp_path) == [DB_NAME]


def test_empty_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).write_bytes(b"")
    with pytest.raises(StoreError, match="empty file"):
        Store.open(tmp_path)
    assert (tmp_path / DB_NAME).read_bytes() == b""


def test_orphan_wal_is_not_replayed_into_a_new_store(tmp_path: Path) -> None:
    (tmp_path / f"{DB_NAME}-wal").write_bytes(b"old wal")
    with pytest.raises(StoreError, match="without its database"):
        Store.open(tmp_path)
    assert not (tmp_path / DB_NAME).exists()


def test_workspace_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ws").write_text("x")
    with pytest.raises(StoreError, match="not a folder"):
        Store.open(tmp_path / "ws")


def test_newer_schema_is_refused_and_unchanged(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    db = tmp_path / DB_NAME
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    before = _digest(db)
    with pytest.raises(StoreError, match="schema version 99, newer"):
        Store.open(tmp_path)
    assert _digest(db) == before


def test_damaged_store_is_refused_and_unchanged(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        store.upsert_device("pi", fingerprint="fp")
    db = tmp_path / DB_NAME
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page:] = b"\xab" * (len(data) - page)  # every page after the first is garbage
    db.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="damaged|meta table"):
        Store.open(tmp_path)
    assert db.read_bytes() == bytes(data)


def test_older_schema_is_migrated_after_a_backup(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with Store.open(tmp_path) as store:
        store.upsert_device("pi", fingerprint="fp")
    now = store_schema.SCHEMA_VERSION
    monkeypatch.setattr(store_schema, "SCHEMA_VERSION", now + 1)
    monkeypatch.setattr(store_schema, "MIGRATIONS", {**store_schema.MIGRATIONS,
                                                     now: "ALTER TABLE runs ADD COLUMN note TEXT"})
    with Store.open(tmp_path) as store:
        conn = store._conn()
        assert conn.execute("PRAGMA user_version").fetchone()[0] == now + 1
        assert "note" in [r[1] for r in conn.execute("PRAGMA table_info(runs)")]
        assert store.get_device("pi").fingerprint == "fp"
    backup = sqlite3.connect(tmp_path / f"{DB_NAME}.v{now}.bak")
    assert backup.execute("PRAGMA user_version").fetchone()[0] == now
    backup.close()


def test_a_schema_1_store_gains_min_ms_and_keeps_its_rows(tmp_path: Path) -> None:
    """A store written by the first release (no min_ms column) opens, migrates, and keeps every row;
    its old rows have no fastest run, which the min statistic refuses by name."""
    from hilnas.server.validation import lut_values

    v1 = store_schema.SCHEMA.replace(
        "    min_ms           REAL,                 -- fastest timed run over all passes (schema 2; NULL before)\n", "")
    v1 = _without_schema_3(v1)
    assert "min_ms" not in v1 and "passes" not in v1 and "steps" not in v1
    db = tmp_path / DB_NAME
    conn = sqlite3.connect(db)
    conn.executescript(v1)
    conn.execute(f"PRAGMA application_id = {store_schema.APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1'), ('application', 'hilnas'), ('created_at', '0')")
    conn.execute("INSERT INTO devices VALUES ('pi', 'fp', '{}', 0, 0)")
    conn.execute("INSERT INTO lut_rows (device_key, fingerprint, runtime, runtime_version, config_hash, op_key, n, "
                 "median_ms, status, measured_at, schema_version) "
                 "VALUES ('pi', 'fp', 'onnxruntime', '1.31.1', 'abc', 'k', 5, 1.5, 'ok', 1, 1)")
    conn.commit()
    conn.close()
    lut = LutId("fp", "onnxruntime", "1.31.1", "abc")
    with Store.open(tmp_path) as store:
        assert store._conn().execute("PRAGMA user_version").fetchone()[0] == store_schema.SCHEMA_VERSION
        row = store.get_lut_row(lut, "k")
        assert row.median_ms == 1.5 and row.min_ms is None and row.schema_version == 1
        assert lut_values(store, lut) == {"k": 1.5}
        with pytest.raises(ValueError, match="without a fastest run"):
            lut_values(store, lut, statistic="min")
        store.put_lut_row(lut, LutRow("j", "pi", 5, 2.0, min_ms=1.8))
        assert store.get_lut_row(lut, "j").min_ms == 1.8
        assert lut_values(store, lut, statistic="median") == {"k": 1.5, "j": 2.0}
    assert (tmp_path / f"{DB_NAME}.v1.bak").exists()


def _without_schema_3(sql: str) -> str:
    """The schema as it was before version 3: no LUT passes, no run pid/host/parent, no steps table."""
    sql = sql.replace("    passes           INTEGER,              -- measurement passes combined into this row "
                      "(schema 3; NULL before)\n", "")
    head, _, tail = sql.partition("    result      TEXT,                      -- JSON, NULL while running\n")
    sql = head + "    result      TEXT\n" + tail[tail.index(");"):]
    return sql[:sql.index("-- Finished steps")] + sql[sql.index("CREATE TABLE models"):]


def test_a_schema_2_store_gains_passes_run_owners_and_steps(tmp_path: Path) -> None:
    """A schema-2 store migrates to 3: its rows keep their numbers with passes unknown (NULL), its runs
    have no pid or host, and new runs record theirs."""
    db = tmp_path / DB_NAME
    conn = sqlite3.connect(db)
    conn.executescript(_without_schema_3(store_schema.SCHEMA))
    conn.execute(f"PRAGMA application_id = {store_schema.APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 2")
    conn.execute("INSERT INTO meta VALUES ('schema_version', '2'), ('application', 'hilnas'), ('created_at', '0')")
    conn.execute("INSERT INTO devices VALUES ('pi', 'fp', '{}', 0, 0)")
    conn.execute("INSERT INTO lut_rows (device_key, fingerprint, runtime, runtime_version, config_hash, op_key, n, "
                 "median_ms, min_ms, status, measured_at, schema_version) "
                 "VALUES ('pi', 'fp', 'onnxruntime', '1.31.1', 'abc', 'k', 5, 1.5, 1.2, 'ok', 1, 2)")
    conn.execute("INSERT INTO runs (kind, config, status, started_at) VALUES ('old', '{}', 'done', 1)")
    conn.commit()
    conn.close()
    with Store.open(tmp_path) as store:
        c = store._conn()
        assert c.execute("PRAGMA user_version").fetchone()[0] == 3
        assert c.execute("SELECT passes FROM lut_rows").fetchone()[0] is None
        row = store.get_lut_row(LutId("fp", "onnxruntime", "1.31.1", "abc"), "k")
        assert (row.median_ms, row.min_ms) == (1.5, 1.2)
        old = store.get_run(1)
        assert old.pid is None and old.host is None and old.parent_id is None
        new = store.get_run(store.start_run("new", parent_id=1))
        assert new.pid == os.getpid() and new.host and new.parent_id == 1
        assert c.execute("SELECT count(*) FROM steps").fetchone()[0] == 0
    assert (tmp_path / f"{DB_NAME}.v2.bak").exists()


def test_missing_migration_is_refused_and_unchanged(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    Store.open(tmp_path).close()
    before = _digest(tmp_path / DB_NAME)
    monkeypatch.setattr(store_schema, "SCHEMA_VERSION", store_schema.SCHEMA_VERSION + 1)
    monkeypatch.setattr(store_schema, "MIGRATIONS", {1: "SELECT 1"})
    with pytest.raises(StoreError, match="no migration from it"):
        Store.open(tmp_path)
    assert _digest(tmp_path / DB_NAME) == before


def test_two_stores_on_one_file_see_each_others_rows(tmp_path: Path) -> None:
    lut = LutId("fp", "onnxruntime", "1.31.1", "abc")
    with Store.open(tmp_path) as a, Store.open(tmp_path) as b:
        a.upsert_device("pi", fingerprint="fp")
        a.put_lut_row(lut, LutRow("k", "pi", 3, 1.0))
        assert b.missing_keys(lut, ["k", "j"]) == ["j"]
