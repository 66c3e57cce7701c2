"""The run store's SQLite schema, its version, and the migrations between versions.

Kept apart from ``store.py`` so a schema change is one reviewed diff. A ``.py`` rather than a
``.sql`` file so it ships with the package without package-data rules.

Versioning: ``PRAGMA application_id`` marks a file as a hilnas store (set once, at creation);
``PRAGMA user_version`` and ``meta.schema_version`` hold the schema version. A store older than
``SCHEMA_VERSION`` is migrated step by step with ``MIGRATIONS[v]`` (v -> v + 1) after a backup
copy; a newer one is refused.
"""
from __future__ import annotations

# "hNAS" as a big-endian int32: written at file offset 68 of every hilnas store.
APPLICATION_ID = 0x684E4153
APPLICATION_NAME = "hilnas"
SCHEMA_VERSION = 3

# Times are UNIX epoch seconds (REAL); dicts are JSON text; flags are 0/1 integers.
SCHEMA = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE devices (
    key         TEXT PRIMARY KEY,          -- the fleet's device key, e.g. "raspi4"
    fingerprint TEXT NOT NULL,             -- latest fingerprint the device's agents reported
    info        TEXT NOT NULL DEFAULT '{}',-- DeviceInfo as JSON
    first_seen  REAL NOT NULL,
    last_seen   REAL NOT NULL
);

-- One measured op instance. A LUT is the set of rows sharing
-- (fingerprint, runtime, runtime_version, config_hash): rows of different LUTs never mix.
CREATE TABLE lut_rows (
    id               INTEGER PRIMARY KEY,
    device_key       TEXT NOT NULL REFERENCES devices(key),  -- who measured it
    fingerprint      TEXT NOT NULL,
    runtime          TEXT NOT NULL,        -- backend, e.g. "onnxruntime"
    runtime_version  TEXT NOT NULL,
    config_hash      TEXT NOT NULL,        -- config_hash() of the measurement config
    op_key           TEXT NOT NULL,        -- opaque op key
    n                INTEGER NOT NULL,     -- timed runs
    median_ms        REAL,                 -- NULL only for failed statuses
    min_ms           REAL,                 -- fastest timed run over all passes (schema 2; NULL before)
    passes           INTEGER,              -- measurement passes combined into this row (schema 3; NULL before)
    p90_ms           REAL,
    mean_ms          REAL,
    std_ms           REAL,
    ci95_low_ms      REAL,
    ci95_high_ms     REAL,
    energy_mj        REAL,                 -- gross energy per inference (mJ); NULL = not measured
    energy_net_mj    REAL,                 -- idle-subtracted energy per inference (mJ)
    energy_estimated INTEGER NOT NULL DEFAULT 0,
    status           TEXT NOT NULL,        -- "ok", "unstable", "unsupported_op", ...
    conditions       TEXT NOT NULL DEFAULT '{}',
    simulated        INTEGER NOT NULL DEFAULT 0,
    measured_at      REAL NOT NULL,
    schema_version   INTEGER NOT NULL,
    UNIQUE (fingerprint, runtime, runtime_version, config_hash, op_key)
);
CREATE INDEX lut_rows_device ON lut_rows(device_key);

CREATE TABLE runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL,             -- e.g. "lut-build", "search:dca", "validate"
    config      TEXT NOT NULL DEFAULT '{}',
    status      TEXT NOT NULL,             -- "running", "done", "failed", "cancelled"
    started_at  REAL NOT NULL,
    finished_at REAL,
    result      TEXT,                      -- JSON, NULL while running
    pid         INTEGER,                   -- process that runs it (schema 3), to tell a killed run
    host        TEXT,                      -- ... on which machine (schema 3)
    parent_id   INTEGER REFERENCES runs(id)  -- the run file / sweep this run is a step or cell of (schema 3)
);

-- Finished steps of a resumable run (a LUT build, one search, one training, one validation):
-- a re-run skips every step recorded here as done (schema 3).
CREATE TABLE steps (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      INTEGER NOT NULL REFERENCES runs(id),
    key         TEXT NOT NULL,             -- the step's stable name within its run
    status      TEXT NOT NULL,             -- "running", "done", "failed"
    result      TEXT NOT NULL DEFAULT '{}',-- JSON
    started_at  REAL NOT NULL,
    finished_at REAL,
    UNIQUE (run_id, key)
);

CREATE TABLE models (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id               INTEGER REFERENCES runs(id),
    name                 TEXT NOT NULL,
    genotype             TEXT NOT NULL,    -- JSON
    onnx_sha256          TEXT,
    path                 TEXT,
    device_key           TEXT,             -- the device the prediction is for
    lut                  TEXT,             -- JSON LutId the prediction used
    predicted_latency_ms REAL,
    predicted_energy_mj  REAL,
    created_at           REAL NOT NULL
);

CREATE TABLE validations (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    model_id            INTEGER NOT NULL REFERENCES models(id),
    device_key          TEXT NOT NULL REFERENCES devices(key),
    fingerprint         TEXT NOT NULL,
    status              TEXT NOT NULL,
    predicted_ms        REAL,
    measured_ms         REAL,
    predicted_energy_mj REAL,
    measured_energy_mj  REAL,
    stats               TEXT NOT NULL DEFAULT '{}',
    measured_at         REAL NOT NULL
);
CREATE INDEX validations_model ON validations(model_id);
"""

# MIGRATIONS[v] upgrades a version-v store to v + 1 (run inside one transaction).
MIGRATIONS: dict[int, str] = {
    1: "ALTER TABLE lut_rows ADD COLUMN min_ms REAL",  # 2: the fastest run, for --statistic min
    # 3: passes per LUT row (a killed multi-pass build resumes), who runs a run, run steps
    2: "ALTER TABLE lut_rows ADD COLUMN passes INTEGER; ALTER TABLE runs ADD COLUMN pid INTEGER; "
       "ALTER TABLE runs ADD COLUMN host TEXT; ALTER TABLE runs ADD COLUMN parent_id INTEGER REFERENCES runs(id); "
       "CREATE TABLE steps (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id INTEGER NOT NULL REFERENCES runs(id), "
       "key TEXT NOT NULL, status TEXT NOT NULL, result TEXT NOT NULL DEFAULT '{}', started_at REAL NOT NULL, "
       "finished_at REAL, UNIQUE (run_id, key))",
}

# Tables a valid store must have (checked on open, so a damaged file is refused early).
TABLES = ("meta", "devices", "lut_rows", "runs", "models", "validations", "steps")
