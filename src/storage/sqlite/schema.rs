//! The two files' schemas and their versioned migrations (PRAGMA user_version).
//!
//! Version 0 is any legacy file (or a new empty one); each migration moves a file one version up
//! inside one BEGIN IMMEDIATE transaction and keeps every row. A file newer than the library is
//! refused rather than guessed at.

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Error, ErrorKind, Result};

/// One step: brings a file from version `index` to `index + 1`.
type Migration = fn(&Connection) -> Result<()>;

/// jobs.db: v1 = the legacy layout complete (late columns added, the seed's foreign key to a
/// `users` table that never existed removed); v2 = Set Action idempotency keys, and an index of
/// jobs still in progress for interrupted-job recovery; v3 = a stored customer_count and an
/// index that serves "a user's newest jobs" without sorting or counting per call; v4 = the
/// outbox that makes a Set Action's audit row survive a crash between the two files' commits;
/// v5 = the library's own clock for recovery, request fingerprints for idempotency keys, and
/// the outbox that lets an outcome commit without audit.db; v6 = fewer B-trees per write: the
/// indexes no query needs dropped, job_customers without AUTOINCREMENT; v7 = which jobs the
/// library's own Set Action created (the only ones recovery may mark interrupted).
const JOBS_MIGRATIONS: &[Migration] = &[
    jobs_v1_adopt_legacy,
    jobs_v2_set_action_requests,
    jobs_v3_user_job_listing,
    jobs_v4_pending_audit,
    jobs_v5_clock_fingerprints_outbox,
    jobs_v6_lower_the_floor,
    jobs_v7_set_action_jobs,
];
/// audit.db: v1 = the legacy layout; v2 = the hash chain and append-only triggers; v3 = no row
/// replaced by INSERT OR REPLACE, and the outbox's delivery receipts; v4 = the index no query can
/// use dropped.
const AUDIT_MIGRATIONS: &[Migration] = &[
    audit_v1_adopt_legacy,
    audit_v2_hash_chain,
    audit_v3_no_replace_receipts,
    audit_v4_lower_the_floor,
];

/// Legacy indexes that every write pays for and no query of the library or of the legacy app
/// needs (`storage/sqlite/query_plans.rs` shows each remaining index serving a query, and each query
/// served without these):
/// - `idx_jobs_user_id (user_id)`: a prefix of `idx_jobs_user_created (user_id, created_at)`;
/// - `idx_jobs_created_at (created_at)`: no query filters or sorts all jobs by time;
/// - `idx_job_customers_job_id (job_id)`: a prefix of the `UNIQUE(job_id, cid)` index;
/// - `idx_appstatus_cache_cid (cid)` and `idx_appstatus_cache_cid_app (cid, app_name)`: a prefix
///   of, and a copy of, the `UNIQUE(cid, app_name)` index.
///
/// The legacy app recreates them at its start (`CREATE INDEX IF NOT EXISTS`); that still works,
/// and the library leaves them then: dropping them at every open would take the write lock at
/// open and have the two apps build and drop indexes in turn.
pub const UNNEEDED_JOBS_INDEXES: &[&str] = &[
    "idx_jobs_user_id",
    "idx_jobs_created_at",
    "idx_job_customers_job_id",
    "idx_appstatus_cache_cid",
    "idx_appstatus_cache_cid_app",
];
/// `idx_customer_search (customer_ids)` indexes whole JSON texts: no customer match can use it
/// (the legacy app's `LIKE '%id%'` cannot, nor can the library's whole-ID match).
pub const UNNEEDED_AUDIT_INDEXES: &[&str] = &["idx_customer_search"];

pub const JOBS_SCHEMA_VERSION: i64 = JOBS_MIGRATIONS.len() as i64;
pub const AUDIT_SCHEMA_VERSION: i64 = AUDIT_MIGRATIONS.len() as i64;

/// Bring jobs.db up to date. A read-only file must already be current (nothing can be changed).
pub fn migrate_jobs(conn: &Connection, writable: bool) -> Result<()> {
    migrate(conn, "jobs", JOBS_MIGRATIONS, writable)
}

pub fn migrate_audit(conn: &Connection, writable: bool) -> Result<()> {
    migrate(conn, "audit", AUDIT_MIGRATIONS, writable)
}

/// Bring a file only up to `version` of the library's steps: upgrade tests build the layouts
/// earlier releases left behind with it.
#[doc(hidden)]
pub fn migrate_to(conn: &Connection, which: DbFileKind, version: usize) -> Result<()> {
    match which {
        DbFileKind::Jobs => migrate(conn, "jobs", &JOBS_MIGRATIONS[..version], true),
        DbFileKind::Audit => migrate(conn, "audit", &AUDIT_MIGRATIONS[..version], true),
    }
}

#[doc(hidden)]
pub use crate::storage::DbFile as DbFileKind;

/// The error for a file written by a newer library (checked before anything is written).
pub fn too_new(path: &std::path::Path, found: i64, known: i64) -> Error {
    Error::new(
        ErrorKind::SchemaTooNew,
        format!(
            "{} has schema version {found}, newer than the {known} this library knows; use a newer \
             libtms (the file was not changed)",
            path.display()
        ),
    )
}

fn user_version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

fn migrate(conn: &Connection, which: &str, steps: &[Migration], writable: bool) -> Result<()> {
    let target = steps.len() as i64;
    let refuse_newer = |found: i64| {
        Error::new(
            ErrorKind::SchemaTooNew,
            format!(
                "the {which} database has schema version {found}, newer than the {target} this \
                 library knows; use a newer libtms"
            ),
        )
    };
    let found = user_version(conn)?;
    if found > target {
        return Err(refuse_newer(found));
    }
    if found == target {
        return Ok(());
    }
    if !writable {
        return Err(Error::new(
            ErrorKind::ReadOnly,
            format!(
                "the {which} database is read-only and has schema version {found}; this library needs \
                 {target}: open it once where it can be written, so that it is brought up to date"
            ),
        ));
    }
    // Rebuilding a table needs foreign keys off, and that pragma is a no-op inside a transaction.
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    let result = (|| {
        let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
        // Another process may have migrated while we waited for the write lock.
        let mut version = user_version(&tx)?;
        if version > target {
            return Err(refuse_newer(version));
        }
        while version < target {
            steps[version as usize](&tx)?;
            version += 1;
        }
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        Ok(())
    })();
    conn.pragma_update(None, "foreign_keys", "ON")?;
    result.map_err(|e| e.context(&format!("cannot bring the {which} database up to date")))
}

fn columns(conn: &Connection, table: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    let names = stmt.query_map([], |r| r.get::<_, String>(1))?.collect::<rusqlite::Result<_>>()?;
    Ok(names)
}

/// The jobs table as the legacy app's latest code has it (column order included).
const JOBS_TABLE: &str = "
    job_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    batch_id TEXT,
    action_code INTEGER NOT NULL,
    action_name TEXT NOT NULL,
    cluster_url TEXT,
    created_at TEXT NOT NULL,
    request_payload TEXT,
    response_summary TEXT,
    status TEXT DEFAULT 'success',
    http_status INTEGER,
    error_message TEXT,
    updated_at TEXT";

const JOBS_COLUMNS: &str = "job_id, user_id, batch_id, action_code, action_name, cluster_url, \
    created_at, request_payload, response_summary, status, http_status, error_message, updated_at";

fn jobs_v1_adopt_legacy(conn: &Connection) -> Result<()> {
    conn.execute_batch(&format!("CREATE TABLE IF NOT EXISTS jobs ({JOBS_TABLE});"))?;
    let existing = columns(conn, "jobs")?;
    for (name, decl) in
        [("http_status", "INTEGER"), ("error_message", "TEXT"), ("updated_at", "TEXT")]
    {
        if !existing.iter().any(|c| c == name) {
            conn.execute_batch(&format!("ALTER TABLE jobs ADD COLUMN {name} {decl};"))?;
        }
    }
    // The seed declared jobs.user_id REFERENCES users(user_id), a table that never existed: with
    // foreign keys on, every insert failed. Rebuild the table without it (SQLite cannot drop a
    // constraint in place), copying every row.
    let references_users: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM pragma_foreign_key_list('jobs') WHERE \"table\" = 'users')",
        [],
        |r| r.get(0),
    )?;
    if references_users {
        // Columns someone added by hand are carried over too, with their declared types.
        let mut extra_decl = String::new();
        let mut copied = JOBS_COLUMNS.to_owned();
        let mut stmt = conn.prepare("SELECT name, type FROM pragma_table_info('jobs')")?;
        let cols: Vec<(String, String)> =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
        for (name, decl) in cols {
            if !JOBS_COLUMNS.split(", ").any(|known| known.trim() == name) {
                let quoted = format!("\"{}\"", name.replace('"', "\"\""));
                extra_decl.push_str(&format!(",\n    {quoted} {decl}"));
                copied.push_str(&format!(", {quoted}"));
            }
        }
        conn.execute_batch(&format!(
            "CREATE TABLE jobs_rebuilt ({JOBS_TABLE}{extra_decl});
             INSERT INTO jobs_rebuilt ({copied}) SELECT {copied} FROM jobs;
             DROP TABLE jobs;
             ALTER TABLE jobs_rebuilt RENAME TO jobs;"
        ))?;
    }
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS job_customers (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id TEXT NOT NULL,
            cid TEXT NOT NULL,
            FOREIGN KEY (job_id) REFERENCES jobs(job_id),
            UNIQUE(job_id, cid)
         );
         CREATE INDEX IF NOT EXISTS idx_jobs_user_id ON jobs(user_id);
         CREATE INDEX IF NOT EXISTS idx_jobs_created_at ON jobs(created_at);
         CREATE INDEX IF NOT EXISTS idx_job_customers_job_id ON job_customers(job_id);
         CREATE TABLE IF NOT EXISTS appstatus_cache (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            cid TEXT NOT NULL,
            app_name TEXT NOT NULL,
            status_data TEXT NOT NULL,
            cached_at TEXT NOT NULL,
            ttl_seconds INTEGER DEFAULT 1800,
            UNIQUE(cid, app_name)
         );
         CREATE INDEX IF NOT EXISTS idx_appstatus_cache_cid ON appstatus_cache(cid);
         CREATE INDEX IF NOT EXISTS idx_appstatus_cache_cid_app ON appstatus_cache(cid, app_name);",
    )?;
    Ok(())
}

fn jobs_v2_set_action_requests(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS set_action_requests (
            user_id TEXT NOT NULL,
            idempotency_key TEXT NOT NULL,
            job_id TEXT NOT NULL REFERENCES jobs(job_id),
            answer_http_status INTEGER,
            answer_body TEXT,
            created_at TEXT NOT NULL,
            PRIMARY KEY (user_id, idempotency_key)
         ) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS idx_jobs_in_progress ON jobs(created_at)
            WHERE status = 'IN_PROGRESS';",
    )?;
    Ok(())
}

fn jobs_v3_user_job_listing(conn: &Connection) -> Result<()> {
    if !columns(conn, "jobs")?.iter().any(|c| c == "customer_count") {
        // NULL means "count it": rows written later by a legacy writer that does not know the
        // column are still listed correctly (see jobs::COUNT).
        conn.execute_batch(
            "ALTER TABLE jobs ADD COLUMN customer_count INTEGER;
             UPDATE jobs SET customer_count =
                 (SELECT COUNT(*) FROM job_customers c WHERE c.job_id = jobs.job_id);",
        )?;
    }
    conn.execute_batch("CREATE INDEX IF NOT EXISTS idx_jobs_user_created ON jobs(user_id, created_at);")?;
    Ok(())
}

/// SQLite commits a transaction over attached WAL databases file by file (jobs.db first), so a
/// crash in between could keep the job's outcome and lose its audit row. The outcome's
/// transaction also writes the audit row here, in jobs.db; recovery copies any row audit.db
/// lacks and clears the entry.
fn jobs_v4_pending_audit(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS pending_audit (
            job_id TEXT PRIMARY KEY REFERENCES jobs(job_id),
            audit_id INTEGER NOT NULL,
            record TEXT NOT NULL
         );",
    )?;
    Ok(())
}

/// - `touched_unix_ms`: Unix time (UTC, ms) of the library's last write to the job. Recovery of
///   interrupted jobs compares it, never the local-time text columns, whose zone is the writer's.
///   The partial index holds only jobs in flight.
/// - `request_fingerprint`: what an idempotency key was first used for, so a reuse for another
///   request is refused instead of answered with the first one's result.
/// - `audit_outbox` replaces `pending_audit` (whose rows move over): an outcome commits in
///   jobs.db alone, its audit row waits here until audit.db has it (see `outbox`).
fn jobs_v5_clock_fingerprints_outbox(conn: &Connection) -> Result<()> {
    if !columns(conn, "jobs")?.iter().any(|c| c == "touched_unix_ms") {
        conn.execute_batch("ALTER TABLE jobs ADD COLUMN touched_unix_ms INTEGER;")?;
    }
    if !columns(conn, "set_action_requests")?.iter().any(|c| c == "request_fingerprint") {
        conn.execute_batch("ALTER TABLE set_action_requests ADD COLUMN request_fingerprint TEXT;")?;
    }
    conn.execute_batch(
        "DROP INDEX IF EXISTS idx_jobs_in_progress;
         CREATE INDEX IF NOT EXISTS idx_jobs_in_flight ON jobs(touched_unix_ms)
            WHERE status = 'IN_PROGRESS';
         CREATE TABLE IF NOT EXISTS audit_outbox (
            id INTEGER PRIMARY KEY,
            delivery_key TEXT NOT NULL,
            record TEXT NOT NULL,
            audit_id_hint INTEGER
         );
         INSERT INTO audit_outbox (delivery_key, record, audit_id_hint)
            SELECT 'v4:' || job_id, record, audit_id FROM pending_audit;
         DROP TABLE pending_audit;",
    )?;
    Ok(())
}

/// `set_action_job`: 1 for a job the library's own Set Action created and whose outcome it
/// records; NULL for jobs from `create_job` and from legacy writers, which are their caller's to
/// finish (the dashboard's `/api/jobs/create` leaves its jobs IN_PROGRESS), so recovery never
/// marks them. Jobs from before this version are not marked: nothing recorded which call made
/// them, and a wrong "interrupted" in an operator's history is worse than a job left in progress.
fn jobs_v7_set_action_jobs(conn: &Connection) -> Result<()> {
    if !columns(conn, "jobs")?.iter().any(|c| c == "set_action_job") {
        conn.execute_batch("ALTER TABLE jobs ADD COLUMN set_action_job INTEGER;")?;
    }
    Ok(())
}

/// Each small job touched nine B-trees; dropping the indexes no query needs leaves six. The
/// customer rows' ids stay as they are (every row and id is copied) and new ones stay unique and
/// increasing: without AUTOINCREMENT a new row takes the largest id plus one, and neither the
/// library nor the legacy app deletes customer rows, so no id can come back. What goes is one
/// more B-tree write per job (`sqlite_sequence`), measured at about a tenth of a small job's
/// commit.
///
/// The table is rebuilt from its own definition (SQLite's recipe for changes ALTER TABLE cannot
/// make), so whatever someone added by hand (columns with their constraints, foreign-key actions,
/// indexes, triggers) stays; only the AUTOINCREMENT keyword goes.
fn jobs_v6_lower_the_floor(conn: &Connection) -> Result<()> {
    drop_indexes(conn, UNNEEDED_JOBS_INDEXES)?;
    let table_sql: String =
        conn.query_row("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'job_customers'", [], |r| r.get(0))?;
    let Some(rebuilt_sql) = without_autoincrement(&table_sql) else {
        return Ok(());
    };
    let mut stmt = conn.prepare(
        "SELECT sql FROM sqlite_schema WHERE tbl_name = 'job_customers' AND type IN ('index', 'trigger')
            AND sql IS NOT NULL",
    )?;
    let dependents: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    // Stored columns only: generated ones are computed again by the new table.
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_xinfo('job_customers') WHERE hidden = 0")?;
    let columns: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    let copied = columns.iter().map(|n| format!("\"{}\"", n.replace('"', "\"\""))).collect::<Vec<_>>().join(", ");
    conn.execute_batch(&format!(
        "{rebuilt_sql};
         INSERT INTO job_customers_rebuilt ({copied}) SELECT {copied} FROM job_customers;
         DROP TABLE job_customers;"
    ))?;
    // Views or other tables' triggers that name job_customers would fail the rename's check of
    // the whole schema while the name is free; the legacy rename does not check them.
    conn.pragma_update(None, "legacy_alter_table", "ON")?;
    let renamed = conn.execute_batch("ALTER TABLE job_customers_rebuilt RENAME TO job_customers;");
    conn.pragma_update(None, "legacy_alter_table", "OFF")?;
    renamed?;
    for sql in dependents {
        conn.execute_batch(&sql)?;
    }
    Ok(())
}

/// `CREATE TABLE job_customers (...)` as `CREATE TABLE job_customers_rebuilt (...)` without its
/// AUTOINCREMENT keyword; None when it has none.
fn without_autoincrement(table_sql: &str) -> Option<String> {
    let upper = table_sql.to_ascii_uppercase();
    let at = upper.find("AUTOINCREMENT")?;
    let body_at = table_sql.find('(')?;
    let body = format!("{}{}", &table_sql[body_at..at], &table_sql[at + "AUTOINCREMENT".len()..]);
    Some(format!("CREATE TABLE job_customers_rebuilt {body}"))
}

fn audit_v4_lower_the_floor(conn: &Connection) -> Result<()> {
    drop_indexes(conn, UNNEEDED_AUDIT_INDEXES)
}

fn drop_indexes(conn: &Connection, names: &[&str]) -> Result<()> {
    for name in names {
        conn.execute_batch(&format!("DROP INDEX IF EXISTS {name};"))?;
    }
    Ok(())
}

fn audit_v1_adopt_legacy(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS audit_log (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id TEXT NOT NULL,
            action_type TEXT NOT NULL,
            customer_ids TEXT,
            timestamp DATETIME DEFAULT CURRENT_TIMESTAMP,
            ip_address TEXT,
            status TEXT,
            error_message TEXT,
            duration_ms INTEGER
         );
         CREATE INDEX IF NOT EXISTS idx_user_timestamp ON audit_log(user_id, timestamp DESC);
         CREATE INDEX IF NOT EXISTS idx_action_type ON audit_log(action_type);
         CREATE INDEX IF NOT EXISTS idx_timestamp ON audit_log(timestamp DESC);
         CREATE INDEX IF NOT EXISTS idx_customer_search ON audit_log(customer_ids);",
    )?;
    Ok(())
}

/// Rows already present stay unchained (their chain columns NULL); every new row is chained.
/// The triggers make rows append-only for every writer of the file, the legacy app included;
/// `clear_audit_logs` lifts them inside its own transaction and records the reset.
pub const AUDIT_TRIGGERS: &str = "
    CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: rows cannot be changed'); END;
    CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: use clear_audit_logs, which records the reset'); END;";

/// `INSERT OR REPLACE` (and `REPLACE`) deletes the row it replaces without firing the delete
/// trigger (SQLite runs no delete triggers for REPLACE unless recursive_triggers is on): refuse
/// any insert that would replace a row, by id or by chain sequence. SQLite shows an insert that
/// leaves the id to AUTOINCREMENT as NEW.id = -1 here, so -1 itself cannot be checked; no row
/// the library writes has it, and one that an attacker writes is out of chain anyway.
pub const AUDIT_NO_REPLACE: &str = "
    CREATE TRIGGER IF NOT EXISTS audit_log_no_replace BEFORE INSERT ON audit_log
    WHEN (NEW.id <> -1 AND EXISTS(SELECT 1 FROM audit_log WHERE id = NEW.id))
      OR (NEW.chain_seq IS NOT NULL AND EXISTS(SELECT 1 FROM audit_log WHERE chain_seq = NEW.chain_seq))
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: an insert may not replace a row'); END;";

/// The append-only triggers, created where missing (cheap when present).
pub fn ensure_audit_triggers(conn: &Connection) -> Result<()> {
    let missing: i64 = conn.query_row(
        "SELECT 3 - COUNT(*) FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = 'audit_log'
            AND name IN ('audit_log_no_update', 'audit_log_no_delete', 'audit_log_no_replace')",
        [],
        |r| r.get(0),
    )?;
    if missing > 0 {
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {AUDIT_TRIGGERS} {AUDIT_NO_REPLACE} COMMIT;"))?;
    }
    Ok(())
}

fn audit_v3_no_replace_receipts(conn: &Connection) -> Result<()> {
    conn.execute_batch(AUDIT_NO_REPLACE)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS audit_outbox_receipts (
            delivery_key TEXT PRIMARY KEY,
            audit_id INTEGER NOT NULL
         ) WITHOUT ROWID;",
    )?;
    Ok(())
}

fn audit_v2_hash_chain(conn: &Connection) -> Result<()> {
    let existing = columns(conn, "audit_log")?;
    for (name, decl) in [("chain_seq", "INTEGER"), ("chain_prev", "TEXT"), ("chain_hash", "TEXT")] {
        if !existing.iter().any(|c| c == name) {
            conn.execute_batch(&format!("ALTER TABLE audit_log ADD COLUMN {name} {decl};"))?;
        }
    }
    conn.execute_batch(
        "CREATE UNIQUE INDEX IF NOT EXISTS idx_audit_chain_seq ON audit_log(chain_seq)
            WHERE chain_seq IS NOT NULL;",
    )?;
    conn.execute_batch(AUDIT_TRIGGERS)?;
    Ok(())
}
