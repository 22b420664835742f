//! The store's schema in PostgreSQL and its versioned migrations. The version lives in the
//! database (`tms_schema`); several hosts starting together migrate once, under an advisory
//! lock, re-reading the version inside it; a database newer than the library is refused before
//! anything is written.
//!
//! The tables mirror the SQLite files' (same columns and meanings, so every method answers in the
//! same shapes), in one database: jobs and the audit log commit together, so no outbox is needed.
//! Text that is sorted or compared is `COLLATE "C"`, as SQLite compares bytes, whatever the
//! database's collation.

use postgres::Client;

use super::pg_error;
use crate::error::{Error, ErrorKind, Result};

/// One migration step's SQL; step `i` brings the store from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[V1, V2, V3, V4];

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// - `set_action_job`: jobs the library's own Set Action created (recovery marks only these
///   interrupted; jobs from `create_job` are their caller's). Jobs from before are left alone.
/// - `set_action_audit_receipts`: which Set Actions have their audit row, written in the
///   transaction that writes the row. An outcome recorded again (a rerun after a commit whose
///   answer the dropped connection lost, or a waiting outcome delivered later) finds the receipt
///   and appends nothing: the audit row is written exactly once.
const V2: &str = r#"
ALTER TABLE jobs ADD COLUMN set_action_job BOOLEAN NOT NULL DEFAULT false;
CREATE TABLE set_action_audit_receipts (
    job_id TEXT PRIMARY KEY,  -- no foreign key: a sent action's audit row outlives a lost job row
    audit_id BIGINT
);
"#;

/// Least privilege: the app's role may append to the audit log but never change it.
/// - The append-only trigger lets the reset's DELETE through only for the table's owner (a
///   session setting alone switched it off for anyone who could DELETE).
/// - The chain's head is locked and audit rows are appended through two functions that run as
///   the schema's owner (SECURITY DEFINER, with a fixed search_path): the app's role needs
///   EXECUTE on them and SELECT on the tables, never INSERT, UPDATE or DELETE on audit_log or
///   the head. The append checks that the new row extends the head it locked.
/// - Both functions are not for PUBLIC: the DBA grants EXECUTE to the app's role (README).
const V3: &str = r#"
CREATE OR REPLACE FUNCTION tms_audit_append_only() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- Catalog names qualified and the search_path fixed: a session's temporary table called
    -- pg_class must not stand in for the catalog's.
    IF TG_OP = 'DELETE' AND pg_catalog.current_setting('tms.audit_reset', true) = 'on'
       AND pg_catalog.pg_has_role(current_user,
                                  (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = TG_RELID), 'MEMBER') THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only: rows cannot be changed (the owner''s clear_audit_logs records a reset)'
        USING ERRCODE = '42501';
END $$;
DO $do$
BEGIN
    EXECUTE format($f$
        CREATE OR REPLACE FUNCTION tms_audit_lock_head(OUT seq BIGINT, OUT hash TEXT)
        LANGUAGE sql SECURITY DEFINER SET search_path = %I, pg_temp
        AS 'SELECT seq, hash FROM audit_chain_head FOR UPDATE'
    $f$, current_schema());
    EXECUTE format($f$
        CREATE OR REPLACE FUNCTION tms_audit_append(p_user_id TEXT, p_action_type TEXT, p_customer_ids TEXT,
            p_timestamp TEXT, p_ip_address TEXT, p_status TEXT, p_error_message TEXT, p_duration_ms BIGINT,
            p_seq BIGINT, p_prev TEXT, p_hash TEXT) RETURNS BIGINT
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = %I, pg_temp AS $body$
        DECLARE
            head_seq BIGINT;
            head_hash TEXT;
            new_id BIGINT;
        BEGIN
            -- The library's own row types (a reset, a legacy digest, an adoption) only for the
            -- owner's sessions: an app role holding the HMAC key must not forge one.
            IF p_action_type IN ('audit_reset', 'audit_legacy_digest', 'audit_adopt_unchained')
               AND NOT pg_catalog.pg_has_role(session_user,
                       (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = 'audit_log'::regclass), 'MEMBER') THEN
                RAISE EXCEPTION 'action type %% is written only by the schema owner''s own operations', p_action_type
                    USING ERRCODE = '42501';
            END IF;
            SELECT seq, hash INTO head_seq, head_hash FROM audit_chain_head FOR UPDATE;
            IF p_seq IS DISTINCT FROM head_seq + 1 OR (head_seq > 0 AND p_prev IS DISTINCT FROM head_hash) THEN
                RAISE EXCEPTION 'audit append does not extend the chain''s head (seq %%)', head_seq
                    USING ERRCODE = '40001';
            END IF;
            INSERT INTO audit_log (user_id, action_type, customer_ids, "timestamp", ip_address, status,
                                   error_message, duration_ms, chain_seq, chain_prev, chain_hash)
            VALUES (p_user_id, p_action_type, p_customer_ids, p_timestamp, p_ip_address, p_status,
                    p_error_message, p_duration_ms, p_seq, p_prev, p_hash)
            RETURNING id INTO new_id;
            UPDATE audit_chain_head SET seq = p_seq, hash = p_hash;
            RETURN new_id;
        END $body$
    $f$, current_schema());
END $do$;
REVOKE ALL ON FUNCTION tms_audit_lock_head() FROM PUBLIC;
REVOKE ALL ON FUNCTION tms_audit_append(TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, BIGINT, BIGINT, TEXT, TEXT) FROM PUBLIC;
"#;

/// One round trip per audit row: `tms_audit_append_at` appends only if the chain's head is still
/// the one the client linked the row to (`p_seq - 1`, `p_prev`), else appends nothing and returns
/// NULL (no error, so a transaction around it goes on: the caller reads the new head, checks it
/// and links again). The HMAC key stays on the client: the server only compares. With
/// `p_keyed_after` set (a store without a key continuing a plain chain), it also appends nothing
/// if a keyed row follows that seq, as the client's check of the head would refuse it.
/// Every role that may EXECUTE `tms_audit_append` gets this function too, so an app role granted
/// by the README of schema v3 keeps working after the owner's upgrade.
///
/// `append_nonce`: a random value the client makes for each call, kept with the row this
/// function appends (only here; NULL on every other row, outside the chain's hash, never
/// copied). A client that lost the connection with the statement in flight asks for its row by
/// it: a row of the same content another writer appended at that seq in the same second has
/// the same link, never the same nonce.
const V4: &str = r#"
ALTER TABLE audit_log ADD COLUMN append_nonce TEXT;
DO $do$
DECLARE
    r RECORD;
BEGIN
    EXECUTE format($f$
        CREATE OR REPLACE FUNCTION tms_audit_append_at(p_user_id TEXT, p_action_type TEXT, p_customer_ids TEXT,
            p_timestamp TEXT, p_ip_address TEXT, p_status TEXT, p_error_message TEXT, p_duration_ms BIGINT,
            p_seq BIGINT, p_prev TEXT, p_hash TEXT, p_keyed_after BIGINT, p_nonce TEXT) RETURNS BIGINT
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = %I, pg_temp AS $body$
        DECLARE
            head_seq BIGINT;
            head_hash TEXT;
            new_id BIGINT;
        BEGIN
            IF p_action_type IN ('audit_reset', 'audit_legacy_digest', 'audit_adopt_unchained')
               AND NOT pg_catalog.pg_has_role(session_user,
                       (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = 'audit_log'::regclass), 'MEMBER') THEN
                RAISE EXCEPTION 'action type %% is written only by the schema owner''s own operations', p_action_type
                    USING ERRCODE = '42501';
            END IF;
            SELECT seq, hash INTO head_seq, head_hash FROM audit_chain_head FOR UPDATE;
            -- Only onto a begun chain's head: the first row's link needs the legacy rows' digest,
            -- which the client takes under the locked head.
            IF head_seq = 0 OR p_seq IS DISTINCT FROM head_seq + 1 OR p_prev IS DISTINCT FROM head_hash THEN
                RETURN NULL;
            END IF;
            IF p_keyed_after IS NOT NULL AND EXISTS (SELECT 1 FROM audit_log
                    WHERE chain_seq > p_keyed_after AND chain_hash LIKE 'hmac-sha256:%%') THEN
                RETURN NULL;
            END IF;
            INSERT INTO audit_log (user_id, action_type, customer_ids, "timestamp", ip_address, status,
                                   error_message, duration_ms, chain_seq, chain_prev, chain_hash, append_nonce)
            VALUES (p_user_id, p_action_type, p_customer_ids, p_timestamp, p_ip_address, p_status,
                    p_error_message, p_duration_ms, p_seq, p_prev, p_hash, p_nonce)
            RETURNING id INTO new_id;
            UPDATE audit_chain_head SET seq = p_seq, hash = p_hash;
            RETURN new_id;
        END $body$
    $f$, current_schema());
    REVOKE ALL ON FUNCTION tms_audit_append_at(TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, BIGINT, BIGINT, TEXT, TEXT, BIGINT,
        TEXT) FROM PUBLIC;
    FOR r IN SELECT g.rolname FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
                 JOIN pg_catalog.pg_roles g ON g.oid = a.grantee
             WHERE p.oid = 'tms_audit_append(TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, BIGINT, BIGINT, TEXT, TEXT)'::regprocedure
               AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION tms_audit_append_at(TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, BIGINT, '
                       'BIGINT, TEXT, TEXT, BIGINT, TEXT) TO %I', r.rolname);
    END LOOP;
END $do$;
"#;

const V1: &str = r#"
CREATE TABLE jobs (
    job_id TEXT PRIMARY KEY,
    user_id TEXT COLLATE "C" NOT NULL,
    batch_id TEXT,
    action_code BIGINT NOT NULL,
    action_name TEXT NOT NULL,
    cluster_url TEXT,
    created_at TEXT COLLATE "C" NOT NULL,
    request_payload TEXT,
    response_summary TEXT,
    status TEXT DEFAULT 'success',
    http_status BIGINT,
    error_message TEXT,
    updated_at TEXT,
    customer_count BIGINT,
    -- The server's clock of the library's last write: recovery compares it, never any host's.
    touched_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Insertion order, to list jobs created in the same microsecond as SQLite's rowid does.
    seq BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX idx_jobs_user_created ON jobs (user_id, created_at);
CREATE INDEX idx_jobs_in_flight ON jobs (touched_at) WHERE status = 'IN_PROGRESS';

CREATE TABLE job_customers (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs (job_id),
    cid TEXT COLLATE "C" NOT NULL,
    UNIQUE (job_id, cid)
);

CREATE TABLE appstatus_cache (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    cid TEXT COLLATE "C" NOT NULL,
    app_name TEXT COLLATE "C" NOT NULL,
    status_data TEXT NOT NULL,
    cached_at TEXT COLLATE "C" NOT NULL,
    ttl_seconds BIGINT DEFAULT 1800,
    UNIQUE (cid, app_name)
);

-- The job is inserted after the key in the same transaction: the key comes first so that a racing
-- request with the same key waits for this one (see set_action).
CREATE TABLE set_action_requests (
    user_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    job_id TEXT NOT NULL REFERENCES jobs (job_id) DEFERRABLE INITIALLY DEFERRED,
    answer_http_status BIGINT,
    answer_body TEXT,
    created_at TEXT NOT NULL,
    request_fingerprint TEXT,
    PRIMARY KEY (user_id, idempotency_key)
);

CREATE TABLE audit_log (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    user_id TEXT COLLATE "C" NOT NULL,
    action_type TEXT COLLATE "C" NOT NULL,
    customer_ids TEXT,
    "timestamp" TEXT COLLATE "C",
    ip_address TEXT,
    status TEXT,
    error_message TEXT,
    duration_ms BIGINT,
    chain_seq BIGINT UNIQUE,
    chain_prev TEXT,
    chain_hash TEXT
);
CREATE INDEX idx_user_timestamp ON audit_log (user_id, "timestamp" DESC);
CREATE INDEX idx_action_type ON audit_log (action_type);
CREATE INDEX idx_timestamp ON audit_log ("timestamp" DESC);

-- The chain's head, one row: appends lock it FOR UPDATE, so writers on every host append one at a
-- time in one order (seq 0: the chain has not begun).
CREATE TABLE audit_chain_head (
    one BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_chain_head (seq, hash) VALUES (0, '');

-- Append-only, for every writer of the database: UPDATE, DELETE and TRUNCATE are refused, but a
-- DELETE inside clear_audit_logs' own transaction (which records the reset).
CREATE FUNCTION tms_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('tms.audit_reset', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only: rows cannot be changed (use clear_audit_logs, which records the reset)';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log FOR EACH ROW EXECUTE FUNCTION tms_audit_append_only();
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION tms_audit_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log FOR EACH STATEMENT EXECUTE FUNCTION tms_audit_append_only();

-- Whether customer_ids (a JSON array, or one ID or a comma list as text) holds the whole ID `id`,
-- as the SQLite engine matches it.
CREATE FUNCTION tms_ids_contain(ids TEXT, id TEXT) RETURNS BOOLEAN LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF ids IS NULL THEN
        RETURN false;
    END IF;
    IF left(ltrim(ids), 1) = '[' THEN
        BEGIN
            IF jsonb_typeof(ids::jsonb) = 'array' THEN
                RETURN (ids::jsonb) ? id;
            END IF;
        EXCEPTION WHEN others THEN
            NULL; -- not JSON after all: read it as text
        END;
    END IF;
    RETURN position(',' || id || ',' in ',' || replace(replace(ids, ' ', ''), E'\n', ',') || ',') > 0;
END $$;
"#;

fn too_new(found: i64) -> Error {
    Error::new(
        ErrorKind::SchemaTooNew,
        format!(
            "the database has store schema version {found}, newer than the {SCHEMA_VERSION} this library \
             knows; use a newer libtms (nothing was changed)"
        ),
    )
}

fn current(client: &mut Client) -> Result<i64> {
    match client.query_opt("SELECT version FROM tms_schema WHERE component = 'store'", &[]) {
        Ok(row) => Ok(row.map_or(0, |r| r.get(0))),
        // No tms_schema table yet: a new database.
        Err(e) if e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) => Ok(0),
        Err(e) => Err(pg_error(e)),
    }
}

/// The oldest schema this library works on when the role opening it may not upgrade it: v3 has
/// every table, column and function the app's role uses except the one-statement append of v4
/// (`tms_audit_append_at`), in whose place the library takes the locked path of v3. So a fleet
/// upgrades without downtime: every host's library first, then the owner's `tms migrate`.
const OLDEST_WORKABLE: i64 = 3;

/// Bring the database up to date (in the connection's current schema) and answer the schema
/// version the store now has. A v3 schema that the role may not upgrade, or on a read-only
/// server (a standby), is answered as it is (see `OLDEST_WORKABLE`); older ones are refused.
pub fn migrate(client: &mut Client, writable: bool) -> Result<i64> {
    let found = current(client)?;
    if found > SCHEMA_VERSION {
        return Err(too_new(found));
    }
    if found == SCHEMA_VERSION {
        return Ok(found);
    }
    // Reads need nothing newer than v3: a standby of a fleet that has not migrated yet still serves.
    if !writable && found >= OLDEST_WORKABLE {
        return Ok(found);
    }
    if !writable {
        return Err(Error::new(
            ErrorKind::ReadOnly,
            format!("the database is read-only and has store schema version {found}; this library needs {SCHEMA_VERSION}"),
        ));
    }
    let migrated = match upgrade(client, found) {
        Err(e) if found >= OLDEST_WORKABLE && e.code() == Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) => {
            return Ok(found);
        }
        other => other,
    };
    let migrated = migrated.map_err(|e| {
        if e.code() == Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) {
            Error::new(
                ErrorKind::CantOpen,
                format!(
                    "the database has store schema version {found}; this library needs {SCHEMA_VERSION}, and this role \
                     may not change the schema: run `tms migrate --jobs-db URL` with the schema owner's URL, then open \
                     it again (nothing was changed)"
                ),
            )
        } else {
            pg_error(e).context(&format!("cannot bring the database from store schema version {found} to {SCHEMA_VERSION}"))
        }
    })?;
    if migrated > SCHEMA_VERSION {
        return Err(too_new(migrated));
    }
    Ok(migrated)
}

/// Whether a store of schema `version` has `tms_audit_append_at` (and `audit_log.append_nonce`).
pub fn has_append_at(version: i64) -> bool {
    version >= 4
}

/// The migration steps from `found` on, in one transaction; the version found under the lock
/// (a newer one than this library's is left as it is: nothing is committed).
fn upgrade(client: &mut Client, found: i64) -> std::result::Result<i64, postgres::Error> {
    let mut tx = client.transaction()?;
    // One migrator at a time per schema, whichever host: the others wait here, then find the
    // version current.
    tx.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':tms-core:migrate'))", &[])?;
    if found == 0 {
        tx.batch_execute("CREATE TABLE IF NOT EXISTS tms_schema (component TEXT PRIMARY KEY, version BIGINT NOT NULL)")?;
    }
    let mut version: i64 = tx
        .query_opt("SELECT version FROM tms_schema WHERE component = 'store'", &[])?
        .map_or(0, |r| r.get(0));
    // Another host may have migrated meanwhile, even past this library: nothing to write (a
    // role that may not write tms_schema must not fail here and fall back to v3's path).
    if version >= SCHEMA_VERSION {
        return Ok(version);
    }
    while version < SCHEMA_VERSION {
        tx.batch_execute(MIGRATIONS[usize::try_from(version).unwrap_or(0)])?;
        version += 1;
    }
    tx.execute(
        "INSERT INTO tms_schema (component, version) VALUES ('store', $1)
         ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version",
        &[&version],
    )?;
    tx.commit()?;
    Ok(version)
}
