"""The run store's SQLite file on disk: create it, check it is ours, migrate it.

``_inspect`` never writes: a foreign SQLite file, garbage bytes, a damaged store or a store from
a newer hilnas raise ``StoreError`` and the file stays byte-for-byte unchanged. ``_create``
builds a new store beside the target and links it into place, so two processes creating the
same store do not clobber each other; ``_migrate`` upgrades an older schema after a backup copy.
Schema, version and migrations come from ``schema`` (read at call time).
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from pathlib import Path

from hilnas.server.store import schema
from hilnas.server.store.records import StoreError

SQLITE_MAGIC = b"SQLite format 3\x00"


def _create(db: Path) -> None:
    """Build a new store in a temporary file, then link it into place without clobbering."""
    tmp = db.with_name(f".{db.name}.new-{os.getpid()}-{threading.get_ident()}")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        # Rollback-journal mode while creating, so the header (application id) is in the file.
        conn.executescript(
            f"BEGIN; PRAGMA application_id = {schema.APPLICATION_ID}; "
            f"PRAGMA user_version = {schema.SCHEMA_VERSION}; {schema.SCHEMA}; COMMIT;")
        conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", [
            ("application", schema.APPLICATION_NAME),
            ("schema_version", str(schema.SCHEMA_VERSION)),
            ("created_at", repr(time.time()))])
    finally:
        conn.close()
    try:
        os.link(tmp, db)            # fails if another process created the store meanwhile
    except FileExistsError:
        pass
    except OSError:                  # no hard links on this filesystem
        if not db.exists():
            os.replace(tmp, db)
    finally:
        tmp.unlink(missing_ok=True)


def _inspect(db: Path) -> int:
    """Schema version of the store at ``db``; ``StoreError`` for anything else. Never writes
    to ``db``: the header is read as bytes, the rest through a read-only connection."""
    untouched = "It was not changed; move it away or choose another --workspace."
    if not db.is_file():
        raise StoreError(f"{db} is not a regular file. {untouched}")
    with open(db, "rb") as fh:
        header = fh.read(100)
    if not header:
        raise StoreError(f"{db} is an empty file, not a hilnas store. {untouched}")
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        raise StoreError(f"{db} is not an SQLite database (unknown header). {untouched}")
    app_id = int.from_bytes(header[68:72], "big")
    if app_id != schema.APPLICATION_ID:
        raise StoreError(f"{db} is an SQLite database of another application (application_id "
                         f"{app_id:#x}; a hilnas store has {schema.APPLICATION_ID:#x}). "
                         f"{untouched}")
    try:
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {db}: {exc}") from None
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > schema.SCHEMA_VERSION:
            raise StoreError(f"{db} has schema version {version}, newer than this hilnas "
                             f"understands ({schema.SCHEMA_VERSION}); upgrade hilnas. {untouched}")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        meta = dict(conn.execute("SELECT key, value FROM meta")) if "meta" in tables else {}
        if meta.get("application") != schema.APPLICATION_NAME or \
                meta.get("schema_version") != str(version):
            raise StoreError(f"{db} has the hilnas application id but its meta table is "
                             f"missing or disagrees (user_version {version}, meta {meta}). "
                             f"{untouched}")
        missing = [t for t in schema.TABLES if t not in tables]
        if version == schema.SCHEMA_VERSION and missing:
            raise StoreError(f"{db} lacks tables {missing}. {untouched}")
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise StoreError(f"{db} is damaged (quick_check: {check}). {untouched}")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{db} is damaged or not a hilnas store ({exc}). {untouched}") from None
    finally:
        conn.close()
    return version


def _migrate(db: Path, version: int) -> None:
    """Upgrade an older store step by step, after copying it to ``hilnas.db.v<N>.bak``."""
    steps = list(range(version, schema.SCHEMA_VERSION))
    if any(v not in schema.MIGRATIONS for v in steps):
        raise StoreError(f"{db} has schema version {version} and this hilnas has no migration "
                         f"from it to {schema.SCHEMA_VERSION}; it was not changed")
    backup = db.with_name(f"{db.name}.v{version}.bak")
    src = sqlite3.connect(db)
    try:
        dst = sqlite3.connect(backup)
        with dst:
            src.backup(dst)
        dst.close()
        for v in steps:
            src.executescript(
                f"BEGIN IMMEDIATE; {schema.MIGRATIONS[v]}; PRAGMA user_version = {v + 1}; "
                f"UPDATE meta SET value = '{v + 1}' WHERE key = 'schema_version'; COMMIT;")
    except sqlite3.Error as exc:
        with contextlib.suppress(sqlite3.Error):
            src.execute("ROLLBACK")
        raise StoreError(f"migrating {db} from schema {version} failed ({exc}); "
                         f"a copy from before is at {backup}") from None
    finally:
        src.close()
